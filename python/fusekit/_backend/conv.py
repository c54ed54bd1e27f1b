"""conv2d and the fused conv + ReLU + max-pool block: tensors -> ConvArgs / ConvPoolArgs.

Every size is derived from the tensors of the call (output sizes by the C++ rules,
_C.conv_out_size / _C.pool_out_size); nothing shape-bearing outlives a call. Inputs are
4-D; outputs and gradients come back in torch's memory format (common.memory_format).
Batches or channels of size 0 never reach a kernel: they are answered here as torch
answers them (empty outputs, zero or summed gradients).
"""
from __future__ import annotations

import torch

from .. import _C
from .common import DTYPE_CODES, buf, check_steps, in_format, memory_format, new_output, set_launch

# True: the CPU runs the element functions the CUDA kernels run (conv_elems.h) instead of
# its GEMM kernels, so tests check the GPU's math on a machine without one.
CPU_DIRECT = False


def check(x, w, bias, stride, padding, dilation, groups, fn="conv2d") -> None:
    """Shape and type rules of a convolution (the messages torch gives, as RuntimeError);
    run by the ops on real and fake tensors alike, before anything is allocated."""
    if x.dim() != 4:
        raise RuntimeError(f"{fn}: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    if w.dim() != 4:
        raise RuntimeError(f"{fn}: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), got "
                           f"{w.dim()}-D weight of shape {tuple(w.shape)}")
    if x.dtype not in DTYPE_CODES:
        raise RuntimeError(f"{fn}: input dtype {x.dtype} is not supported (float32, float64, float16, bfloat16)")
    if w.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise RuntimeError(f"{fn}: input ({x.dtype}), weight ({w.dtype}) and bias "
                           f"({None if bias is None else bias.dtype}) must have the same dtype")
    if w.device != x.device or (bias is not None and bias.device != x.device):
        raise RuntimeError(f"{fn}: input, weight and bias must be on one device, got {x.device}, {w.device}"
                           + ("" if bias is None else f", {bias.device}"))
    if groups < 1:
        raise RuntimeError(f"{fn}: groups must be a positive integer, got {groups}")
    c, co = x.shape[1], w.shape[0]
    if co == 0:
        raise RuntimeError(f"{fn}: Given groups={groups}, expected weight to be at least 1 at dimension 0, but got "
                           f"weight of size {list(w.shape)} instead")
    if co % groups:
        raise RuntimeError(f"{fn}: out_channels ({co}) must be divisible by groups ({groups})")
    if w.shape[1] * groups != c:
        raise RuntimeError(f"{fn}: weight of shape {tuple(w.shape)} expects {w.shape[1] * groups} input channels "
                           f"with groups={groups}, but the input has {c}")
    if bias is not None and tuple(bias.shape) != (co,):
        raise RuntimeError(f"{fn}: bias must have shape ({co},), got {tuple(bias.shape)}")
    check_steps(fn, stride=stride, dilation=dilation)
    if min(padding) < 0:
        raise RuntimeError(f"{fn}: padding must be non-negative, got {tuple(padding)}")
    h, wd = x.shape[2], x.shape[3]
    eff = [dilation[i] * (w.shape[2 + i] - 1) + 1 for i in range(2)]
    if h + 2 * padding[0] < eff[0] or wd + 2 * padding[1] < eff[1]:
        raise RuntimeError(f"{fn}: kernel size {tuple(eff)} (dilated) is larger than the padded input "
                           f"({h + 2 * padding[0]}, {wd + 2 * padding[1]})")


def out_hw(in_hw, kernel_hw, stride, padding, dilation) -> tuple[int, int]:
    """Output height and width by the C++ rule (int(): symbolic sizes specialise here)."""
    return tuple(_C.conv_out_size(int(in_hw[i]), int(kernel_hw[i]), stride[i], padding[i], dilation[i])
                 for i in range(2))


def params(xshape, wshape, stride, padding, dilation, groups) -> "_C.Conv2dParams":
    """The kernel's parameters, output size by the C++ rule."""
    n, ci, h, w = map(int, xshape)  # int(): symbolic sizes specialise here
    co, _, kh, kw = map(int, wshape)
    return _C.Conv2dParams(n, ci, h, w, co, kh, kw, *stride, *padding, *dilation, groups)


def out_shape(x, w, stride, padding, dilation) -> tuple:
    return (x.shape[0], w.shape[0], *out_hw(x.shape[2:], w.shape[2:], stride, padding, dilation))


def _args(q, ref) -> "_C.ConvArgs":
    a = set_launch(_C.ConvArgs(), ref)
    a.q = q
    a.direct = CPU_DIRECT
    return a


def _degenerate(q) -> bool:
    return q.n == 0 or q.ci == 0 or q.co == 0


def forward(x, w, bias, stride, padding, dilation, groups) -> torch.Tensor:
    check(x, w, bias, stride, padding, dilation, groups)
    fmt = memory_format(x, w)
    q = params(x.shape, w.shape, stride, padding, dilation, groups)
    if _degenerate(q):  # torch: an empty output, or the bias alone when no channel is read
        out = torch.empty((q.n, q.co, q.oh, q.ow), dtype=x.dtype, device=x.device, memory_format=fmt).zero_()
        if bias is not None and out.numel():
            out += bias.view(1, -1, 1, 1)
        return out
    xc, wc = x.contiguous(), w.contiguous()
    bc = None if bias is None else bias.contiguous()
    out = new_output((q.n, q.co, q.oh, q.ow), x)
    a = _args(q, x)
    a.input, a.input_nbytes = buf(xc)
    a.weight, a.weight_nbytes = buf(wc)
    a.bias, a.bias_nbytes = buf(bc)
    a.out, a.out_nbytes = buf(out)
    _C.conv2d_forward(a)
    return in_format(out, fmt)


def backward(grad_out, x, w, x_shape, w_shape, stride, padding, dilation, groups, channels_last: bool,
             need_input: bool, need_weight: bool):
    """(grad_input, grad_weight), each None where not needed, in channels_last when the
    forward's format was. x is read only for the weight gradient, w only for the input
    gradient (either may be None where unread)."""
    q = params(x_shape, w_shape, stride, padding, dilation, groups)
    if tuple(grad_out.shape) != (q.n, q.co, q.oh, q.ow) or grad_out.dtype not in DTYPE_CODES:
        raise RuntimeError(f"conv2d backward: gradient of shape {tuple(grad_out.shape)} ({grad_out.dtype}) where the "
                           f"output has shape {(q.n, q.co, q.oh, q.ow)}")
    for t in (x, w):
        if t is not None and (t.dtype != grad_out.dtype or t.device != grad_out.device):
            raise RuntimeError(f"conv2d backward: operands of dtype {t.dtype} on {t.device} and a gradient of "
                               f"dtype {grad_out.dtype} on {grad_out.device}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    like = grad_out
    if _degenerate(q):
        def zeros(shape):
            return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt).zero_()
        gx = zeros(x_shape) if need_input else None
        gw = zeros(w_shape) if need_weight else None
        return gx, gw
    go = grad_out.contiguous()
    a = _args(q, go)
    a.grad_out, a.grad_out_nbytes = buf(go)
    gx = new_output(x_shape, go) if need_input else None
    gw = new_output(w_shape, go) if need_weight else None
    wc = w.contiguous() if need_input else None  # the kernel reads these: keep them alive
    xc = x.contiguous() if need_weight else None
    a.weight, a.weight_nbytes = buf(wc)
    a.grad_input, a.grad_input_nbytes = buf(gx)
    a.input, a.input_nbytes = buf(xc)
    a.grad_weight, a.grad_weight_nbytes = buf(gw)
    if need_input or need_weight:
        _C.conv2d_backward(a)
    return (None if gx is None else in_format(gx, fmt), None if gw is None else in_format(gw, fmt))


# ---- the fused block ------------------------------------------------------------------

def block_params(x, w, stride, padding, dilation, groups, pool_size, pool_stride):
    """(conv params, pool params) of max_pool(relu(conv(x))), from the tensors' sizes."""
    from .pool import check_window, params as pool_params
    check_window(pool_size, pool_stride, (0, 0), (1, 1), "conv_relu_max_pool2d")
    q = params(x.shape, w.shape, stride, padding, dilation, groups)
    pq = pool_params((q.n, q.co, q.oh, q.ow), pool_size, pool_stride, (0, 0), (1, 1), False,
                     "conv_relu_max_pool2d")
    return q, pq


def fused_block_applies(x, w) -> bool:
    """The fused kernel exists for CPU tensors laid out NCHW; elsewhere (CUDA, meta,
    channels_last) and for empty sizes the block is composed from conv2d, relu and max_pool2d."""
    if x.device.type != "cpu" or x.dim() != 4 or w.dim() != 4 or memory_format(x, w) != torch.contiguous_format:
        return False
    # Traced sizes are tensors: a traced call keeps the fused op (the op checks sizes itself).
    return torch.jit.is_tracing() or (x.shape[0] > 0 and x.shape[1] > 0 and w.shape[0] > 0)


def block_saves_codes(pq) -> bool:
    """2x2/2 pools save a byte per output (the maximum's place in its window), others int64."""
    return bool(_C.pool2d_window_codes(pq))


def block_forward(x, w, bias, stride, padding, dilation, groups, pool_size, pool_stride):
    """(out, arg): arg holds uint8 window codes or int64 indices into the conv output plane."""
    check(x, w, bias, stride, padding, dilation, groups, "conv_relu_max_pool2d")
    q, pq = block_params(x, w, stride, padding, dilation, groups, pool_size, pool_stride)
    shape = (q.n, q.co, pq.oh, pq.ow)
    arg_dtype = torch.uint8 if block_saves_codes(pq) else torch.int64
    if not fused_block_applies(x, w):
        raise RuntimeError(f"conv_relu_max_pool2d: the fused kernel runs on non-empty CPU tensors, got {x.device} "
                           f"input of shape {tuple(x.shape)}")
    xc, wc = x.contiguous(), w.contiguous()
    bc = None if bias is None else bias.contiguous()
    out = new_output(shape, x)
    arg = new_output(shape, x, arg_dtype)
    conv = _args(q, x)
    conv.input, conv.input_nbytes = buf(xc)
    conv.weight, conv.weight_nbytes = buf(wc)
    conv.bias, conv.bias_nbytes = buf(bc)
    a = _block_args(conv, pq, out, arg)
    _C.conv_relu_maxpool_forward(a)
    return out, arg


def block_backward(grad_out, x, w, out, arg, has_bias, stride, padding, dilation, groups, pool_size, pool_stride,
                   need_input: bool, need_weight: bool, need_bias: bool):
    """One native call: ReLU gate + pool scatter + bias gradient, then the conv gradients."""
    q, pq = block_params(x, w, stride, padding, dilation, groups, pool_size, pool_stride)
    go = grad_out.contiguous()
    conv = _args(q, go)
    gx = new_output(x.shape, go) if need_input else None
    gw = new_output(w.shape, go) if need_weight else None
    gb = torch.empty(q.co, dtype=go.dtype, device=go.device) if (need_bias and has_bias) else None
    xc, wc = x.contiguous(), w.contiguous()
    conv.input, conv.input_nbytes = buf(xc)
    conv.weight, conv.weight_nbytes = buf(wc)
    conv.grad_input, conv.grad_input_nbytes = buf(gx)
    conv.grad_weight, conv.grad_weight_nbytes = buf(gw)
    conv.grad_bias, conv.grad_bias_nbytes = buf(gb)
    gconv = new_output((q.n, q.co, q.oh, q.ow), go)  # written whole by the kernel
    outc, argc = out.contiguous(), arg.contiguous()
    a = _block_args(conv, pq, outc, argc)
    a.grad_out, a.grad_out_nbytes = buf(go)
    a.grad_conv, a.grad_conv_nbytes = buf(gconv)
    _C.conv_relu_maxpool_backward(a)
    return gx, gw, gb


def _block_args(conv, pq, out, arg) -> "_C.ConvPoolArgs":
    a = _C.ConvPoolArgs()
    a.conv, a.pool = conv, pq
    a.out, a.out_nbytes = buf(out)
    if arg.dtype == torch.uint8:
        a.window_codes, a.window_codes_nbytes = buf(arg)
    else:
        a.indices, a.indices_nbytes = buf(arg)
    return a
