"""Bad (and edge) input to the layer functions and modules, each case run on
torch.nn.functional / torch.nn and on fusekit in the same test (errors_harness.py): the
same exception type as torch, or the same result where torch accepts the input (empty
batches, zero channels, integer dtypes)."""
import pytest
import torch

import fusekit.nn as fnn
import fusekit.nn.functional as F
from errors_harness import SAME, check

tf = torch.nn.functional
G = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 8, 8, generator=G)
W = torch.randn(4, 3, 3, 3, generator=G)
B = torch.randn(4, generator=G)


def block_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, pool_size=2, pool_stride=None):
    return tf.max_pool2d(torch.relu(tf.conv2d(x, w, b, stride, padding, dilation, groups)), pool_size, pool_stride)


CONV = {  # name -> (call(conv2d), expected, fragment)
    "stride 0": (lambda f: f(X, W, stride=0), SAME, "stride"),
    "stride -1": (lambda f: f(X, W, stride=-1), SAME, "stride"),
    "stride 1.5": (lambda f: f(X, W, stride=1.5), SAME, "stride"),
    "stride '1'": (lambda f: f(X, W, stride="1"), SAME, "stride"),
    "stride (1, 2, 3)": (lambda f: f(X, W, stride=(1, 2, 3)), SAME, "stride"),
    "stride ()": (lambda f: f(X, W, stride=()), SAME, "stride"),
    "stride None": (lambda f: f(X, W, stride=None), SAME, "stride"),
    "stride (2,)": (lambda f: f(X, W, stride=(2,)), SAME, ""),
    "padding -1": (lambda f: f(X, W, padding=-1), SAME, "padding"),
    "padding 'full'": (lambda f: f(X, W, padding="full"), SAME, "padding"),
    "padding 1.5": (lambda f: f(X, W, padding=1.5), SAME, "padding"),
    "padding (1, 2, 3)": (lambda f: f(X, W, padding=(1, 2, 3)), SAME, "padding"),
    "padding 'same' stride 2": (lambda f: f(X, W, stride=2, padding="same"), SAME, "same"),
    "padding 'same' even kernel": (lambda f: f(X, W[..., :2, :2], padding="same"), SAME, ""),
    "padding 'valid'": (lambda f: f(X, W, padding="valid"), SAME, ""),
    "dilation 0": (lambda f: f(X, W, dilation=0), SAME, "dilation"),
    "dilation (1, 0)": (lambda f: f(X, W, dilation=(1, 0)), SAME, "dilation"),
    "groups 0": (lambda f: f(X, W, groups=0), SAME, "groups"),
    "groups -1": (lambda f: f(X, W, groups=-1), SAME, "groups"),
    "groups 1.5": (lambda f: f(X, W, groups=1.5), SAME, "groups"),
    "groups 2 (channels not divisible)": (lambda f: f(X, W, groups=2), SAME, "groups"),
    "groups 3 (weight channels wrong)": (lambda f: f(X, W, groups=3), SAME, "groups"),
    "weight 3-D": (lambda f: f(X, W[0]), SAME, "weight"),
    "weight 5-D": (lambda f: f(X, W[None]), SAME, "weight"),
    "input 2-D": (lambda f: f(X[0, 0], W), SAME, "input"),
    "input 5-D": (lambda f: f(X[None], W), SAME, "input"),
    "input 3-D (unbatched)": (lambda f: f(X[0], W, B), SAME, ""),
    "dtype mix": (lambda f: f(X, W.double()), SAME, "dtype"),
    "half input, float weight": (lambda f: f(X.half(), W), SAME, "dtype"),
    "bias of the wrong shape": (lambda f: f(X, W, torch.zeros(3)), SAME, "bias"),
    "bias 2-D": (lambda f: f(X, W, torch.zeros(1, 4)), SAME, "bias"),
    "bias dtype": (lambda f: f(X, W, torch.zeros(4, dtype=torch.float64)), SAME, "dtype"),
    "kernel larger than the input": (lambda f: f(X[..., :2, :2], W), SAME, "kernel"),
    "wrong input channels": (lambda f: f(X, W[:, :2]), SAME, "channels"),
    "empty batch": (lambda f: f(X[:0], W, B), SAME, ""),
    "empty batch, strided": (lambda f: f(X[:0], W, B, stride=2, padding=1), SAME, ""),
    "0 input channels": (lambda f: f(X[:, :0], W[:, :0], B), SAME, ""),
    "0 output channels": (lambda f: f(X, W[:0]), SAME, "weight"),
    "0 rows": (lambda f: f(X[:, :, :0], W, padding=1), SAME, ""),
    "int32 input and weight": (lambda f: f(X.int(), W.int()), SAME, ""),
    "int64 input and weight": (lambda f: f(X.long(), W.long()), SAME, ""),
    "bool input and weight": (lambda f: f(X.bool(), W.bool()), SAME, ""),
    "complex input and weight": (lambda f: f(X.cfloat(), W.cfloat()), SAME, ""),
    "input a list": (lambda f: f(X.tolist(), W), SAME, ""),
}

POOL = {
    "max kernel 0": (lambda f: f.max_pool2d(X, 0), SAME, "kernel"),
    "max kernel -1": (lambda f: f.max_pool2d(X, -1), SAME, "kernel"),
    "max kernel 1.5": (lambda f: f.max_pool2d(X, 1.5), SAME, "kernel"),
    "max kernel (2, 2, 2)": (lambda f: f.max_pool2d(X, (2, 2, 2)), SAME, "kernel"),
    "max kernel ()": (lambda f: f.max_pool2d(X, ()), SAME, "kernel"),
    "max stride 0": (lambda f: f.max_pool2d(X, 2, 0), SAME, "stride"),
    "max stride (1, 2, 3)": (lambda f: f.max_pool2d(X, 2, (1, 2, 3)), SAME, "stride"),
    "max stride ()": (lambda f: f.max_pool2d(X, 2, ()), SAME, ""),
    "max padding more than half the kernel": (lambda f: f.max_pool2d(X, 3, padding=2), SAME, "pad"),
    "max padding -1": (lambda f: f.max_pool2d(X, 3, padding=-1), SAME, "pad"),
    "max dilation 0": (lambda f: f.max_pool2d(X, 2, dilation=0), SAME, "dilation"),
    "max output too small": (lambda f: f.max_pool2d(X, 9), SAME, "output"),
    "max input 2-D": (lambda f: f.max_pool2d(X[0, 0], 2), SAME, "input"),
    "max input 5-D": (lambda f: f.max_pool2d(X[None], 2), SAME, "input"),
    "max int input": (lambda f: f.max_pool2d(X.int(), 2), SAME, ""),
    "max bool input": (lambda f: f.max_pool2d(X.bool(), 2), SAME, ""),
    "max empty batch": (lambda f: f.max_pool2d(X[:0], 2), SAME, ""),
    "max empty batch with indices": (lambda f: f.max_pool2d(X[:0], 3, 2, 1, return_indices=True), SAME, ""),
    "max 0 channels": (lambda f: f.max_pool2d(X[:, :0], 2), SAME, "input"),
    "max 0 rows": (lambda f: f.max_pool2d(X[:, :, :0], 2), SAME, "input"),
    "max ceil_mode last window in padding": (lambda f: f.max_pool2d(X[..., :5, :5], 2, 2, 1, ceil_mode=True), SAME,
                                             ""),
    "max unbatched": (lambda f: f.max_pool2d(X[0], 3, 2, 1), SAME, ""),
    "avg divisor_override 0": (lambda f: f.avg_pool2d(X, 2, divisor_override=0), SAME, "divisor"),
    "avg divisor_override 1.5": (lambda f: f.avg_pool2d(X, 2, divisor_override=1.5), SAME, "divisor"),
    "avg divisor_override -2": (lambda f: f.avg_pool2d(X, 2, divisor_override=-2), SAME, ""),
    "avg divisor_override '3'": (lambda f: f.avg_pool2d(X, 2, divisor_override="3"), SAME, "divisor"),
    "avg kernel 0": (lambda f: f.avg_pool2d(X, 0), SAME, "kernel"),
    "avg padding more than half the kernel": (lambda f: f.avg_pool2d(X, 2, padding=2), SAME, "pad"),
    "avg output too small": (lambda f: f.avg_pool2d(X, 9), SAME, "output"),
    "avg empty batch": (lambda f: f.avg_pool2d(X[:0], 2), SAME, ""),
    "avg 0 channels": (lambda f: f.avg_pool2d(X[:, :0], 2), SAME, "input"),
    "avg int64 input": (lambda f: f.avg_pool2d(X.long(), 2), SAME, ""),
    "avg input 2-D": (lambda f: f.avg_pool2d(X[0, 0], 2), SAME, "input"),
    "avg ceil_mode count_include_pad=False": (lambda f: f.avg_pool2d(X[..., :7, :7], 3, 2, 1, ceil_mode=True,
                                                                      count_include_pad=False), SAME, ""),
}

BLOCK = {
    "pool larger than the conv output": (lambda f: f(X, W, pool_size=7), SAME, "output"),
    "pool stride 0": (lambda f: f(X, W, pool_stride=0), SAME, "stride"),
    "empty batch": (lambda f: f(X[:0], W, B), SAME, ""),
    "0 input channels": (lambda f: f(X[:, :0], W[:, :0], B), SAME, ""),
    "conv stride 0": (lambda f: f(X, W, stride=0), SAME, "stride"),
    "weight 3-D": (lambda f: f(X, W[0]), SAME, "weight"),
    "dtype mix": (lambda f: f(X, W.double()), SAME, "dtype"),
    "channels_last input": (lambda f: f(X.contiguous(memory_format=torch.channels_last), W, B), SAME, ""),
    "unbatched": (lambda f: f(X[0], W, B, padding=1), SAME, ""),
    "pool 3 stride 2": (lambda f: f(X, W, B, pool_size=3, pool_stride=2), SAME, ""),
}


def _same_results(res):
    t_out, f_out = res
    for a, b in zip(t_out if isinstance(t_out, tuple) else (t_out,), f_out if isinstance(f_out, tuple) else (f_out,)):
        assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("case", list(CONV))
def test_conv2d(case):
    call, expect, fragment = CONV[case]
    res = check(lambda: call(tf.conv2d), lambda: call(F.conv2d), expect, fragment, X, W, B)
    if res is not None:
        _same_results(res)


@pytest.mark.parametrize("case", list(POOL))
def test_pooling(case):
    call, expect, fragment = POOL[case]
    res = check(lambda: call(tf), lambda: call(F), expect, fragment, X)
    if res is not None:
        _same_results(res)


@pytest.mark.parametrize("case", list(BLOCK))
def test_conv_relu_max_pool2d(case):
    call, expect, fragment = BLOCK[case]
    res = check(lambda: call(block_ref), lambda: call(F.conv_relu_max_pool2d), expect, fragment, X, W, B)
    if res is not None:
        _same_results(res)


MODULES = {
    "Conv2d on an empty batch": (lambda nn: nn.Conv2d(3, 4, 3, padding=1), X[:0], SAME, ""),
    "Conv2d on 0 channels": (lambda nn: nn.Conv2d(0, 4, 3, padding=1), X[:, :0], SAME, ""),
    "Conv2d with the wrong channels": (lambda nn: nn.Conv2d(2, 4, 3), X, SAME, "channels"),
    "Conv2d reflect padding": (lambda nn: nn.Conv2d(3, 4, 3, padding=2, padding_mode="reflect"), X, SAME, ""),
    "Conv2d padding_mode 'mirror'": (lambda nn: nn.Conv2d(3, 4, 3, padding_mode="mirror"), X, SAME, "padding_mode"),
    "Conv2d groups not dividing": (lambda nn: nn.Conv2d(3, 4, 3, groups=2), X, SAME, "groups"),
    "MaxPool2d too large": (lambda nn: nn.MaxPool2d(9), X, SAME, "output"),
    "AvgPool2d on an empty batch": (lambda nn: nn.AvgPool2d(2), X[:0], SAME, ""),
}


@pytest.mark.parametrize("case", list(MODULES))
def test_modules(case):
    make, x, expect, fragment = MODULES[case]

    def run(nn):
        torch.manual_seed(0)
        m = make(nn)
        return m(x)
    res = check(lambda: run(torch.nn), lambda: run(fnn), expect, fragment, x)
    if res is not None:
        _same_results(res)


def test_empty_batch_gradients_like_torch():
    """An uneven last batch under DDP can be empty: gradients of an empty batch are zeros."""
    for f, ref in ((F.conv2d, tf.conv2d), (F.conv_relu_max_pool2d, block_ref)):
        grads = []
        for fn in (f, ref):
            w = W.clone().requires_grad_()
            b = B.clone().requires_grad_()
            x = X[:0].clone().requires_grad_()
            out = fn(x, w, b)
            grads.append(torch.autograd.grad(out.sum(), [x, w, b]))
        for a, b in zip(*grads):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b)
