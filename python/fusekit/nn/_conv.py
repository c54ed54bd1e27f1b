"""Argument handling and autograd for conv2d on fusekit's kernels."""
from __future__ import annotations

import torch

from .. import _C
from .._backend import DTYPE_CODES, is_channels_last, new_output, set_launch
from ._pool import pair


def prepare(x, weight, bias, stride, padding, dilation, groups):
    """Checks everything before any kernel runs. Returns (input, q) where input may be
    padded (asymmetric 'same' padding, as torch does) and q is a _C.Conv2dParams."""
    if x.dim() not in (3, 4):
        raise ValueError(f"conv2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got {x.dim()}-D")
    if weight.dim() != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), got {weight.dim()}-D")
    if x.dtype not in DTYPE_CODES:
        raise TypeError(f"conv2d: input dtype {x.dtype} is not supported (float32/64, float16, bfloat16)")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"conv2d: input ({x.dtype}), weight ({weight.dtype}) and bias "
                        f"({None if bias is None else bias.dtype}) must have the same dtype")
    if weight.device != x.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"conv2d: input, weight and bias must be on one device, got {x.device}, {weight.device}"
                         + ("" if bias is None else f", {bias.device}"))
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive integer, got {groups}")
    c, co = x.shape[-3], weight.shape[0]
    if c % groups or co % groups:
        raise ValueError(f"conv2d: in_channels ({c}) and out_channels ({co}) must be divisible by groups ({groups})")
    if weight.shape[1] * groups != c:
        raise ValueError(f"conv2d: weight of shape {tuple(weight.shape)} expects {weight.shape[1] * groups} input "
                         f"channels with groups={groups}, but the input has {c}")
    if bias is not None and tuple(bias.shape) != (co,):
        raise ValueError(f"conv2d: bias must have shape ({co},), got {tuple(bias.shape)}")
    s, d = pair(stride, "stride"), pair(dilation, "dilation")
    if min(s) <= 0:
        raise ValueError(f"conv2d: stride must be positive, got {s}")
    if min(d) <= 0:
        raise ValueError(f"conv2d: dilation must be positive, got {d}")
    k = tuple(weight.shape[2:])
    if isinstance(padding, str):
        if padding == "valid":
            p = (0, 0)
        elif padding == "same":
            if s != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
            total = [d[i] * (k[i] - 1) for i in range(2)]
            p = (total[0] // 2, total[1] // 2)
            extra = [total[i] - 2 * p[i] for i in range(2)]
            if any(extra):  # torch pads the odd element on the bottom/right
                x = torch.nn.functional.pad(x, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        p = pair(padding, "padding")
        if min(p) < 0:
            raise ValueError(f"conv2d: padding must be non-negative, got {p}")
    h, w = x.shape[-2], x.shape[-1]
    eff = [d[i] * (k[i] - 1) + 1 for i in range(2)]
    if h + 2 * p[0] < eff[0] or w + 2 * p[1] < eff[1]:
        raise ValueError(f"conv2d: kernel size {tuple(eff)} (dilated) is larger than the padded input "
                         f"({h + 2 * p[0]}, {w + 2 * p[1]})")
    q = _C.Conv2dParams()
    q.n = x.shape[0] if x.dim() == 4 else 1
    q.ci, q.h, q.w, q.co = c, h, w, co
    q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.dh, q.dw = *k, *s, *p, *d
    q.oh = (h + 2 * p[0] - eff[0]) // s[0] + 1
    q.ow = (w + 2 * p[1] - eff[1]) // s[1] + 1
    q.groups = groups
    return x, q


# True: the CPU runs the element functions the CUDA kernels run (conv_elems.h) instead of
# its GEMM kernels, so tests check the GPU's math on a machine without one.
CPU_DIRECT = False


def _args(q, ref):
    a = set_launch(_C.ConvArgs(), ref)
    a.q = q
    a.direct = CPU_DIRECT
    return a


def _grad_args(ctx, xc, wc, go):
    """ConvArgs for a backward pass and the gradients it fills (None where not needed)."""
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    a = _args(ctx.q, go)
    a.input, a.weight = xc.data_ptr(), wc.data_ptr()
    gx = new_output(xc.shape, xc) if need_x else None
    gw = new_output(wc.shape, wc) if need_w else None
    gb = torch.empty(ctx.q.co, dtype=go.dtype, device=go.device) if (need_b and ctx.has_bias) else None
    for name, t in (("grad_input", gx), ("grad_weight", gw), ("grad_bias", gb)):
        if t is not None:
            setattr(a, name, t.data_ptr())
    return a, (gx, gw, gb)


class Conv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, q):
        xc, wc = x.contiguous(), weight.contiguous()
        bc = None if bias is None else bias.contiguous()
        out = new_output((*x.shape[:-3], q.co, q.oh, q.ow), x)
        a = _args(q, x)
        a.input, a.weight, a.out = xc.data_ptr(), wc.data_ptr(), out.data_ptr()
        if bc is not None:
            a.bias = bc.data_ptr()
        _C.conv2d_forward(a)
        ctx.q, ctx.cl, ctx.has_bias = q, is_channels_last(x), bias is not None
        ctx.save_for_backward(xc, wc)
        return out.contiguous(memory_format=torch.channels_last) if ctx.cl else out

    @staticmethod
    def backward(ctx, grad_out):
        xc, wc = ctx.saved_tensors
        go = grad_out.contiguous()
        a, (gx, gw, gb) = _grad_args(ctx, xc, wc, go)
        a.grad_out = go.data_ptr()
        _C.conv2d_backward(a)
        if ctx.cl:  # torch returns channels_last input and weight gradients then
            gx = None if gx is None else gx.contiguous(memory_format=torch.channels_last)
            gw = None if gw is None else gw.contiguous(memory_format=torch.channels_last)
        return gx, gw, gb, None


class ConvReLUMaxPoolFn(torch.autograd.Function):
    """max_pool(relu(conv(x) + b)) with the convolution output never written to memory
    (CPU). Backward is one native call: the ReLU gate (from the saved pooled output), the
    pool's scatter and the bias gradient in one pass, then the convolution's gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, q, pq):
        xc, wc = x.contiguous(), weight.contiguous()
        shape = (*x.shape[:-3], q.co, pq.oh, pq.ow)
        out = new_output(shape, x)
        conv = _args(q, x)
        conv.input, conv.weight = xc.data_ptr(), wc.data_ptr()
        if bias is not None:
            bc = bias.contiguous()
            conv.bias = bc.data_ptr()
        # 2x2/2 pools save a byte per output (the maximum's place in its window), others int64 indices
        codes = _C.pool2d_window_codes(pq)
        arg = new_output(shape, x, torch.uint8 if codes else torch.int64)
        a = _block_args(conv, pq, out, arg)
        _C.conv_relu_maxpool_forward(a)
        ctx.q, ctx.pq, ctx.has_bias = q, pq, bias is not None
        ctx.save_for_backward(xc, wc, out, arg)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xc, wc, out, arg = ctx.saved_tensors
        go = grad_out.contiguous()
        conv, (gx, gw, gb) = _grad_args(ctx, xc, wc, go)
        gconv = new_output((*xc.shape[:-3], ctx.q.co, ctx.q.oh, ctx.q.ow), go)  # written whole by the kernel
        a = _block_args(conv, ctx.pq, out, arg)
        a.grad_out, a.grad_conv = go.data_ptr(), gconv.data_ptr()
        _C.conv_relu_maxpool_backward(a)
        return gx, gw, gb, None, None


def _block_args(conv, pq, out, arg):
    """ConvPoolArgs; arg holds uint8 window codes or int64 indices."""
    a = _C.ConvPoolArgs()
    a.conv, a.pool, a.out = conv, pq, out.data_ptr()
    if arg.dtype == torch.uint8:
        a.window_codes = arg.data_ptr()
    else:
        a.indices = arg.data_ptr()
    return a
