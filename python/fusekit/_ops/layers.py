"""Custom ops of the conv2d / pooling kernels (4-D tensors; argument parsing, unbatched
inputs and autograd are fusekit.nn's). Backward ops take the forward's sizes and layout
(`channels_last`: the format torch gives the gradients) explicitly."""
from __future__ import annotations

import torch

from .._backend import conv, pool
from .._backend.common import memory_format
from . import batching as B
from .library import define

CONV = "int[2] stride, int[2] padding, int[2] dilation, int groups"
POOL = "int[2] kernel_size, int[2] stride, int[2] padding"


def _empty(shape, like, dtype=None, channels_last=False):
    fmt = torch.channels_last if channels_last and len(shape) == 4 else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def _cl(*tensors) -> bool:
    return memory_format(*tensors) == torch.channels_last


# ---- conv2d --------------------------------------------------------------------------------

def _conv_fake(x, w, bias, stride, padding, dilation, groups):
    conv.check(x, w, bias, stride, padding, dilation, groups)
    return _empty(conv.out_shape(x, w, stride, padding, dilation), x, channels_last=_cl(x, w))


def _conv_vmap(info, in_dims, x, w, bias, stride, padding, dilation, groups):
    bx, bw, bb = in_dims[:3]
    n = info.batch_size
    op = torch.ops.fusekit.conv2d
    if bw is None and bb is None:  # the common case: fold the vmapped dim into the batch
        return B.unfold_n(op(B.fold_n(x, bx, n), w, bias, stride, padding, dilation, groups), n), 0
    # batched weights: each vmapped index is a block of `groups` channel groups
    b = None if bias is None else B.to_front(bias, bb, n).reshape(-1)
    y = op(B.fold_channels(x, bx, n), B.fold_out_channels(w, bw, n), b, stride, padding, dilation, groups * n)
    return B.unfold_channels(y, n), 0


define(f"conv2d(Tensor input, Tensor weight, Tensor? bias, {CONV}) -> Tensor",
       conv.forward, _conv_fake, _conv_vmap)


def _input_grad(grad_out, w, input_size, stride, padding, dilation, groups, channels_last):
    return conv.backward(grad_out, None, w, tuple(input_size), tuple(w.shape), stride, padding, dilation, groups,
                         channels_last, need_input=True, need_weight=False)[0]


def _input_grad_fake(grad_out, w, input_size, stride, padding, dilation, groups, channels_last):
    return _empty(tuple(input_size), grad_out, channels_last=channels_last)


def _input_grad_vmap(info, in_dims, grad_out, w, input_size, stride, padding, dilation, groups, channels_last):
    bg, bw = in_dims[:2]
    n = info.batch_size
    op = torch.ops.fusekit.conv2d_input_grad
    size = list(input_size)
    if bw is None:
        size[0] *= n
        return B.unfold_n(op(B.fold_n(grad_out, bg, n), w, size, stride, padding, dilation, groups,
                             channels_last), n), 0
    size[1] *= n
    gi = op(B.fold_channels(grad_out, bg, n), B.fold_out_channels(w, bw, n), size, stride, padding, dilation,
            groups * n, channels_last)
    return B.unfold_channels(gi, n), 0


define(f"conv2d_input_grad(Tensor grad_out, Tensor weight, SymInt[4] input_size, {CONV}, bool channels_last) "
       "-> Tensor", _input_grad, _input_grad_fake, _input_grad_vmap)


def _weight_grad(grad_out, x, weight_size, stride, padding, dilation, groups, channels_last):
    return conv.backward(grad_out, x, None, tuple(x.shape), tuple(weight_size), stride, padding, dilation, groups,
                         channels_last, need_input=False, need_weight=True)[1]


def _weight_grad_fake(grad_out, x, weight_size, stride, padding, dilation, groups, channels_last):
    return _empty(tuple(weight_size), grad_out, channels_last=channels_last)


def _weight_grad_vmap(info, in_dims, grad_out, x, weight_size, stride, padding, dilation, groups, channels_last):
    # Per-sample weight gradients: vmapped index b is a block of `groups` channel groups
    # (sums over N stay within each b), whether grad_out, x or both are vmapped.
    n = info.batch_size
    size = [weight_size[0] * n, *weight_size[1:]]
    gw = torch.ops.fusekit.conv2d_weight_grad(B.fold_channels(grad_out, in_dims[0], n),
                                              B.fold_channels(x, in_dims[1], n), size, stride, padding, dilation,
                                              groups * n, channels_last)
    return gw.reshape(n, *weight_size), 0


define(f"conv2d_weight_grad(Tensor grad_out, Tensor input, SymInt[4] weight_size, {CONV}, bool channels_last) "
       "-> Tensor", _weight_grad, _weight_grad_fake, _weight_grad_vmap)


# ---- conv + relu + max_pool (the CPU's fused block) ------------------------------------------

def _block_fake(x, w, bias, stride, padding, dilation, groups, pool_size, pool_stride):
    conv.check(x, w, bias, stride, padding, dilation, groups, "conv_relu_max_pool2d")
    q, pq = conv.block_params(x, w, stride, padding, dilation, groups, pool_size, pool_stride)
    shape = (q.n, q.co, pq.oh, pq.ow)
    return _empty(shape, x), _empty(shape, x, torch.uint8 if conv.block_saves_codes(pq) else torch.int64)


def _block_vmap(info, in_dims, x, w, bias, *rest):
    n = info.batch_size
    if in_dims[1] is None and in_dims[2] is None:
        out, arg = torch.ops.fusekit.conv_relu_max_pool2d(B.fold_n(x, in_dims[0], n), w, bias, *rest)
        return (B.unfold_n(out, n), B.unfold_n(arg, n)), (0, 0)
    return B.loop(torch.ops.fusekit.conv_relu_max_pool2d, info, in_dims, (x, w, bias, *rest))


define(f"conv_relu_max_pool2d(Tensor input, Tensor weight, Tensor? bias, {CONV}, int[2] pool_size, "
       "int[2] pool_stride) -> (Tensor, Tensor)", conv.block_forward, _block_fake, _block_vmap)


def _block_backward(grad_out, x, w, out, arg, has_bias, stride, padding, dilation, groups, pool_size, pool_stride,
                    output_mask):
    gx, gw, gb = conv.block_backward(grad_out, x, w, out, arg, has_bias, stride, padding, dilation, groups,
                                     pool_size, pool_stride, *output_mask)
    empty = grad_out.new_empty(0)  # a custom op returns tensors: empty where not asked for
    return tuple(empty if g is None else g for g in (gx, gw, gb))


def _block_backward_fake(grad_out, x, w, out, arg, has_bias, stride, padding, dilation, groups, pool_size,
                         pool_stride, output_mask):
    shapes = (x.shape, w.shape, (w.shape[0],))
    return tuple(_empty(s if (m and (i < 2 or has_bias)) else (0,), grad_out)
                 for i, (s, m) in enumerate(zip(shapes, output_mask)))


def _block_backward_vmap(info, in_dims, *args):
    return B.loop(torch.ops.fusekit.conv_relu_max_pool2d_backward, info, in_dims, args)


define(f"conv_relu_max_pool2d_backward(Tensor grad_out, Tensor input, Tensor weight, Tensor out, Tensor arg, "
       f"bool has_bias, {CONV}, int[2] pool_size, int[2] pool_stride, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
       _block_backward, _block_backward_fake, _block_backward_vmap)


# ---- pooling -----------------------------------------------------------------------------------

def _max_fake(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    pool.check(x, kernel_size, stride, padding, dilation, "max_pool2d")
    oh, ow = pool.out_hw(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    shape, cl = (x.shape[0], x.shape[1], oh, ow), _cl(x)
    dtype = pool.arg_dtype(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    return _empty(shape, x, channels_last=cl), _empty(shape, x, dtype, cl)


def _fold_vmap(name, n_outputs, size_arg=None):
    """vmap rule of a pooling op: every tensor argument takes the vmapped dim into N (an
    unbatched one is expanded); the input_size argument (index size_arg) grows to match."""
    def rule(info, in_dims, *args):
        n = info.batch_size
        op = getattr(torch.ops.fusekit, name)
        args = [B.fold_n(a, d, n) if isinstance(a, torch.Tensor) else a for a, d in zip(args, in_dims)]
        if size_arg is not None:
            args[size_arg] = [args[size_arg][0] * n, *args[size_arg][1:]]
        out = op(*args)
        if n_outputs == 1:
            return B.unfold_n(out, n), 0
        return tuple(B.unfold_n(o, n) for o in out), (0,) * n_outputs
    return rule


define(f"max_pool2d(Tensor input, {POOL}, int[2] dilation, bool ceil_mode, bool return_indices) -> (Tensor, Tensor)",
       pool.max_forward, _max_fake, _fold_vmap("max_pool2d", 2))


def _max_backward_fake(grad_out, arg, input_size, kernel_size, stride, padding, dilation, ceil_mode, channels_last):
    return _empty(tuple(input_size), grad_out, channels_last=channels_last)


define(f"max_pool2d_backward(Tensor grad_out, Tensor arg, SymInt[4] input_size, {POOL}, int[2] dilation, "
       "bool ceil_mode, bool channels_last) -> Tensor",
       pool.max_backward, _max_backward_fake, _fold_vmap("max_pool2d_backward", 1, size_arg=2))


def _avg_fake(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    pool.check(x, kernel_size, stride, padding, (1, 1), "avg_pool2d")
    oh, ow = pool.out_hw(x.shape[2:], kernel_size, stride, padding, (1, 1), ceil_mode, "avg_pool2d")
    return _empty((x.shape[0], x.shape[1], oh, ow), x, channels_last=_cl(x))


define(f"avg_pool2d(Tensor input, {POOL}, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor",
       pool.avg_forward, _avg_fake, _fold_vmap("avg_pool2d", 1))


def _avg_backward_fake(grad_out, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override, channels_last):
    return _empty(tuple(input_size), grad_out, channels_last=channels_last)


define(f"avg_pool2d_backward(Tensor grad_out, SymInt[4] input_size, {POOL}, bool ceil_mode, bool count_include_pad, "
       "int? divisor_override, bool channels_last) -> Tensor",
       pool.avg_backward, _avg_backward_fake, _fold_vmap("avg_pool2d_backward", 1, size_arg=1))
