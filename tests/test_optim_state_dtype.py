"""state_dtype=torch.bfloat16 and master_weights=True on the torch-compatible optimizers.

The reference is torch itself: each step, a torch.optim optimizer (fp32, for-loop) is loaded
with fusekit's state upcast to float32 (torch's load_state_dict casts), takes the same step,
and its new state rounded to bfloat16 must be fusekit's state."""
import copy

import pytest
import torch

import fusekit.optim as fo
from optim_cases import NAMES, all_cases, case_id, set_grads

CASES = [(n, {k: v for k, v in kw.items() if k not in ("foreach", "fused")}) for n in NAMES for kw in all_cases(n)]
SCALAR = ("step", "mu_product")


def make_params(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.randn(s, generator=g) for s in [(), (7,), (4097,), (16, 9), (20, 4, 5, 5)]]
    ps.append(torch.randn(8, 3, 3, 3, generator=g).to(memory_format=torch.channels_last))
    return [torch.nn.Parameter(p.to(dtype)) for p in ps]


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 values at |x| (x a bfloat16-valued float32 tensor)."""
    b = x.abs().to(torch.bfloat16)
    return (b.view(torch.int16) + 1).view(torch.bfloat16).float() - b.float()


def assert_rounded_state(ours: torch.Tensor, ref: torch.Tensor, key: str) -> None:
    """ours (bf16) == ref (fp32) rounded to nearest even, except where torch's and fusekit's
    fp32 results (equal up to an ulp or two of fp32) fall on two sides of a rounding boundary:
    there one bf16 ulp apart, and rare."""
    assert ours.dtype == torch.bfloat16, (key, ours.dtype)
    want = ref.to(torch.bfloat16)
    diff = ours != want
    if diff.any():
        step = (ours.float() - want.float()).abs()[diff]
        assert torch.equal(step, bf16_ulp(want.float()[diff]).maximum(bf16_ulp(ours.float()[diff]))), key
        assert diff.sum().item() <= max(2, diff.numel() // 10_000), (key, diff.sum().item())


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{case_id(kw)}" for n, kw in CASES])
def test_bf16_state_is_torchs_step_rounded(name, kw):
    pb = make_params()
    ours = getattr(fo, name)(pb, state_dtype=torch.bfloat16, **kw)
    for step in range(6):
        pa = [torch.nn.Parameter(p.detach().clone()) for p in pb]
        ref = getattr(torch.optim, name)(pa, foreach=False, **kw)
        if step:  # deep copy: torch's load keeps float32 tensors (step) shared otherwise
            ref.load_state_dict(copy.deepcopy(ours.state_dict()))
        set_grads(pa, step, skip_some=False)
        set_grads(pb, step, skip_some=False)
        ref.step()
        ours.step()
        if step == 0 and kw.get("initial_accumulator_value"):
            continue  # fusekit's sum starts at the bf16 value, torch's at the fp32 one
        for a, b in zip(pa, pb):
            torch.testing.assert_close(b, a)
            assert b.stride() == a.stride()
            assert set(ours.state[b]) == set(ref.state[a])
            for k, v in ref.state[a].items():
                if k in SCALAR:
                    torch.testing.assert_close(ours.state[b][k], v)
                else:
                    assert ours.state[b][k].stride() == b.stride()
                    assert_rounded_state(ours.state[b][k], v, k)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_state_dict_moves_to_and_from_fp32_optimizers(name):
    kw = {"SGD": dict(lr=0.1, momentum=0.9)}.get(name, {})
    pb = make_params()
    ours = getattr(fo, name)(pb, state_dtype=torch.bfloat16, **kw)
    for step in range(3):
        set_grads(pb, step, skip_some=False)
        ours.step()
    # fusekit bf16 -> torch fp32: cast up on load, values exact
    pa = [torch.nn.Parameter(p.detach().clone()) for p in pb]
    theirs = getattr(torch.optim, name)(pa, **kw)
    theirs.load_state_dict(ours.state_dict())
    for a, b in zip(pa, pb):
        for k, v in ours.state[b].items():
            assert theirs.state[a][k].dtype == torch.float32
            assert torch.equal(theirs.state[a][k], v.float())
    # torch fp32 -> fusekit bf16: rounded once on load, then steps continue in bf16
    set_grads(pa, 3, skip_some=False)
    theirs.step()
    again = getattr(fo, name)(pa, state_dtype=torch.bfloat16, **kw)
    again.load_state_dict(theirs.state_dict())
    for a in pa:
        for k, v in theirs.state[a].items():
            got = again.state[a][k]
            if k in SCALAR:
                assert got.dtype == torch.float32 and torch.equal(got, v)
            else:
                assert got.dtype == torch.bfloat16 and torch.equal(got, v.to(torch.bfloat16))
    set_grads(pa, 4, skip_some=False)
    again.step()
    assert all(again.state[a][k].dtype == torch.bfloat16 for a in pa for k in again.state[a] if k not in SCALAR)


@pytest.mark.parametrize("name", NAMES)
def test_master_weights_follow_fp32_training(name):
    """bf16 params + master_weights + float32 state: the master copy is the fp32 run of torch
    on the same (bf16) gradients, and the bf16 param is the master rounded to nearest even."""
    kw = {"SGD": dict(lr=0.1, momentum=0.9, weight_decay=0.01)}.get(name, dict(lr=0.01))
    pb = make_params(torch.bfloat16)
    pa = [torch.nn.Parameter(p.detach().float()) for p in pb]
    ours = getattr(fo, name)(pb, state_dtype=torch.float32, master_weights=True, **kw)
    ref = getattr(torch.optim, name)(pa, foreach=False, **kw)
    for step in range(10):
        set_grads(pb, step, skip_some=False)
        for a, b in zip(pa, pb):
            a.grad = b.grad.float()
        ref.step()
        ours.step()
    for a, b in zip(pa, pb):
        master = ours.state[b]["master_param"]
        assert master.dtype == torch.float32 and master.stride() == b.stride()
        torch.testing.assert_close(master, a.detach())
        assert torch.equal(b.detach(), master.to(torch.bfloat16))
        for k, v in ref.state[a].items():
            torch.testing.assert_close(ours.state[b][k], v)


def _regression(dtype, opt_factory, steps=300):
    """A linear least-squares fit whose Adam updates (~lr) are below half a bf16 ulp of the
    weights: plain bf16 weights cannot move, an fp32 master copy can."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=g)
    w_true = torch.randn(64, 1, generator=g)
    y = x @ w_true
    model = torch.nn.Linear(64, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w_true.t() + 0.05 * torch.randn(1, 64, generator=g) + 4.0)
        model.weight.sub_(4.0)  # start near the optimum, at magnitudes ~1
    model = model.to(dtype)
    opt = opt_factory(model.parameters())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x.to(dtype)).float(), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_pure_bf16_training_does_not_stall_with_master_weights():
    lr = 2e-4
    fp32 = _regression(torch.float32, lambda p: fo.AdamW(p, lr=lr, weight_decay=0.0))
    plain = _regression(torch.bfloat16, lambda p: fo.AdamW(p, lr=lr, weight_decay=0.0))
    master = _regression(torch.bfloat16, lambda p: fo.AdamW(p, lr=lr, weight_decay=0.0, master_weights=True,
                                                           state_dtype=torch.bfloat16))
    assert fp32[-1] < 0.2 * fp32[0]  # the fit converges in fp32
    assert plain[-1] > 0.9 * plain[0]  # bf16 weights stall: the updates round away
    # with the master copy the bf16 model tracks fp32 (up to its own bf16 rounding)
    # (measured: fp32 0.160 -> 0.0220, bf16 -> 0.146, bf16 + master -> 0.0232)
    assert master[-1] <= 1.1 * fp32[-1]
    assert max(abs(m - f) for m, f in zip(master, fp32)) <= 0.05 * fp32[0]


def test_storage_errors():
    p = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(TypeError, match="state_dtype"):
        fo.Adam([p], state_dtype=torch.float16)
    with pytest.raises(TypeError, match="master_weights"):
        fo.Adam([p], master_weights=1)
    q = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = fo.Adam([q], state_dtype=torch.bfloat16)
    q.grad = torch.ones_like(q)
    with pytest.raises(TypeError, match="float64"):
        opt.step()
    assert not opt.state[q] if q in opt.state else True
    r = torch.nn.Parameter(torch.randn(6, 4)[:, ::2])  # not dense: no flat view of its memory
    opt = fo.Adam([r], state_dtype=torch.bfloat16)
    r.grad = torch.ones_like(r)
    before = r.detach().clone()
    with pytest.raises(NotImplementedError, match="dense"):
        opt.step()
    assert torch.equal(r, before)
