"""fusekit.nn.utils clipping functions against torch.nn.utils (values, return types, errors)."""
import math

import pytest
import torch

import fusekit.nn.utils as fu

SHAPES = [(0,), (1,), (7,), (4097,), (65537,), (3, 5), (20, 4, 5, 5)]
NORMS = [2.0, 1.0, math.inf, 3.0, 0.5]


def make(dtype, device, seed=0, scale=3.0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype).to(device))
        p.grad = (torch.randn(s, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)
        out.append(p)
    return out


def twins(dtype, device, **kw):
    a = make(dtype, device, **kw)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        q.grad = p.grad.clone()
    return a, b


def nonempty_if_inf(norm_type):
    return [s for s in SHAPES if s != (0,)] if math.isinf(norm_type) else SHAPES


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_get_total_norm_matches_torch(norm_type, dtype, device):
    shapes = nonempty_if_inf(norm_type)
    grads = [p.grad for p in make(dtype, device, shapes=shapes)]
    ours = fu.get_total_norm(grads, norm_type)
    ref = torch.nn.utils.get_total_norm(grads, norm_type)
    assert ours.dtype == ref.dtype and ours.device == ref.device and ours.dim() == 0
    # torch's float32 reductions drift for p != 2 and long tensors, so both are measured
    # against the float64 norm of the same (rounded) values: fusekit may not be worse.
    exact = torch.linalg.vector_norm(torch.cat([g.double().flatten().cpu() for g in grads]), norm_type).item()
    err_ours, err_torch = abs(ours.item() - exact), abs(ref.item() - exact)
    rtol = {torch.float32: 1.3e-6, torch.float64: 1e-7, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert err_ours <= max(err_torch, rtol * exact), (ours.item(), ref.item(), exact)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_norm_is_more_accurate_than_torch_on_large_tensors(norm_type):
    """torch's float32 foreach_norm drifts on millions of elements; fusekit's chunked,
    tree-combined float32 reduction stays near the float64 value."""
    g = torch.randn(3_000_000, generator=torch.Generator().manual_seed(0)) * 3
    exact = torch.linalg.vector_norm(g.double(), norm_type).item()
    ours = fu.get_total_norm([g], norm_type).item()
    theirs = torch.nn.utils.get_total_norm([g], norm_type).item()
    assert abs(ours / exact - 1) < 1e-6
    assert abs(ours / exact - 1) <= abs(theirs / exact - 1)


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_clip_grad_norm_matches_torch(max_norm, norm_type, dtype, device):
    a, b = twins(dtype, device, shapes=nonempty_if_inf(norm_type))
    na = fu.clip_grad_norm_(a, max_norm, norm_type)
    nb = torch.nn.utils.clip_grad_norm_(b, max_norm, norm_type)
    torch.testing.assert_close(na, nb)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)


def test_clip_grads_with_norm_and_value(device):
    a, b = twins(torch.float32, device)
    total = torch.nn.utils.get_total_norm([p.grad for p in b])
    fu.clip_grads_with_norm_(a, 2.0, total)
    torch.nn.utils.clip_grads_with_norm_(b, 2.0, total)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    for p in a:
        p.grad[..., :1] = float("nan") if p.numel() else 0.0
    for p, q in zip(a, b):
        q.grad = p.grad.clone()
    fu.clip_grad_value_(a, 0.1)
    torch.nn.utils.clip_grad_value_(b, 0.1)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True)
    assert all(p.grad.nan_to_num().abs().max() <= 0.1 for p in a if p.numel())


def test_empty_inputs_and_single_tensor():
    assert torch.equal(fu.get_total_norm([]), torch.tensor(0.0))
    assert torch.equal(fu.clip_grad_norm_([], 1.0), torch.nn.utils.clip_grad_norm_([], 1.0))
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 2.0)
    torch.testing.assert_close(fu.clip_grad_norm_(p, 1.0), torch.tensor(4.0))
    torch.testing.assert_close(p.grad, torch.full((4,), 0.5), atol=1e-6, rtol=1e-6)
    with pytest.warns(UserWarning, match="empty generator"):
        fu.clip_grad_norm_((q for q in []), 1.0)
    with pytest.raises(RuntimeError, match="infinity norm on an empty tensor"):
        fu.get_total_norm([torch.zeros(0)], math.inf)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite(bad, device):
    a, b = twins(torch.float32, device)
    a[3].grad[5] = bad
    b[3].grad[5] = bad
    na = fu.clip_grad_norm_(a, 1.0)
    nb = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(na, nb, equal_nan=True)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True)
    before = [p.grad.clone() for p in a]
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped"):
        fu.clip_grad_norm_(a, 1.0, error_if_nonfinite=True)
    for p, g in zip(a, before):
        assert torch.equal(p.grad.nan_to_num(), g.nan_to_num())


def test_foreach_accepted_and_bad_norm_type():
    a, b = twins(torch.float32, "cpu")
    for foreach in (None, True, False):
        torch.testing.assert_close(fu.get_total_norm([p.grad for p in a], foreach=foreach),
                                   torch.nn.utils.get_total_norm([p.grad for p in b]))
    with pytest.raises(ValueError, match="norm_type must be positive or \\+/-inf, got -1.0"):
        fu.get_total_norm([p.grad for p in a], -1.0)


def test_norm_bitwise_deterministic_across_threads():
    g = [torch.randn(s, generator=torch.Generator().manual_seed(1)) for s in [(2_000_003,), (70_000,), (5,)]]
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        results.append([fu.get_total_norm(g, nt) for nt in (2.0, 1.0, math.inf, 3.0)])
    for x, y in zip(*results):
        assert torch.equal(x, y)
