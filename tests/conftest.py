import pytest
import torch

import fusekit

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and fusekit.cuda_available() else [])


def cuda_param(kind):
    return pytest.param(kind, marks=pytest.mark.skipif(kind not in DEVICES, reason="no CUDA device / kernels"))


@pytest.fixture(params=["cpu", cuda_param("cuda")])
def device(request):
    return request.param
