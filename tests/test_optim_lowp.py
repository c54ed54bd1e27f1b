"""float16 / bfloat16: fusekit (fp32 math, one rounding per stored value) must stay within
2x the error of torch's own implementation in that dtype, both against an fp32 run."""
import pytest
import torch

import fusekit.optim as fo
from optim_cases import NAMES

KW = {"SGD": dict(lr=0.01, momentum=0.9, weight_decay=0.01), "Adam": dict(lr=1e-3, weight_decay=0.01),
      "AdamW": dict(lr=1e-3), "NAdam": dict(lr=1e-3), "RMSprop": dict(lr=1e-3, momentum=0.5, centered=True),
      "Adagrad": dict(lr=1e-2)}


def run(cls, dtype, steps=20, **kw):
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=g) for s in [(64, 33), (4097,), (7,)]]
    ps = [torch.nn.Parameter(t.to(dtype)) for t in init]
    opt = cls(ps, **kw)
    gg = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gg).to(torch.bfloat16).to(dtype)  # same values in every dtype
        opt.step()
    return torch.cat([p.detach().float().flatten() for p in ps])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_error_within_2x_of_torch(name, dtype):
    kw = KW[name]
    ref = run(lambda p, **k: getattr(torch.optim, name)(p, foreach=False, **k), torch.float32, **kw)
    theirs = run(lambda p, **k: getattr(torch.optim, name)(p, foreach=False, **k), dtype, **kw)
    ours = run(getattr(fo, name), dtype, **kw)
    # torch's fp16 Adam-family can overflow to inf/nan (eps = 1e-8 rounds to 0 in fp16):
    # compare where torch stayed finite, and require fusekit finite everywhere.
    ok = torch.isfinite(theirs)
    assert ok.float().mean() > 0.5
    err_torch = (theirs - ref)[ok].abs().mean().item()
    err_ours = (ours - ref)[ok].abs().mean().item()
    assert err_ours <= 2 * err_torch, (err_ours, err_torch)
    assert torch.isfinite(ours).all()


def test_mixed_dtypes_in_one_optimizer():
    ps = [torch.nn.Parameter(torch.randn(10, dtype=d)) for d in (torch.float32, torch.float64, torch.bfloat16, torch.float16)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    a = fo.Adam(ps, lr=0.01)
    for p, q in zip(ps, qs):
        p.grad = torch.ones_like(p)
    a.step()
    for p, q in zip(ps, qs):
        b = fo.Adam([q], lr=0.01)
        q.grad = torch.ones_like(q)
        b.step()
        assert torch.equal(p, q)
        assert a.state[p]["exp_avg"].dtype == p.dtype
