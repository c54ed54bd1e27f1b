"""Plain eager layer calls skip the dispatcher (fusekit._ops.library.call): every setting in
which something between the call and the implementation acts on it keeps the op."""
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import fusekit.nn.functional as F
from fusekit._ops import library

tf = torch.nn.functional


class Seen(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


class Wrapper(torch.Tensor):
    pass


def x4():
    return torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))


def test_plain_tensors_and_parameters_take_the_direct_path():
    assert library.plain_eager((x4(), [2, 2], True, None))
    assert library.plain_eager((torch.nn.Parameter(x4()), x4()))


@pytest.mark.parametrize("case", ["dispatch mode", "function mode", "profiler", "vmap", "jit trace", "meta",
                                  "sparse", "subclass", "compiling"])
def test_everything_else_keeps_the_op(case, monkeypatch):
    x = x4()
    if case == "dispatch mode":
        with Seen():
            assert not library.plain_eager((x,))
    elif case == "function mode":
        with TorchFunctionMode():
            assert not library.plain_eager((x,))
    elif case == "profiler":
        with torch.autograd.profiler.profile():
            assert not library.plain_eager((x,))
    elif case == "vmap":
        seen = []
        torch.vmap(lambda t: seen.append(library.plain_eager((t,))) or t)(x)
        assert seen == [False]
    elif case == "jit trace":
        seen = []
        torch.jit.trace(lambda t: seen.append(library.plain_eager((t,))) or t * 2, (x,), check_trace=False)
        assert seen == [False]
    elif case == "meta":
        assert not library.plain_eager((x.to("meta"),))
    elif case == "sparse":
        assert not library.plain_eager((x, x.to_sparse()))
    elif case == "subclass":
        assert not library.plain_eager((x.as_subclass(Wrapper),))
    elif case == "compiling":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        assert not library.plain_eager((x,))


def test_modes_see_the_op_and_both_paths_match_torch():
    x = x4().requires_grad_()
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with Seen() as mode:
        y_op = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
        y_op.sum().backward()
    assert "fusekit.conv2d.default" in mode.ops and "fusekit.max_pool2d.default" in mode.ops
    assert "fusekit.max_pool2d_backward.default" in mode.ops
    g_op = (x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    y = F.max_pool2d(F.conv2d(x, w, padding=1), 2)  # direct path
    y.sum().backward()
    ref = tf.max_pool2d(tf.conv2d(x.detach(), w.detach(), padding=1), 2)
    torch.testing.assert_close(y, ref)
    assert torch.equal(y, y_op)
    assert torch.equal(x.grad, g_op[0]) and torch.equal(w.grad, g_op[1])
