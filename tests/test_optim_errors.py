"""Error paths beyond the torch comparisons of test_errors_optim.py: CUDA device mixes,
flag combinations, and the native entry's own checks of the tables it is handed."""
import pytest
import torch

import fusekit
import fusekit.optim as fo
from fusekit import _C
from optim_cases import NAMES

@pytest.mark.skipif(not (torch.cuda.is_available() and fusekit.cuda_available()), reason="no CUDA device / kernels")
@pytest.mark.parametrize("name", NAMES)
def test_mixed_devices(name):
    p = torch.nn.Parameter(torch.randn(3, device="cuda"))
    opt = getattr(fo, name)([p])
    p.grad = torch.randn(3, device="cuda")
    p.grad.data = torch.randn(3)
    before = p.detach().clone()
    with pytest.raises(RuntimeError, match="gradient is on cpu but parameter 0 of param group 0 is on cuda"):
        opt.step()
    assert torch.equal(p.detach(), before)


@pytest.mark.skipif(fusekit.cuda_available(), reason="checks the message of a CPU-only build")
def test_cuda_tensor_without_cuda_kernels_is_clear():
    with pytest.raises((RuntimeError, TypeError)):
        fusekit._backend.device_index(torch.device("cuda", 0))


@pytest.mark.parametrize("name", NAMES)
def test_unhonourable_flag_combinations(name):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=f"{name}: differentiable=True is not supported"):
        getattr(fo, name)([p], differentiable=True)
    if name in ("SGD", "Adam", "AdamW", "Adagrad"):
        with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
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
