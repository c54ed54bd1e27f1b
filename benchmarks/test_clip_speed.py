"""pytest-benchmark suite for clipping: fusekit vs torch on the same gradients.

    python -m pytest benchmarks/test_clip_speed.py --benchmark-group-by=param:workload,param:name

`python -m fusekit.bench --suite clip` runs the same comparisons alternating the two and
prints ratios of medians (and separates the clipping / no-clipping regimes).
"""
import pytest
import torch

import fusekit.nn.utils as fnu
import fusekit.optim as fo
from fusekit.bench.peers import torch_best
from fusekit.bench.workloads import WORKLOADS, make_params


@pytest.mark.parametrize("impl", ["fusekit", "torch"])
@pytest.mark.parametrize("name", ["clip_grad_norm_", "clip+AdamW"])
@pytest.mark.parametrize("workload", ["gpt2", "nielsen"])
def test_clip(benchmark, device, workload, name, impl):
    params = make_params(WORKLOADS[workload](), device)
    if name == "clip_grad_norm_":
        clip = fnu.clip_grad_norm_ if impl == "fusekit" else torch.nn.utils.clip_grad_norm_

        def run():
            clip(params, 1.0)
    elif impl == "fusekit":
        run = fo.AdamW(params, lr=1e-3, max_grad_norm=1.0).step
    else:
        opt = torch_best("AdamW", params, dict(lr=1e-3), device)[0]

        def run():
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

    def timed():
        run()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(timed, rounds=3 if workload == "gpt2" else 200, warmup_rounds=1)
