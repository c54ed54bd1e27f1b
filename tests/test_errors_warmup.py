"""Bad input to LinearWarmup (no torch counterpart except the optimizer check, which is
compared with torch's LRScheduler in the same test)."""
import math

import pytest
import torch

from errors_harness import SAME, check
from fusekit.optim.lr_scheduler import LinearWarmup


def opt():
    return torch.optim.SGD([torch.nn.Parameter(torch.randn(2))], lr=0.1)


CASES = {
    **{f"warmup_steps={v!r}": (lambda o, v=v: LinearWarmup(o, v), e, "warmup_steps")
       for v, e in ((0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                    (1.5, ValueError), ("10", TypeError), (None, TypeError), (True, TypeError))},
    "after=3": (lambda o: LinearWarmup(o, 10, after=3), TypeError, "after"),
    "after of another optimizer": (lambda o: LinearWarmup(o, 10, after=torch.optim.lr_scheduler.StepLR(opt(), 3)),
                                   ValueError, "after"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_warmup_arguments(case):
    make, expect, fragment = CASES[case]
    o = opt()
    lr_before = o.param_groups[0]["lr"]
    check(lambda: None, lambda: make(o), expect, fragment, o)
    assert o.param_groups[0]["lr"] == lr_before


def test_not_an_optimizer_like_torch():
    check(lambda: torch.optim.lr_scheduler.LinearLR(3), lambda: LinearWarmup(3, 10), SAME, "optimizer")


def test_integral_float_steps_accepted():
    o = opt()
    s = LinearWarmup(o, 4.0)
    assert s.warmup_steps == 4 and o.param_groups[0]["lr"] == pytest.approx(0.025)
