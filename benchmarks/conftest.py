import pytest
import torch

import fusekit

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and fusekit.cuda_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
