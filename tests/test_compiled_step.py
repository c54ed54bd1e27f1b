"""torch.compile of a function calling opt.step() (torch's recipe for compiled optimizers):
one graph with the fused step op in it, the same values as torch's optimizer, and no more
recompiles than torch's optimizer in the same setting."""
import pytest
import torch
from torch._dynamo.utils import counters

import fusekit.optim as fo

CASES = {"SGD": dict(momentum=0.9, dampening=0.1), "Adam": dict(amsgrad=True), "AdamW": dict(weight_decay=0.1),
         "NAdam": {}, "RMSprop": dict(momentum=0.5, centered=True), "Adagrad": dict(lr_decay=0.01)}


def train(make_opt, *, compiled: bool, fullgraph=False, scheduler=True, steps=6, float_lr=False):
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = make_opt(model.parameters(), 0.01 if float_lr else torch.tensor(0.01))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.9 ** e) if scheduler else None
    step = torch.compile(opt.step, fullgraph=fullgraph) if compiled else opt.step
    for i in range(steps):
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(i))
        model(x).square().sum().backward()
        step()
        if sched:
            sched.step()
        opt.zero_grad()
    return [p.detach() for p in model.parameters()], dict(counters["stats"]), sum(counters["recompiles"].values())


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_step_matches_torch_in_one_graph(name):
    kw = CASES[name]
    ref, ref_stats, ref_recompiles = train(lambda p, lr: getattr(torch.optim, name)(p, lr=lr, **kw), compiled=True)
    ours, stats, recompiles = train(lambda p, lr: getattr(fo, name)(p, lr=lr, **kw), compiled=True)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    assert stats["unique_graphs"] == 1, stats            # one graph, from the first step on
    assert stats["unique_graphs"] <= ref_stats["unique_graphs"]
    assert recompiles <= ref_recompiles


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_fullgraph_step(name):
    kw = CASES[name]
    ref, _, _ = train(lambda p, lr: getattr(torch.optim, name)(p, lr=lr, **kw), compiled=False, scheduler=False)
    ours, stats, _ = train(lambda p, lr: getattr(fo, name)(p, lr=lr, **kw), compiled=True, fullgraph=True,
                           scheduler=False)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    assert stats["unique_graphs"] == 1


def test_float_lr_recompiles_no_more_than_torch():
    kw = CASES["AdamW"]
    _, ref_stats, ref_recompiles = train(lambda p, lr: torch.optim.AdamW(p, lr=lr, **kw), compiled=True,
                                         float_lr=True)
    _, stats, recompiles = train(lambda p, lr: fo.AdamW(p, lr=lr, **kw), compiled=True, float_lr=True)
    assert recompiles <= ref_recompiles
    assert stats["unique_graphs"] <= ref_stats["unique_graphs"]


@pytest.mark.parametrize("clip", [1e-3, "auto", "track"])
def test_compiled_step_with_clipping_matches_eager(clip):
    def make(p, lr):
        if clip == "auto":
            return fo.AdamW(p, lr=lr, max_grad_norm=fo.AutoClip(history=4, min_history=2))
        if clip == "track":
            return fo.AdamW(p, lr=lr, track_grad_norm=True)
        return fo.AdamW(p, lr=lr, max_grad_norm=clip)

    eager, _, _ = train(make, compiled=False)
    compiled, stats, _ = train(make, compiled=True)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b)
    assert stats["unique_graphs"] == 1


def test_compiled_step_records_telemetry():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = fo.SGD([p], lr=torch.tensor(0.1), max_grad_norm=0.5)
    step = torch.compile(opt.step)
    for k in range(4):
        p.grad = torch.full((3,), float(k + 1))
        step()
    norms = opt.grad_norms.values()
    torch.testing.assert_close(norms, torch.tensor([1.0, 2.0, 3.0, 4.0]) * 3 ** 0.5)
    torch.testing.assert_close(opt.grad_norms.thresholds(), torch.full((4,), 0.5))
