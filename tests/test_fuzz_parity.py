"""Property-based parity: random optimizers, hyper-parameters, shapes (0 to 4097 elements,
1-D to 4-D, strided views), dtypes (float32, float64), param groups and max_grad_norm, three
steps each, against torch.optim (for-loop implementation) after torch's clip_grad_norm_."""
import math

import pytest
import torch

import fusekit.optim as fo

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SHAPES = [(0,), (1,), (7,), (4097,), (3, 5), (2, 3, 4, 5), "strided"]
unit = st.floats(0.0, 0.999)


def hyper(name):
    wd = st.sampled_from([0.0, 0.0, 1e-2, 0.3])
    if name == "SGD":
        return st.fixed_dictionaries(dict(momentum=st.sampled_from([0.0, 0.5, 0.9]), dampening=st.sampled_from([0.0, 0.1]),
                                          weight_decay=wd, maximize=st.booleans()))
    if name in ("Adam", "AdamW"):
        return st.fixed_dictionaries(dict(betas=st.tuples(unit, unit), eps=st.sampled_from([1e-8, 1e-3]),
                                          weight_decay=wd, amsgrad=st.booleans(), maximize=st.booleans()))
    if name == "NAdam":
        return st.fixed_dictionaries(dict(betas=st.tuples(unit, unit), weight_decay=wd,
                                          decoupled_weight_decay=st.booleans(), momentum_decay=st.sampled_from([4e-3, 0.1])))
    if name == "RMSprop":
        return st.fixed_dictionaries(dict(alpha=st.floats(0.5, 0.999), momentum=st.sampled_from([0.0, 0.7]),
                                          centered=st.booleans(), weight_decay=wd, maximize=st.booleans()))
    return st.fixed_dictionaries(dict(lr_decay=st.sampled_from([0.0, 1e-2]), weight_decay=wd,
                                      initial_accumulator_value=st.sampled_from([0.0, 0.1]), maximize=st.booleans()))


def make(shapes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        if s == "strided":
            base = torch.randn(6, 4, generator=g, dtype=dtype)
            p = torch.nn.Parameter(base.t())  # a transposed (non-contiguous) parameter
        else:
            p = torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype))
        out.append(p)
    return out


def grads(params, seed, poison):
    g = torch.Generator().manual_seed(seed)
    for i, p in enumerate(params):
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) * 3
        if poison and i == 0 and p.numel():
            p.grad.view(-1)[0] = poison


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(data=st.data())
def test_step_parity(data):
    name = data.draw(st.sampled_from(["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    shapes = data.draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4))
    kw = data.draw(hyper(name))
    lr = data.draw(st.sampled_from([1e-3, 0.05]))
    max_norm = data.draw(st.one_of(st.none(), st.floats(1e-3, 10.0)))
    two_groups = data.draw(st.booleans()) and len(shapes) > 1
    poison = data.draw(st.sampled_from([None, None, None, math.inf, math.nan]))

    def build(mod):
        ps = make(shapes, dtype, seed=1)
        groups = [{"params": ps[:1]}, {"params": ps[1:], "lr": lr / 2}] if two_groups else [{"params": ps}]
        extra = {} if mod is fo else {"foreach": False}
        if mod is fo and max_norm is not None:
            extra["max_grad_norm"] = max_norm
        return ps, getattr(mod, name)(groups, lr=lr, **kw, **extra)

    ref_ps, ref = build(torch.optim)
    ps, opt = build(fo)
    for step in range(3):
        grads(ref_ps, seed=10 + step, poison=poison if step == 1 else None)
        grads(ps, seed=10 + step, poison=poison if step == 1 else None)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(ref_ps, max_norm)
        ref.step()
        opt.step()
        for a, b in zip(ref_ps, ps):
            torch.testing.assert_close(b, a, equal_nan=True)
