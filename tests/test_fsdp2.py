"""FSDP2 (fully_shard: DTensor parameters) on 2 CPU processes with gloo on 127.0.0.1: fusekit's
optimizers, max_grad_norm, clip_grad_norm_ and get_total_norm against torch.optim and
torch's clipping under the same sharding, with and without CPUOffloadPolicy."""
import io
import os
import socket
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

WORLD = 2
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(seed: int):
    torch.manual_seed(seed)
    # 7 outputs: shards of unequal size across 2 ranks (FSDP2 pads the second)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 7))


def _shard(model, mesh, offload: bool):
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    policy = CPUOffloadPolicy(pin_memory=False) if offload else None
    for m in model:
        if isinstance(m, torch.nn.Linear):
            fully_shard(m, mesh=mesh, offload_policy=policy) if policy else fully_shard(m, mesh=mesh)
    return fully_shard(model, mesh=mesh, offload_policy=policy) if policy else fully_shard(model, mesh=mesh)


def _train(make_opt, mesh, offload, clip, fusekit_clip):
    import fusekit.nn.utils as fu

    model = _shard(_model(0), mesh, offload)
    opt = make_opt(model.parameters())
    norms = []
    for step in range(STEPS):
        g = torch.Generator().manual_seed(100 * step + dist.get_rank())
        x, y = torch.randn(8, 16, generator=g), torch.randn(8, 7, generator=g)
        torch.nn.functional.mse_loss(model(x), y).backward()
        if clip == "utils":
            fn = fu.clip_grad_norm_ if fusekit_clip else torch.nn.utils.clip_grad_norm_
            norms.append(fn(model.parameters(), 0.05).full_tensor())
            total = (fu.get_total_norm if fusekit_clip else torch.nn.utils.get_total_norm)(
                [p.grad for p in model.parameters()], 3.0)
            norms.append(total.full_tensor())
        opt.step()
        if clip == "in_step" and fusekit_clip:
            norms.append(opt.last_grad_norm.full_tensor() if hasattr(opt.last_grad_norm, "full_tensor")
                         else opt.last_grad_norm)
        opt.zero_grad()
    return [p.full_tensor().detach().clone() for p in model.parameters()], norms


def _run(rank: int, port: int, queue) -> None:
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        from torch.distributed.device_mesh import init_device_mesh

        import fusekit.optim as fo

        mesh = init_device_mesh("cpu", (WORLD,))
        results = []
        for offload in (False, True):
            for name, kw in (("AdamW", dict(lr=1e-2, weight_decay=0.1)), ("SGD", dict(lr=0.1, momentum=0.9)),
                             ("NAdam", dict(lr=1e-2)), ("RMSprop", dict(lr=1e-3, centered=True)),
                             ("Adagrad", dict(lr=0.1))):
                ref, _ = _train(lambda p: getattr(torch.optim, name)(p, **kw), mesh, offload, None, False)
                ours, _ = _train(lambda p: getattr(fo, name)(p, **kw), mesh, offload, None, True)
                results.append((f"{name} offload={offload}", ref, ours))
            ref, ref_norms = _train(lambda p: torch.optim.Adam(p, lr=1e-2), mesh, offload, "utils", False)
            ours, our_norms = _train(lambda p: fo.Adam(p, lr=1e-2), mesh, offload, "utils", True)
            results.append((f"clip_grad_norm_ offload={offload}", ref + ref_norms, ours + our_norms))
            # clipping inside the step equals torch's clip_grad_norm_ followed by step()
            ref, ref_norms = _train(lambda p: _ClippedAdam(p, lr=1e-2), mesh, offload, None, False)
            ours, our_norms = _train(lambda p: fo.Adam(p, lr=1e-2, max_grad_norm=0.05), mesh, offload, "in_step",
                                     True)
            results.append((f"max_grad_norm offload={offload}", ref, ours))
        if rank == 0:  # as bytes: tensors sent through a queue live in this process's shared memory
            buf = io.BytesIO()
            torch.save(results, buf)
            queue.put(("ok", buf.getvalue()))
        dist.destroy_process_group()
    except Exception:
        queue.put(("error", f"rank {rank}: {traceback.format_exc()}"))


class _ClippedAdam(torch.optim.Adam):
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, 0.05)
        return super().step(closure)


def test_fsdp2_matches_torch():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_run, args=(r, port, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    status, payload = queue.get(timeout=240)
    for p in procs:
        p.join(timeout=60)
    assert status == "ok", payload
    for what, ref, ours in torch.load(io.BytesIO(payload)):
        assert len(ref) == len(ours), what
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, msg=lambda m: f"{what}: {m}")
