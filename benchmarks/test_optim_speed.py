"""pytest-benchmark suite: each fusekit optimizer and torch's best implementation of it
(fused where torch has one for the device, else foreach) on the same parameter lists.

    python -m pytest benchmarks --benchmark-group-by=param:workload,param:name

Each group holds the fusekit and torch rows of one optimizer, so their ratio is read off
one table. `python -m fusekit.bench` runs the same comparison alternating the two and
prints the ratios of medians directly.
"""
import pytest
import torch

import fusekit.optim as fo
from fusekit.bench.optim import OPTIMIZERS
from fusekit.bench.peers import torch_best
from fusekit.bench.workloads import WORKLOADS, make_params


@pytest.mark.parametrize("impl", ["fusekit", "torch"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("workload", ["gpt2", "resnet18", "nielsen"])
def test_optimizer_step(benchmark, device, workload, name, impl):
    kw, _ = OPTIMIZERS[name]
    params = make_params(WORKLOADS[workload](), device)
    if impl == "fusekit":
        opt = getattr(fo, name)(params, **kw)
    else:
        opt, benchmark.extra_info["torch_impl"] = torch_best(name, params, kw, device)

    def step():
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    rounds = {"gpt2": 3, "resnet18": 10, "nielsen": 200}[workload]
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)
