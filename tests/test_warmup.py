"""LinearWarmup: step k of warmup_steps runs at base_lr * k / warmup_steps, then base_lr or
the `after` scheduler."""
import math

import pytest
import torch

import fusekit.optim as fo
from fusekit.optim.lr_scheduler import LinearWarmup


def lrs_seen(opt, sched, steps):
    seen = []
    for _ in range(steps):
        seen.append([float(g["lr"]) for g in opt.param_groups])
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    return seen


def test_ramp_without_a_wasted_step_then_hold():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = fo.SGD([p], lr=0.4)
    seen = [x[0] for x in lrs_seen(opt, LinearWarmup(opt, 4), 7)]
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4])
    assert seen[0] > 0


def test_after_scheduler_starts_at_its_step_zero():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = fo.AdamW([p], lr=1.0)
    after = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    seen = [x[0] for x in lrs_seen(opt, LinearWarmup(opt, 2, after=after), 7)]
    cos = [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    assert seen == pytest.approx([0.5, 1.0] + cos)


def test_param_groups_tensor_lr_and_state_dict():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = fo.Adam([{"params": [a], "lr": torch.tensor(0.2)}, {"params": [b], "lr": 0.02}])
    sched = LinearWarmup(opt, 2, after=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    seen = lrs_seen(opt, sched, 3)
    assert [x for row in seen for x in row] == pytest.approx([0.1, 0.01, 0.2, 0.02, 0.2, 0.02])
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    sd = sched.state_dict()
    a2, b2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt2 = fo.Adam([{"params": [a2], "lr": torch.tensor(0.2)}, {"params": [b2], "lr": 0.02}])
    sched2 = LinearWarmup(opt2, 2, after=torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5))
    sched2.load_state_dict(sd)
    opt2.load_state_dict(opt.state_dict())
    assert sum(lrs_seen(opt2, sched2, 2), []) == pytest.approx(sum(lrs_seen(opt, sched, 2), []))


def test_bad_arguments():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = fo.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="warmup_steps must be a positive integer, got 0"):
        LinearWarmup(opt, 0)
    other = fo.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="`after` must schedule the same optimizer"):
        LinearWarmup(opt, 3, after=torch.optim.lr_scheduler.StepLR(other, 1))
