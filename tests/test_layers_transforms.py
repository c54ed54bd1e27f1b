"""fusekit's layers under torch's transforms and tools, checked against eager fusekit and
against torch's own layers: torch.compile(fullgraph=True), torch.export, torch.jit.trace
(shape safety), torch.func (per-sample gradients, jvp), the meta device, double backward,
and torch.library.opcheck of every layer op."""
import pytest
import torch
from torch.func import functional_call, grad, jvp, vmap

import fusekit.nn as fnn
import fusekit.nn.functional as F
from fusekit._backend import conv as _conv

tf = torch.nn.functional


def lenet_like(dtype=torch.float32):
    """Every fusekit layer between torch layers: fused block, conv, avg and max pooling."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        fnn.ConvReLUMaxPool2d(1, 4, 3), fnn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), fnn.AvgPool2d(2),
        fnn.Conv2d(6, 6, 3, padding=1, stride=1, groups=2), fnn.MaxPool2d(2, ceil_mode=True), torch.nn.Flatten(),
        torch.nn.Linear(24, 3)).to(dtype)


def torch_twin(m):
    """The same network from torch.nn layers, with m's weights."""
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Conv2d(6, 6, 3, padding=1, groups=2),
        torch.nn.MaxPool2d(2, ceil_mode=True), torch.nn.Flatten(), torch.nn.Linear(24, 3)).to(m[-1].weight.dtype)
    for src, dst in ((0, 0), (1, 3), (4, 6), (7, 9)):
        ref[dst].load_state_dict(m[src].state_dict())
    return ref


X = torch.randn(5, 1, 14, 14, generator=torch.Generator().manual_seed(1))


def grads_of(m, x):
    m.zero_grad()
    out = m(x)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in m.parameters()]


def test_eager_matches_torch_network():
    m = lenet_like()
    out, gs = grads_of(m, X)
    ref_out, ref_gs = grads_of(torch_twin(m), X)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(gs, ref_gs):
        torch.testing.assert_close(a, b)


def test_compile_fullgraph_no_graph_breaks_matches_eager():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    m = lenet_like()
    eager_out, eager_gs = grads_of(m, X)
    compiled = torch.compile(m, fullgraph=True)
    out, gs = grads_of(compiled, X)
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(gs, eager_gs):
        torch.testing.assert_close(a, b)


def test_export_matches_eager():
    m = lenet_like()
    ep = torch.export.export(m, (X,))
    torch.testing.assert_close(ep.module()(X), m(X))
    names = {n.target.name() for n in ep.graph.nodes if n.op == "call_function" and hasattr(n.target, "name")}
    assert {"fusekit::conv2d", "fusekit::max_pool2d", "fusekit::avg_pool2d", "fusekit::conv_relu_max_pool2d"} <= names


def test_jit_trace_is_shape_safe():
    """Traced at batch 2, the ops take every size from the tensors of each call: other
    batches give the right values (no baked extents reach a kernel)."""
    m = lenet_like()
    traced = torch.jit.trace(m, X[:2])
    for n in (1, 3, 5):
        torch.testing.assert_close(traced(X[:n]), m(X[:n]))
    with pytest.raises(RuntimeError):
        traced(X[:, :, :3, :3])  # too small for the first convolution: an error, not garbage


def test_per_sample_gradients_with_torch_func():
    m = lenet_like(torch.float64)
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(p, x):
        return functional_call(m, p, (x.unsqueeze(0),)).square().sum()

    x = X.double()
    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    ref = torch_twin(m)
    ref_params = dict(ref.named_parameters())
    names = dict(zip(params, ref_params))
    for i in range(x.shape[0]):
        g = torch.func.grad(lambda p: functional_call(ref, p, (x[i:i + 1],)).square().sum())(
            {k: v.detach() for k, v in ref_params.items()})
        for k in params:
            torch.testing.assert_close(per_sample[k][i], g[names[k]])


def test_jvp_matches_torch():
    m = lenet_like(torch.float64)
    ref = torch_twin(m)
    params = {k: v.detach() for k, v in m.named_parameters()}
    ref_params = {k: v.detach() for k, v in ref.named_parameters()}
    g = torch.Generator().manual_seed(3)
    tangents = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    tx = torch.randn(X.shape, generator=g, dtype=torch.float64)
    x = X.double()
    out, t_out = jvp(lambda p, xx: functional_call(m, p, (xx,)), (params, x), (tangents, tx))
    ref_t = dict(zip(ref_params, tangents.values()))
    ref_out, ref_t_out = jvp(lambda p, xx: functional_call(ref, p, (xx,)), (ref_params, x), (ref_t, tx))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(t_out, ref_t_out)


def test_meta_device():
    m = lenet_like().to("meta")
    assert m(torch.empty(5, 1, 14, 14, device="meta")).shape == (5, 3)
    conv = fnn.Conv2d(3, 4, 3, stride=2, padding=1, device="meta")
    assert conv.weight.device.type == "meta"
    y = conv(torch.empty(2, 3, 9, 9, device="meta"))
    assert y.shape == (2, 4, 5, 5) and y.device.type == "meta"
    block = fnn.ConvReLUMaxPool2d(1, 20, 5, device="meta")
    assert block(torch.empty(3, 1, 28, 28, device="meta")).shape == (3, 20, 12, 12)
    out, idx = F.max_pool2d(torch.empty(2, 3, 9, 9, device="meta"), 3, 2, 1, return_indices=True)
    assert out.shape == idx.shape == (2, 3, 5, 5) and idx.dtype == torch.int64


DOUBLE_BACKWARD = {
    "conv2d": (lambda x, w: F.conv2d(x, w, padding=1, stride=(1, 2)),
               lambda x, w: tf.conv2d(x, w, padding=1, stride=(1, 2))),
    "max_pool2d": (lambda x, w: F.max_pool2d(F.conv2d(x, w), 2), lambda x, w: tf.max_pool2d(tf.conv2d(x, w), 2)),
    "max_pool2d_3x3": (lambda x, w: F.max_pool2d(F.conv2d(x, w), 3, 2, 1),
                       lambda x, w: tf.max_pool2d(tf.conv2d(x, w), 3, 2, 1)),
    "avg_pool2d": (lambda x, w: F.avg_pool2d(F.conv2d(x, w), 3, 2, 1),
                   lambda x, w: tf.avg_pool2d(tf.conv2d(x, w), 3, 2, 1)),
    "conv_relu_max_pool2d": (lambda x, w: F.conv_relu_max_pool2d(x, w),
                             lambda x, w: tf.max_pool2d(torch.relu(tf.conv2d(x, w)), 2)),
}


@pytest.mark.parametrize("name", list(DOUBLE_BACKWARD))
def test_double_backward_matches_torch(name):
    """A gradient penalty: d/d(x, w) of |d out / d x|^2."""
    ours, ref = DOUBLE_BACKWARD[name]
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    w0 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)

    def penalty(fn):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        (gx,) = torch.autograd.grad(fn(x, w).square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), [x, w])

    for a, b in zip(penalty(ours), penalty(ref)):
        torch.testing.assert_close(a, b)


def test_gradcheck_and_gradgradcheck():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    for fn in (lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: F.avg_pool2d(x, 2) + 0 * b.sum(),
               lambda x, w, b: F.conv_relu_max_pool2d(x, w, b)):
        assert torch.autograd.gradcheck(fn, (x, w, b))
        assert torch.autograd.gradgradcheck(fn, (x, w, b))


def _op_cases():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 8, 8, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    b = torch.randn(4, generator=g)
    go = torch.randn(2, 4, 8, 8, generator=g)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    out, idx = torch.ops.fusekit.max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], False, True)
    _, codes = torch.ops.fusekit.max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], False, False)
    bout, barg = torch.ops.fusekit.conv_relu_max_pool2d(x, w, b, *conv, [2, 2], [2, 2])
    ops = torch.ops.fusekit
    return [
        (ops.conv2d, (x, w, b, *conv)),
        (ops.conv2d, (x, w, None, [2, 1], [0, 1], [1, 2], 1)),
        (ops.conv2d_input_grad, (go, w, [2, 3, 8, 8], *conv, False)),
        (ops.conv2d_weight_grad, (go, x, [4, 3, 3, 3], *conv, False)),
        (ops.conv_relu_max_pool2d, (x, w, b, *conv, [2, 2], [2, 2])),
        (ops.conv_relu_max_pool2d_backward, (torch.randn_like(bout), x, w, bout, barg, True, *conv, [2, 2], [2, 2],
                                             [True, True, True])),
        (ops.max_pool2d, (x, [3, 3], [2, 2], [1, 1], [1, 1], True, True)),
        (ops.max_pool2d_backward, (torch.randn_like(out), idx, [2, 3, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1], False,
                                   False)),
        (ops.max_pool2d_backward, (torch.randn_like(out), codes, [2, 3, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1],
                                   False, False)),
        (ops.avg_pool2d, (x, [3, 3], [2, 2], [1, 1], False, True, None)),
        (ops.avg_pool2d_backward, (torch.randn(2, 3, 4, 4, generator=g), [2, 3, 8, 8], [3, 3], [2, 2], [1, 1],
                                   False, True, None, False)),
    ]


@pytest.mark.parametrize("case", range(len(_op_cases())))
def test_opcheck(case):
    op, args = _op_cases()[case]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_direct_kernels_also_serve_the_ops(monkeypatch):
    """The CPU's direct element loops (the CUDA kernels' math) behind the same ops."""
    monkeypatch.setattr(_conv, "CPU_DIRECT", True)
    m = lenet_like(torch.float64)
    out, gs = grads_of(m, X.double())
    ref_out, ref_gs = grads_of(torch_twin(m), X.double())
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(gs, ref_gs):
        torch.testing.assert_close(a, b)
