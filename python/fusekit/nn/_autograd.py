"""Autograd of the layer ops (architecture.md §2.6, §2.8): new-style autograd.Functions
(setup_context, generated vmap rules, jvp) over the fusekit:: custom ops, so the layers
work under torch.func (grad, vmap, jvp), double backward and torch.compile.

Each backward is built from Functions of the same kind, so it is differentiable itself:
conv's input and weight gradients are bilinear in (grad_out, weight) and (grad_out, input)
and differentiate into one another; pooling backward is linear in grad_out and its own
gradient is the forward's gather (max) or the forward itself (avg).
"""
from __future__ import annotations

import torch
from torch._functorch.utils import unwrap_dead_wrappers

from .._ops.library import call


# Dynamo cannot trace an autograd.Function that defines jvp, so each Function below has a
# twin without it (made at the end of this module), which fn() returns while torch.compile
# traces. Looked up by name: Dynamo traces a dict of str keys, not one keyed by classes.
_VARIANTS: dict = {}


def fn(name: str):
    """The Function to apply: the one named, or while torch.compile traces, its twin without jvp."""
    return _VARIANTS[name][1 if torch.compiler.is_compiling() else 0]


class _Function(torch.autograd.Function):
    """torch's Function.apply binds the arguments to forward's signature with inspect on
    every call (~20 us, as long as a small layer's kernel) because setup_context is defined;
    fusekit passes every argument positionally, so outside functorch transforms the
    binding is skipped and the call goes straight to autograd's C++ apply (what torch's own
    apply does next). Under transforms torch's apply runs unchanged; under torch.compile
    fn() hands out the twins below, which derive from torch.autograd.Function directly."""

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))


def _add(*terms):
    """Sum of the terms that are not None (tangents of inputs without one are None)."""
    terms = [t for t in terms if t is not None]
    out = terms[0] if terms else None
    for t in terms[1:]:
        out = out + t
    return out


class Conv2d(_Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, bias, stride, padding, dilation, groups, channels_last):
        return call("conv2d", x, w, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, bias, *geom = inputs
        ctx.geom = tuple(geom)  # stride, padding, dilation, groups, channels_last
        ctx.has_bias = bias is not None
        ctx.out_hw = tuple(output.shape[2:])  # the tangent of a bias alone needs it
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        gx = fn("Conv2dInputGrad").apply(go, w, x.shape, *ctx.geom) if nx else None
        gw = fn("Conv2dWeightGrad").apply(go, x, w.shape, *ctx.geom) if nw else None
        gb = go.sum((0, 2, 3)) if nb and ctx.has_bias else None
        return gx, gw, gb, None, None, None, None, None

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        x, w = ctx.saved_tensors
        g = ctx.geom
        out = _add(None if tx is None else fn("Conv2d").apply(tx, w, None, *g),
                   None if tw is None else fn("Conv2d").apply(x, tw, None, *g))
        if tb is not None:
            tb = tb.view(1, -1, 1, 1)
            out = tb.expand(x.shape[0], -1, *ctx.out_hw) if out is None else out + tb
        return out


def _save_bilinear(ctx, inputs, output):
    """setup_context of conv2d's two gradients: each is bilinear in (grad_out, operand)."""
    go, operand, size, *geom = inputs
    ctx.geom = tuple(geom)  # stride, padding, dilation, groups, channels_last
    ctx.size = tuple(size)  # the gradient's shape
    ctx.save_for_backward(go, operand)
    ctx.save_for_forward(go, operand)


def _bilinear_jvp(name: str, ctx, t_go, t_operand):
    """d f(go, operand) = f(d go, operand) + f(go, d operand) for a bilinear f."""
    go, operand = ctx.saved_tensors
    f = fn(name)
    return _add(None if t_go is None else f.apply(t_go, operand, ctx.size, *ctx.geom),
                None if t_operand is None else f.apply(go, t_operand, ctx.size, *ctx.geom))


class Conv2dInputGrad(_Function):
    """grad_input = conv2d_input_grad(grad_out, weight)."""
    generate_vmap_rule = True
    setup_context = staticmethod(_save_bilinear)

    @staticmethod
    def forward(go, w, x_shape, stride, padding, dilation, groups, channels_last):
        return call("conv2d_input_grad", go, w, list(x_shape), stride, padding, dilation, groups, channels_last)

    @staticmethod
    def backward(ctx, ggi):
        go, w = ctx.saved_tensors
        ngo, nw = ctx.needs_input_grad[:2]
        d_go = fn("Conv2d").apply(ggi, w, None, *ctx.geom) if ngo else None
        d_w = fn("Conv2dWeightGrad").apply(go, ggi, w.shape, *ctx.geom) if nw else None
        return d_go, d_w, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, t_go, t_w, *_):
        return _bilinear_jvp("Conv2dInputGrad", ctx, t_go, t_w)


class Conv2dWeightGrad(_Function):
    """grad_weight = conv2d_weight_grad(grad_out, input)."""
    generate_vmap_rule = True
    setup_context = staticmethod(_save_bilinear)

    @staticmethod
    def forward(go, x, w_shape, stride, padding, dilation, groups, channels_last):
        return call("conv2d_weight_grad", go, x, list(w_shape), stride, padding, dilation, groups, channels_last)

    @staticmethod
    def backward(ctx, ggw):
        go, x = ctx.saved_tensors
        ngo, nx = ctx.needs_input_grad[:2]
        d_go = fn("Conv2d").apply(x, ggw, None, *ctx.geom) if ngo else None
        d_x = fn("Conv2dInputGrad").apply(go, ggw, x.shape, *ctx.geom) if nx else None
        return d_go, d_x, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, t_go, t_x, *_):
        return _bilinear_jvp("Conv2dWeightGrad", ctx, t_go, t_x)


# ---- pooling ----------------------------------------------------------------------------------

def window_indices(arg: torch.Tensor, in_w: int) -> torch.Tensor:
    """int64 per-plane indices (torch's) from max_pool2d's saved argument: indices as they
    are, or 2x2/2 window codes (dy * 2 + dx) turned into y * W + x."""
    if arg.dtype == torch.int64:
        return arg
    oh, ow = arg.shape[-2:]
    oy = torch.arange(oh, device=arg.device).view(oh, 1)
    ox = torch.arange(ow, device=arg.device).view(1, ow)
    code = arg.long()
    return (2 * oy + code // 2) * in_w + 2 * ox + code % 2


def gather_windows(t: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """t (input-shaped) at each output's window maximum: max pooling's forward derivative
    and the derivative of its backward."""
    idx = window_indices(arg, t.shape[-1])
    return t.flatten(-2).gather(-1, idx.flatten(-2)).view(idx.shape)


class MaxPool2d(_Function):
    """(out, arg): arg is int64 indices or uint8 window codes (not differentiable)."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
        return call("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, *geom = inputs
        ctx.geom = tuple(geom[:5])  # kernel_size, stride, padding, dilation, ceil_mode
        ctx.x_shape = tuple(x.shape)
        ctx.cl = _cl(x)
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])

    @staticmethod
    def backward(ctx, go, _garg):
        (arg,) = ctx.saved_tensors
        return fn("MaxPool2dBackward").apply(go, arg, ctx.x_shape, *ctx.geom, ctx.cl), None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, tx, *_):
        (arg,) = ctx.saved_tensors
        return gather_windows(tx, arg), None


class MaxPool2dBackward(_Function):
    """Scatters grad_out to the window maxima: linear in grad_out."""
    generate_vmap_rule = True

    @staticmethod
    def forward(go, arg, x_shape, kernel_size, stride, padding, dilation, ceil_mode, channels_last):
        return call("max_pool2d_backward", go, arg, list(x_shape), kernel_size, stride, padding, dilation, ceil_mode,
                                       channels_last)

    @staticmethod
    def setup_context(ctx, inputs, output):
        go, arg, *rest = inputs
        ctx.rest = tuple(rest)
        ctx.save_for_backward(arg)
        ctx.save_for_forward(arg)

    @staticmethod
    def backward(ctx, ggi):
        (arg,) = ctx.saved_tensors
        return (gather_windows(ggi, arg),) + (None,) * 8

    @staticmethod
    def jvp(ctx, t_go, *_):
        (arg,) = ctx.saved_tensors
        return fn("MaxPool2dBackward").apply(t_go, arg, *ctx.rest)


class AvgPool2d(_Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        return call("avg_pool2d", x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, *geom = inputs
        ctx.geom = tuple(geom)
        ctx.x_shape = tuple(x.shape)
        ctx.cl = _cl(x)

    @staticmethod
    def backward(ctx, go):
        return (fn("AvgPool2dBackward").apply(go, ctx.x_shape, *ctx.geom, ctx.cl),) + (None,) * 6

    @staticmethod
    def jvp(ctx, tx, *_):
        return fn("AvgPool2d").apply(tx, *ctx.geom)


class AvgPool2dBackward(_Function):
    """Spreads grad_out over the windows: the adjoint of avg_pool2d, linear in grad_out."""
    generate_vmap_rule = True

    @staticmethod
    def forward(go, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                channels_last):
        return call("avg_pool2d_backward", go, list(x_shape), kernel_size, stride, padding, ceil_mode, count_include_pad,
                                       divisor_override, channels_last)

    @staticmethod
    def setup_context(ctx, inputs, output):
        go, x_shape, *rest = inputs
        ctx.x_shape = tuple(x_shape)
        ctx.rest = tuple(rest)

    @staticmethod
    def backward(ctx, ggi):
        return (fn("AvgPool2d").apply(ggi, *ctx.rest[:-1]),) + (None,) * 8

    @staticmethod
    def jvp(ctx, t_go, *_):
        return fn("AvgPool2dBackward").apply(t_go, ctx.x_shape, *ctx.rest)


def _cl(x: torch.Tensor) -> bool:
    from .._backend.common import memory_format
    return memory_format(x) == torch.channels_last


# ---- the fused conv + relu + max-pool block (CPU) -----------------------------------------------

class ConvReLUMaxPool2d(_Function):
    """(out, arg) of max_pool(relu(conv(x) + b)); the convolution output is never stored.
    Backward is one native call, or, when a graph of the backward is wanted (create_graph,
    torch.func), the same math from the differentiable Functions above."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, bias, stride, padding, dilation, groups, pool_size, pool_stride):
        return call("conv_relu_max_pool2d", x, w, bias, stride, padding, dilation, groups, pool_size, pool_stride)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, bias, *geom = inputs
        ctx.conv = tuple(geom[:4])
        ctx.pool = tuple(geom[4:])
        ctx.has_bias = bias is not None
        out, arg = output
        ctx.mark_non_differentiable(arg)
        ctx.save_for_backward(x, w, out, arg)
        ctx.save_for_forward(x, w, out, arg)

    @staticmethod
    def backward(ctx, go, _garg):
        x, w, out, arg = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        if not torch.is_grad_enabled():
            gx, gw, gb = call("conv_relu_max_pool2d_backward", go, x, w, out, arg, ctx.has_bias, *ctx.conv, *ctx.pool,
                                                           [nx, nw, nb])
            return (gx if nx else None, gw if nw else None, gb if nb and ctx.has_bias else None) + (None,) * 6
        geom = (*ctx.conv, False)
        conv_shape = (x.shape[0], w.shape[0], *_conv_hw(x, w, ctx.conv))
        gated = torch.where(out <= 0, torch.zeros_like(go), go)  # relu's gate, as torch's threshold_backward
        gconv = fn("MaxPool2dBackward").apply(gated, arg, conv_shape, ctx.pool[0], ctx.pool[1], (0, 0), (1, 1), False,
                                        False)
        gx = fn("Conv2dInputGrad").apply(gconv, w, x.shape, *geom) if nx else None
        gw = fn("Conv2dWeightGrad").apply(gconv, x, w.shape, *geom) if nw else None
        gb = gconv.sum((0, 2, 3)) if nb and ctx.has_bias else None
        return (gx, gw, gb) + (None,) * 6

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        x, w, out, arg = ctx.saved_tensors
        geom = (*ctx.conv, False)
        t = _add(None if tx is None else fn("Conv2d").apply(tx, w, None, *geom),
                 None if tw is None else fn("Conv2d").apply(x, tw, None, *geom))
        if tb is not None:
            tb = tb.view(1, -1, 1, 1)
            t = tb.expand(x.shape[0], -1, *_conv_hw(x, w, ctx.conv)) if t is None else t + tb
        t_out = gather_windows(t, arg)
        return torch.where(out <= 0, torch.zeros_like(t_out), t_out), None


def _conv_hw(x, w, conv_geom):
    from .._backend.conv import out_hw
    stride, padding, dilation, _ = conv_geom
    return out_hw(x.shape[2:], w.shape[2:], stride, padding, dilation)


def _without_jvp(cls):
    body = {k: v for k, v in vars(cls).items() if k not in ("jvp", "__dict__", "__weakref__")}
    return type(cls.__name__, (torch.autograd.Function,), body)


for _cls in (Conv2d, Conv2dInputGrad, Conv2dWeightGrad, MaxPool2d, MaxPool2dBackward, AvgPool2d, AvgPool2dBackward,
             ConvReLUMaxPool2d):
    _VARIANTS[_cls.__name__] = (_cls, _without_jvp(_cls))
