"""pytest-benchmark suite: whole training steps (forward, backward, optimizer step) of the
small GPT and Nielsen's convnet with fusekit and with the torch equivalent.

    python -m pytest benchmarks/test_e2e_speed.py --benchmark-group-by=param:workload,param:name

`python -m fusekit.bench --suite e2e` runs the same steps alternating the two and also
reports the optimizer step's share of each.
"""
import pytest
import torch

import fusekit.optim as fo
from fusekit.bench.e2e import models, trainer
from fusekit.bench.peers import torch_best


@pytest.mark.parametrize("impl", ["fusekit", "torch"])
@pytest.mark.parametrize("name", ["train step"])
@pytest.mark.parametrize("workload", ["gpt", "convnet"])
def test_train_step(benchmark, device, workload, name, impl):
    ours, theirs, opt_name, kw, x, y = models(workload, "default", device)
    if impl == "fusekit":
        step = trainer("fusekit", "fusekit", ours, getattr(fo, opt_name)(ours.parameters(), **kw), x, y, device).fn
    else:
        opt, benchmark.extra_info["torch_impl"] = torch_best(opt_name, list(theirs.parameters()), kw, device)
        step = trainer("torch", "torch", theirs, opt, x, y, device).fn

    def timed():
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(timed, rounds=5 if workload == "gpt" else 30, warmup_rounds=1)
