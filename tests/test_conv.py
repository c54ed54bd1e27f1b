"""conv2d against torch.nn.functional.conv2d: values and all three gradients."""
import pytest
import torch
from torch.nn.modules.utils import _pair

import fusekit.nn as fnn
import fusekit.nn.functional as F
from fusekit import _C
from fusekit._backend import conv as _conv
from test_pool import close_or_better

CASES = [
    # (input shape, weight shape, kwargs)
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(padding=1)),
    ((1, 1, 28, 28), (20, 1, 5, 5), {}),                                  # Nielsen / LeNet conv1
    ((3, 20, 12, 12), (40, 20, 5, 5), dict(stride=1)),                    # Nielsen conv2
    ((2, 4, 10, 10), (6, 2, 3, 2), dict(stride=2, groups=2, dilation=(2, 1))),
    ((1, 6, 7, 7), (6, 1, 5, 5), dict(padding="same", groups=6)),         # depthwise, 'same'
    ((2, 3, 8, 8), (4, 3, 4, 4), dict(padding="same")),                   # even kernel: asymmetric
    ((2, 3, 8, 9), (4, 3, 3, 3), dict(padding="valid", stride=(2, 3))),
    ((4, 7, 6, 5), (3, 7, 1, 1), dict(padding=(0, 2))),
    ((8, 7, 6), (4, 8, 3, 3), dict(padding=2, dilation=2)),               # unbatched input
    # CPU weight-gradient tiles: rows of several vectors, kernel wider than a tile (8 taps),
    # 13 channels = 8 + 4 + 1 rows, padding wider than the kernel, row stride with unit column
    # stride, many small images (several image chunks)
    ((2, 3, 5, 37), (13, 3, 2, 11), dict(padding=(1, 6))),
    ((3, 2, 9, 21), (5, 2, 3, 3), dict(stride=(2, 1), dilation=(1, 3), padding=(1, 4))),
    ((30, 2, 5, 5), (3, 2, 3, 3), {}),
    ((2, 3, 5, 6), (4, 3, 2, 2), dict(dilation=(3, 1))),                  # input row 2 gets no gradient
    # CPU forward by rows (fewer than 8 output channels per group): rows of 40 (vectors + a
    # tail) with dilation; channel multiplier 2 with padding (k-1)d, the most the rows take
    ((2, 8, 9, 40), (8, 2, 3, 5), dict(padding=(2, 4), dilation=(1, 2), groups=4)),
    ((2, 4, 6, 7), (8, 1, 3, 3), dict(padding=2, groups=4)),
    # CPU strided forward on phase-split rows: a 1x1 stride-2 shortcut (one phase read), and
    # strides 3 x 2 with dilation and padding
    ((2, 5, 11, 13), (6, 5, 1, 1), dict(stride=2)),
    ((2, 3, 13, 17), (4, 3, 4, 3), dict(stride=(3, 2), padding=(2, 1), dilation=(1, 2))),
]
# Maps of a few pixels, where the CPU's GEMM takes its channel-tiled path (forward, and for
# some the input gradient too): (case, forward tiled, input gradient tiled)
CHANNEL_TILED = [
    (((32, 20, 4, 4), (40, 20, 5, 5), dict(padding=2)), True, True),          # the digits convnet's conv2
    (((2, 8, 3, 3), (100, 8, 3, 3), dict(padding=1)), True, False),           # three channel panels
    (((3, 16, 2, 3), (50, 8, 3, 3), dict(padding=1, groups=2)), True, False),
    (((2, 6, 3, 4), (40, 6, 3, 3), dict(padding=2, dilation=2)), True, False),
    (((4, 8, 7, 7), (24, 8, 3, 3), dict(padding=1, stride=2)), True, False),  # phase-split rows
    (((2, 40, 4, 4), (40, 20, 3, 3), dict(padding=1, groups=2)), True, True),
    (((2, 32, 2, 2), (64, 32, 3, 3), dict(padding=1)), True, True),
]
CASES += [c for c, _, _ in CHANNEL_TILED]


def ids(case):
    x, w, kw = case
    return f"x{x}-w{w}-" + ",".join(f"{k}={v}" for k, v in kw.items())


def run_case(xshape, wshape, kw, dtype, device, bias=True, layout="contiguous"):
    g = torch.Generator().manual_seed(0)
    mk = lambda s: torch.randn(s, generator=g, dtype=torch.float64)
    x0, w0, b0 = mk(xshape), mk(wshape), mk(wshape[:1])
    if layout == "channels_last":
        x0 = x0.contiguous(memory_format=torch.channels_last)
    outs = []
    for fn, dt in ((F.conv2d, dtype), (torch.nn.functional.conv2d, dtype), (torch.nn.functional.conv2d, torch.float64)):
        x = x0.to(dt).to(device).requires_grad_()
        w = w0.to(dt).to(device).requires_grad_()
        b = b0.to(dt).to(device).requires_grad_() if bias else None
        if layout == "transposed":
            x = x.transpose(-1, -2).detach().requires_grad_()
        y = fn(x, w, b, **kw)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dt).to(device)
        grads = torch.autograd.grad(y, [x, w] + ([b] if bias else []), gy)
        outs.append((y, grads))
    (a, ga), (r, gr), (d, gd) = outs
    assert a.shape == r.shape and a.stride() == r.stride()
    close_or_better(a, r, d)
    for u, v, e in zip(ga, gr, gd):
        assert u.stride() == v.stride()
        close_or_better(u, v, e)


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_conv2d_matches_torch(case, dtype, device):
    run_case(*case, dtype, device)


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direct_cpu_kernels_match_torch(case, dtype, monkeypatch):
    """The CPU's GEMM kernels are not what the GPU runs: the element functions shared with the
    CUDA kernels are checked here on the CPU."""
    monkeypatch.setattr(_conv, "CPU_DIRECT", True)
    run_case(*case, dtype, "cpu")


@pytest.mark.parametrize("case,fwd,dx", CHANNEL_TILED, ids=[ids(c) for c, _, _ in CHANNEL_TILED])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_channel_tiled_path(case, fwd, dx, dtype):
    """The channel-tiled path (small maps) gives the shifted path's bits in the forward (the
    same FMA chain per output); its input gradient, the row kernel's alternative, matches
    torch like every other path (run_case on both)."""
    xshape, wshape, kw = case
    q = _conv.params(xshape, wshape, _pair(kw.get("stride", 1)), _pair(kw.get("padding", 0)),
                     _pair(kw.get("dilation", 1)), kw.get("groups", 1))
    assert _C.conv_channel_tiled(q, False) == fwd and _C.conv_channel_tiled(q, True) == dx
    g = torch.Generator().manual_seed(0)
    x = torch.randn(xshape, generator=g).to(dtype)
    w = torch.randn(wshape, generator=g).to(dtype)
    b = torch.randn(wshape[:1], generator=g).to(dtype)
    tiled = F.conv2d(x, w, b, **kw)
    _C.set_conv_channel_tiles(False)
    try:
        assert not _C.conv_channel_tiled(q, False)
        shifted = F.conv2d(x, w, b, **kw)
        run_case(*case, dtype, "cpu")  # the row kernel's input gradient
    finally:
        _C.set_conv_channel_tiles(True)
    assert torch.equal(tiled, shifted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride", [(1, 1), (1, 3)])  # (1, 3): the CPU's phase-split rows
def test_weight_grad_inf_input_matches_torch(dtype, stride, device):
    """An inf in the input reaches exactly the weight taps that read it inside a window: the
    kernels never multiply it by the zero of a lane past the row or of padding (inf * 0 = NaN)."""
    x = torch.randn(2, 2, 6, 20, dtype=torch.float64)
    x[0, 1, 2, 0] = float("inf")
    x[1, 0, 4, 19] = float("-inf")
    x[1, 1, 3, 7] = float("inf")
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    g = torch.randn(2, 3, 4, (18 - 1) // stride[1] + 1, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(g, x, w, [3], list(stride), [0, 0], [1, 1], False, [0, 0], 1,
                                              [False, True, False])[1]
    xd, wd = x.to(dtype).to(device), w.to(dtype).to(device).requires_grad_()
    F.conv2d(xd, wd, stride=stride).backward(g.to(dtype).to(device))
    got = wd.grad.double().cpu()
    assert torch.equal(got.isnan(), ref.isnan()) and torch.equal(got.isinf(), ref.isinf())
    assert ref.isinf().any() and (ref.isfinite()).any()
    fin = ref.isfinite()
    torch.testing.assert_close(got[fin], ref[fin], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("groups", [1, 2])  # 2: depthwise (the CPU's row forward)
def test_forward_inf_input_matches_torch(dtype, groups, device):
    """inf in the input: padding and lanes past a row add exact zeros, never inf * 0 = NaN."""
    x = torch.randn(2, 2, 6, 20, dtype=torch.float64)
    x[0, 1, 2, 0] = float("inf")
    x[1, 0, 5, 19] = float("-inf")
    x[1, 0, 3, 10] = float("inf")
    w = torch.randn(2, 2 // groups, 3, 3, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, w, padding=1, groups=groups)
    got = F.conv2d(x.to(dtype).to(device), w.to(dtype).to(device), padding=1, groups=groups).double().cpu()
    assert torch.equal(got.isnan(), ref.isnan()) and torch.equal(got.isinf(), ref.isinf())
    assert ref.isinf().any() and ref.isfinite().any()
    fin = ref.isfinite()
    torch.testing.assert_close(got[fin], ref[fin], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_layouts_and_no_bias(layout, device):
    run_case((2, 3, 9, 10), (4, 3, 3, 3), dict(padding=1), torch.float32, device, bias=False, layout=layout)


def test_gradcheck_float64():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: F.conv2d(*t, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                                    (x, w, b))


@pytest.mark.parametrize("groups,side", [(1, 20), (16, 20), (1, 4)])  # 16: depthwise (row forward); 4: channel tiles
def test_bitwise_deterministic_across_threads(groups, side):
    x = torch.randn(8, 16, side, side, requires_grad=True)
    w = torch.randn(32, 16 // groups, 3, 3, requires_grad=True)
    q = _conv.params(x.shape, w.shape, (1, 1), (1, 1), (1, 1), groups)
    assert _C.conv_channel_tiled(q, False) == (side == 4)
    res = []
    for n in (1, 2):
        torch.set_num_threads(n)
        y = F.conv2d(x, w, padding=1, groups=groups)
        res.append((y,) + torch.autograd.grad(y.square().sum(), (x, w)))
    for u, v in zip(*res):
        assert torch.equal(u, v)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_module_is_a_drop_in(padding_mode):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode=padding_mode)
    ours = fnn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode=padding_mode)
    ours.load_state_dict(ref.state_dict())
    assert repr(ours) == repr(ref)
    assert ref.load_state_dict(ours.state_dict()) is not None
    x = torch.randn(2, 3, 11, 11)
    torch.testing.assert_close(ours(x), ref(x))
    torch.manual_seed(5)
    a = fnn.Conv2d(4, 6, 3)
    torch.manual_seed(5)
    b = torch.nn.Conv2d(4, 6, 3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)  # same initialisation



CL = torch.channels_last
MEMORY_FORMATS = {
    # (input shape, input format, weight shape, weight format): torch's output format follows
    # c10's stride-based suggest_memory_format of either operand
    "x channels_last": ((2, 3, 8, 8), CL, (4, 3, 3, 3), None),
    "x channels_last, 1 channel": ((2, 1, 8, 8), CL, (4, 1, 3, 3), None),
    "weight channels_last, x contiguous": ((2, 3, 8, 8), None, (4, 3, 3, 3), CL),
    "both channels_last": ((2, 3, 8, 8), CL, (4, 3, 3, 3), CL),
    "1x1 kernel, contiguous": ((2, 3, 8, 8), None, (4, 3, 1, 1), None),
    "1x1 kernel channels_last": ((2, 3, 8, 8), None, (4, 3, 1, 1), CL),
    "x 1x1 plane channels_last": ((2, 3, 1, 1), CL, (4, 3, 1, 1), None),
    "one output channel": ((2, 3, 8, 8), CL, (1, 3, 3, 3), None),
}


@pytest.mark.parametrize("case", list(MEMORY_FORMATS))
def test_output_and_gradient_memory_format_is_torchs(case, device):
    xs, xf, ws, wf = MEMORY_FORMATS[case]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(xs, generator=g).to(device)
    w0 = torch.randn(ws, generator=g).to(device)
    x0 = x0.contiguous(memory_format=xf) if xf else x0
    w0 = w0.contiguous(memory_format=wf) if wf else w0
    res = []
    for fn in (F.conv2d, torch.nn.functional.conv2d):
        x, w = x0.clone(memory_format=torch.preserve_format).requires_grad_(), \
            w0.clone(memory_format=torch.preserve_format).requires_grad_()
        y = fn(x, w, padding=1 if ws[-1] == 3 else 0)
        gx, gw = torch.autograd.grad(y, [x, w], torch.ones_like(y))
        res.append((y, gx, gw))
    for a, b in zip(*res):
        assert a.stride() == b.stride(), (case, a.stride(), b.stride())
        torch.testing.assert_close(a, b)
