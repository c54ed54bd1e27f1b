"""Every error path: a clear exception naming the problem, and nothing modified."""
import re

import pytest
import torch

import fusekit
import fusekit.optim as fo
from fusekit import _C
from optim_cases import NAMES

KW = {"SGD": dict(lr=0.1, momentum=0.9), "RMSprop": dict(momentum=0.5, centered=True)}


def setup(name, n=3):
    ps = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(n)]
    opt = getattr(fo, name)(ps, **KW.get(name, {}))
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()  # there is state to protect
    for p in ps:
        p.grad = torch.randn_like(p)
    return ps, opt


def snapshot(ps, opt):
    return ([p.detach().clone() for p in ps], [None if p.grad is None else p.grad.clone() for p in ps],
            {(id(p), k): v.clone() for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)})


def assert_unchanged(ps, opt, snap):
    params, grads, state = snap
    for p, b in zip(ps, params):
        assert torch.equal(p.detach(), b)
    now = {(id(p), k): v for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)}
    assert now.keys() == state.keys()
    for k in state:
        assert torch.equal(now[k], state[k])


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradient(name):
    ps, opt = setup(name)
    snap = snapshot(ps, opt)
    ps[2].grad = torch.randn(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients \\(parameter 2 of param group 0\\)"):
        opt.step()
    assert_unchanged(ps, opt, snap)


@pytest.mark.parametrize("name", NAMES)
def test_grad_dtype_mismatch(name):
    ps, opt = setup(name)
    snap = snapshot(ps, opt)
    ps[1].grad.data = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="gradient dtype torch.float64 does not match dtype torch.float32 of parameter 1"):
        opt.step()
    assert_unchanged(ps, opt, snap)


@pytest.mark.parametrize("name", NAMES)
def test_grad_shape_mismatch(name):
    ps, opt = setup(name)
    snap = snapshot(ps, opt)
    ps[2].grad.data = torch.randn(12)
    with pytest.raises(ValueError, match=re.escape("gradient shape (12,) does not match shape (4, 3) of parameter 2")):
        opt.step()
    assert_unchanged(ps, opt, snap)


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_device_and_dtype(name):
    ps, opt = setup(name)
    snap = snapshot(ps, opt)
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    meta.grad = torch.empty(3, device="meta")
    opt.add_param_group({"params": [meta]})
    with pytest.raises(RuntimeError, match="fusekit kernels run on CPU and CUDA tensors, not on device 'meta'"):
        opt.step()
    assert_unchanged(ps, opt, snap)
    opt.param_groups.pop()
    opt.state.pop(meta, None)
    ip = torch.zeros(3, dtype=torch.int32)
    ip.grad = torch.zeros(3, dtype=torch.int32)
    opt.param_groups[0]["params"].append(ip)
    with pytest.raises(TypeError, match="has dtype torch.int32; supported"):
        opt.step()
    assert_unchanged(ps, opt, snap)


@pytest.mark.skipif(not (torch.cuda.is_available() and fusekit.cuda_available()), reason="no CUDA device / kernels")
@pytest.mark.parametrize("name", NAMES)
def test_mixed_devices(name):
    p = torch.nn.Parameter(torch.randn(3, device="cuda"))
    opt = getattr(fo, name)([p])
    p.grad = torch.randn(3, device="cuda")
    p.grad.data = torch.randn(3)
    before = p.detach().clone()
    with pytest.raises(ValueError, match="gradient is on cpu but parameter 0 of param group 0 is on cuda"):
        opt.step()
    assert torch.equal(p.detach(), before)


@pytest.mark.skipif(fusekit.cuda_available(), reason="checks the message of a CPU-only build")
def test_cuda_tensor_without_cuda_kernels_is_clear():
    with pytest.raises((RuntimeError, TypeError)):
        fusekit._backend.device_index(torch.device("cuda", 0))


@pytest.mark.parametrize("name", NAMES)
def test_state_tensor_corrupted(name):
    ps, opt = setup(name)
    key = opt._state_names(opt.param_groups[0])[0]
    opt.state[ps[1]][key] = torch.zeros(5)
    snap = snapshot(ps, opt)
    with pytest.raises(ValueError, match=f"state '{key}' of parameter 1 of param group 0 is torch.float32 \\(5,\\)"):
        opt.step()
    assert_unchanged(ps, opt, snap)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_with_wrong_shapes(name):
    ps, opt = setup(name)
    other = [torch.nn.Parameter(torch.randn(2, 2)) for _ in range(3)]
    src = getattr(fo, name)(other, **KW.get(name, {}))
    for p in other:
        p.grad = torch.randn_like(p)
    src.step()
    snap = snapshot(ps, opt)
    groups_before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=re.escape("of shape (2, 2) for parameter 0, which has shape (4, 3)")):
        opt.load_state_dict(src.state_dict())
    assert_unchanged(ps, opt, snap)
    assert [dict(g) for g in opt.param_groups] == groups_before


BAD = {
    "SGD": [(dict(lr=-1.0), "Invalid learning rate: -1.0"), (dict(momentum=-0.1), "Invalid momentum value: -0.1"),
            (dict(weight_decay=-1e-3), "Invalid weight_decay value"),
            (dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening")],
    "Adam": [(dict(lr=-1e-3), "Invalid learning rate"), (dict(eps=-1.0), "Invalid epsilon value: -1.0"),
             (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
             (dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
             (dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
             (dict(lr=torch.tensor([0.1, 0.2])), "Tensor lr must be 1-element")],
    "AdamW": [(dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5")],
    "NAdam": [(dict(momentum_decay=-1.0), "Invalid momentum_decay value: -1.0"), (dict(eps=-1.0), "Invalid epsilon")],
    "RMSprop": [(dict(alpha=-0.5), "Invalid alpha value: -0.5"), (dict(momentum=-1.0), "Invalid momentum value"),
                (dict(eps=-1.0), "Invalid epsilon value")],
    "Adagrad": [(dict(lr_decay=-1.0), "Invalid lr_decay value: -1.0"),
                (dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value value: -1.0")],
}
BAD_CASES = [(n, kw, msg) for n, cases in BAD.items() for kw, msg in cases]


@pytest.mark.parametrize("name,kw,msg", BAD_CASES)
def test_bad_hyper_parameters(name, kw, msg):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=re.escape(msg)):
        getattr(fo, name)([p], **kw)


@pytest.mark.parametrize("name", NAMES)
def test_unhonourable_flag_combinations(name):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=f"{name}: differentiable=True is not supported"):
        getattr(fo, name)([p], differentiable=True)
    if name in ("SGD", "Adam", "AdamW", "Adagrad"):
        with pytest.raises(ValueError, match="fused=True and foreach=True cannot be set together"):
            getattr(fo, name)([p], fused=True, foreach=True)
    for flags in (dict(foreach=True), dict(foreach=False)):
        getattr(fo, name)([p], **flags)  # accepted


def test_core_rejects_inconsistent_tables():
    def sgd(a):
        _C.optimizer_step(_C.Rule.SGD, a, _C.SGDHyper())

    args = _C.StepArgs()
    args.nslots, args.count = 2, 2
    args.ptrs = [1, 2, 3]
    args.numels = [1, 1]
    with pytest.raises(ValueError, match="pointer table size does not match nslots \\* count"):
        sgd(args)
    args.ptrs = [0, 0, 0, 0]
    with pytest.raises(ValueError, match="nbytes must give one size per pointer"):
        sgd(args)
    args.nbytes = [4, 4, 4, 4]
    with pytest.raises(ValueError, match="null data pointer for a buffer of 4 bytes"):
        sgd(args)
    args.ptrs, args.nbytes = [1, 2, 3, 4], [4, 4, 2, 4]  # a half-size buffer where a float32 is needed
    with pytest.raises(ValueError, match="the buffer has 2 bytes where the call's sizes need 4"):
        sgd(args)
    args.nslots = 3
    args.ptrs = [1, 2, 3, 4, 5, 6]
    args.nbytes = [4] * 6
    with pytest.raises(ValueError, match="slot count does not match the optimizer's options"):
        sgd(args)
    with pytest.raises(ValueError, match="unknown dtype code"):
        args.dtype = 9
