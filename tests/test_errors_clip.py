"""Bad input to the clipping functions, each case run on torch.nn.utils and on fusekit in the
same test (errors_harness.py)."""
import math

import pytest
import torch

import fusekit.nn.utils as fu
from errors_harness import SAME, check

nan, inf = math.nan, math.inf
tu = torch.nn.utils


def params(kind="float32"):
    g = torch.Generator().manual_seed(0)
    if kind == "int":
        p = torch.zeros(3, dtype=torch.int64)
        p.grad = torch.ones(3, dtype=torch.int64)
        return [p]
    dtype = {"float32": torch.float32, "complex": torch.complex64, "float64": torch.float64}[kind]
    ps = [torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=dtype)) for _ in range(2)]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
    if kind == "float32":  # a strided gradient too
        q = torch.nn.Parameter(torch.randn(3, 4, generator=g))
        q.grad = torch.randn(4, 3, generator=g).t()
        ps.append(q)
    return ps


def with_sparse():
    ps = params()
    ps[1].grad = torch.randn(4, 3).to_sparse()
    return ps


def with_nan():
    ps = params()
    ps[0].grad[0, 0] = nan
    return ps


def mixed_float_and_int():
    """[a strided float gradient, an int64 gradient]: torch clamps the first, then fails."""
    ps = params()[2:]
    p = torch.zeros(3, dtype=torch.int64)
    p.grad = torch.ones(3, dtype=torch.int64)
    return ps + [p]


CASES = {  # name -> (call(utils module, params), params maker, expected, fragment)
    **{f"clip_grad_norm_ max_norm={v!r}": (lambda m, ps, v=v: m.clip_grad_norm_(ps, v), params, e, "max_norm")
       for v, e in ((-1.0, ValueError), (nan, ValueError), (inf, ValueError), ("1", TypeError), (None, SAME),
                    (torch.tensor(-1.0), ValueError), (torch.tensor([1.0, 2.0]), SAME), (0.0, SAME),
                    (torch.tensor(0.5), SAME), (1e-3, SAME))},
    **{f"clip_grad_norm_ norm_type={v!r}": (lambda m, ps, v=v: m.clip_grad_norm_(ps, 1.0, v), params, e, "norm_type")
       for v, e in ((0, ValueError), (-1.0, ValueError), (nan, ValueError), ("fro", SAME), (None, SAME), (0.5, SAME),
                    (inf, SAME), (-inf, SAME), (3, SAME), ("2", SAME))},
    **{f"get_total_norm norm_type={v!r}": (lambda m, ps, v=v: m.get_total_norm([p.grad for p in ps], v), params, e,
                                           "norm_type")
       for v, e in ((0, ValueError), (-2.0, ValueError), (nan, ValueError), ("fro", SAME), (None, SAME),
                    (1, SAME), (inf, SAME))},
    "clip_grad_norm_ sparse gradient": (lambda m, ps: m.clip_grad_norm_(ps, 1.0), with_sparse, SAME, "sparse"),
    "get_total_norm sparse tensor": (lambda m, ps: m.get_total_norm([p.grad for p in ps]), with_sparse, SAME,
                                     "sparse"),
    "clip_grad_norm_ int gradients": (lambda m, ps: m.clip_grad_norm_(ps, 1.0), lambda: params("int"), SAME, "int"),
    "get_total_norm not tensors": (lambda m, ps: m.get_total_norm([1.0, 2.0]), params, SAME, "tensor"),
    "get_total_norm complex inf norm": (lambda m, ps: m.get_total_norm([p.grad for p in ps], inf),
                                        lambda: params("complex"), SAME, "complex"),
    "clip_grad_norm_ complex 1-norm": (lambda m, ps: m.clip_grad_norm_(ps, 0.1, 1.0), lambda: params("complex"),
                                       SAME, "complex"),
    "get_total_norm inf norm of an empty tensor": (lambda m, ps: m.get_total_norm([torch.ones(0)], inf), params,
                                                   SAME, "empty"),
    "clip_grad_norm_ error_if_nonfinite": (lambda m, ps: m.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True),
                                           with_nan, SAME, "non-finite"),
    **{f"clip_grad_value_ clip_value={v!r}": (lambda m, ps, v=v: m.clip_grad_value_(ps, v), params, e, "clip_value")
       for v, e in ((-1.0, ValueError), (nan, ValueError), (inf, ValueError), ("1", TypeError), (None, SAME),
                    (torch.tensor(0.5), SAME), (torch.ones(2), SAME), (0.0, SAME), (0.1, SAME))},
    "clip_grad_value_ complex gradients": (lambda m, ps: m.clip_grad_value_(ps, 1.0), lambda: params("complex"),
                                           SAME, "complex"),
    "clip_grad_value_ strided float + int gradient": (lambda m, ps: m.clip_grad_value_(ps, 0.1),
                                                      mixed_float_and_int, RuntimeError, "int64"),
    "clip_grads_with_norm_ total a float": (lambda m, ps: m.clip_grads_with_norm_(ps, 1.0, 3.0), params, SAME,
                                            "total_norm"),
    "clip_grads_with_norm_ max_norm nan": (lambda m, ps: m.clip_grads_with_norm_(ps, nan, torch.tensor(3.0)), params,
                                           ValueError, "max_norm"),
    "clip_grads_with_norm_ max_norm < 0": (lambda m, ps: m.clip_grads_with_norm_(ps, -1.0, torch.tensor(3.0)),
                                           params, ValueError, "max_norm"),
    "clip_grads_with_norm_ total of 2": (lambda m, ps: m.clip_grads_with_norm_(ps, 1.0, torch.tensor([3.0, 1.0])),
                                         params, ValueError, "total_norm"),
    "clip_grads_with_norm_ fine": (lambda m, ps: m.clip_grads_with_norm_(ps, 1.0, torch.tensor(3.0)), params, SAME,
                                   ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_clipping(case):
    call, make, expect, fragment = CASES[case]
    a, b = make(), make()
    res = check(lambda: call(tu, a), lambda: call(fu, b), expect, fragment, b)
    if res is not None:
        t_out, f_out = res
        if isinstance(t_out, torch.Tensor):
            torch.testing.assert_close(f_out, t_out, equal_nan=True)
        for p, q in zip(a, b):
            torch.testing.assert_close(q.grad, p.grad, equal_nan=True)
