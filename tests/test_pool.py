"""max_pool2d / avg_pool2d against torch.nn.functional: values, indices, gradients."""
import math

import pytest
import torch

import fusekit.nn as fnn
import fusekit.nn.functional as F

MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=5, stride=1, padding=2, dilation=2),
]
AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3),
]
SHAPES = [(1, 1, 5, 5), (2, 3, 9, 11), (3, 7, 8), (4, 5, 16, 13)]


def inputs(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def case_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


def close_or_better(ours, theirs, exact):
    """float32/64: assert_close to torch, or, where two valid summation orders differ by more
    than that (long reductions such as conv weight gradients, where torch's own error
    against float64 is of the same size), within 2x torch's error against float64 — the
    rule architecture.md §4 sets for half types. float16/bfloat16: that rule directly."""
    if ours.dtype in (torch.float32, torch.float64):
        try:
            torch.testing.assert_close(ours, theirs)
        except AssertionError:
            err_ours = (ours.double() - exact).abs().max().item()
            err_torch = (theirs.double() - exact).abs().max().item()
            assert err_ours <= 2 * err_torch, (err_ours, err_torch)
        return
    err_ours = (ours.double() - exact).abs().max().item()
    err_torch = (theirs.double() - exact).abs().max().item()
    assert err_ours <= max(2 * err_torch, torch.finfo(ours.dtype).eps * exact.abs().max().item()), (err_ours, err_torch)


def check(ours_fn, ref_fn, x, max_pool):
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    xd = x.double().requires_grad_()
    a, b, d = ours_fn(xa), ref_fn(xb), ref_fn(xd)
    if max_pool:
        (a, ia), (b, ib), (d, _) = a, b, d
        assert torch.equal(ia, ib)
    close_or_better(a, b, d)
    assert a.stride() == b.stride()
    g = torch.randn_like(a)
    (ga,), (gb,), (gd,) = (torch.autograd.grad(a, xa, g), torch.autograd.grad(b, xb, g),
                           torch.autograd.grad(d, xd, g.double()))
    close_or_better(ga, gb, gd)
    assert ga.stride() == gb.stride()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", MAX_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_max_pool2d_matches_torch(kw, shape, dtype, device):
    x = inputs(shape, dtype, device)
    check(lambda t: F.max_pool2d(t, return_indices=True, **kw),
          lambda t: torch.nn.functional.max_pool2d(t, return_indices=True, **kw), x, True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", AVG_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_avg_pool2d_matches_torch(kw, shape, dtype, device):
    x = inputs(shape, dtype, device)
    check(lambda t: F.avg_pool2d(t, **kw), lambda t: torch.nn.functional.avg_pool2d(t, **kw), x, False)


@pytest.mark.parametrize("kw", MAX_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_max_pool2d_matches_torch(kw, dtype, device):
    """channels_last runs natively on the CPU (channels innermost): every window option, 300
    channels (more than one run of 256), ties and NaN; indices, values, strides, gradients."""
    x = torch.randint(0, 4, (2, 300, 9, 11), generator=torch.Generator().manual_seed(0)).to(dtype)
    x.view(-1)[::13] = math.nan
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    for want_idx in (True, False):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a = F.max_pool2d(xa, return_indices=want_idx, **kw)
        b = torch.nn.functional.max_pool2d(xb, return_indices=want_idx, **kw)
        if want_idx:
            (a, ia), (b, ib) = a, b
            assert torch.equal(ia, ib) and ia.stride() == ib.stride()
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)
        assert a.stride() == b.stride()
        gy = torch.randn(a.shape, generator=torch.Generator().manual_seed(1)).to(dtype).to(device)
        (ga,), (gb,) = torch.autograd.grad(a, xa, gy), torch.autograd.grad(b, xb, gy)
        xd = x.double().requires_grad_()
        d = torch.nn.functional.max_pool2d(xd, **kw)
        (gd,) = torch.autograd.grad(d, xd, gy.double())
        close_or_better(ga, gb, gd)
        assert ga.stride() == gb.stride()


@pytest.mark.parametrize("kw", AVG_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_avg_pool2d_matches_torch(kw, dtype, device):
    x = inputs((2, 300, 9, 11), dtype, device).contiguous(memory_format=torch.channels_last)
    check(lambda t: F.avg_pool2d(t, **kw), lambda t: torch.nn.functional.avg_pool2d(t, **kw), x, False)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_memory_formats_and_views(layout, device):
    x = inputs((2, 6, 10, 12), torch.float32, device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3)
    else:
        x = x[:, ::2, 1:, ::2]
    check(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True),
          lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1, return_indices=True), x, True)
    check(lambda t: F.avg_pool2d(t, 3, 2, 1), lambda t: torch.nn.functional.avg_pool2d(t, 3, 2, 1), x, False)


def test_ties_and_nan_pick_the_same_indices_as_torch(device):
    x = torch.tensor([[[[1.0, 3.0, 3.0, math.nan, 2.0],
                        [2.0, math.nan, 0.0, 1.0, 2.0],
                        [5.0, 5.0, 5.0, 5.0, -math.inf]]]], device=device)
    for kw in (dict(kernel_size=2, stride=1), dict(kernel_size=(2, 4), stride=1), dict(kernel_size=3, padding=1)):
        a, ia = F.max_pool2d(x, return_indices=True, **kw)
        b, ib = torch.nn.functional.max_pool2d(x, return_indices=True, **kw)
        assert torch.equal(ia, ib), kw
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("shape", [(1, 1, 5, 5), (2, 3, 9, 43), (1, 2, 6, 600), (3, 4, 32, 32), (2, 300, 5, 7),
                                   (5, 7, 4, 4), (3, 5, 6, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_max_pool2d_without_indices_routes_gradients_like_torch(shape, dtype, layout, device):
    """Without return_indices the CPU's 2x2 path saves window codes, not indices: the gradient
    still reaches exactly torch's choice of input (ties -> first maximum, NaN -> last NaN).
    Shapes cover vector bodies and tails, odd sizes, rows (or channels) longer than one run of 256,
    and small even-height planes pooled as stacks (a last stack of fewer planes, an odd width)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, shape, generator=g).to(dtype)  # many ties
    x.view(-1)[:: 7] = math.nan
    x = x.to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = F.max_pool2d(xa, 2), torch.nn.functional.max_pool2d(xb, 2)
    torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)
    gy = torch.randn(a.shape, generator=g).to(dtype).to(device)
    (ga,), (gb,) = torch.autograd.grad(a, xa, gy), torch.autograd.grad(b, xb, gy)
    assert torch.equal(ga, gb)
    assert a.stride() == b.stride() and ga.stride() == gb.stride()


def test_gradcheck_float64():
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), (x,))
    assert torch.autograd.gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), (x,))


def test_backward_bitwise_deterministic_across_threads():
    x = torch.randn(4, 16, 33, 33, requires_grad=True)
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        for fn in (lambda t: F.max_pool2d(t, 3, 1, 1), lambda t: F.avg_pool2d(t, 3, 1, 1)):
            (g,) = torch.autograd.grad(fn(x).sum(), x)
            results.append(g)
    assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[3])


def test_modules_are_drop_ins():
    for ours, ref in ((fnn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
                      (fnn.AvgPool2d(3, 2, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False))):
        x = torch.randn(2, 3, 10, 10)
        torch.testing.assert_close(ours(x), ref(x))
        assert repr(ours) == repr(ref)
    a, ia = fnn.MaxPool2d(2, return_indices=True)(torch.randn(1, 2, 4, 4))
    assert ia.dtype == torch.int64
