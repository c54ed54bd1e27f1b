"""Learning-rate warmup done right (Deep Learning Tuning Playbook; architecture.md §3).

LinearWarmup: optimizer step k = 1..warmup_steps runs at base_lr * k / warmup_steps (the
ramp from 0 without a wasted first update at lr = 0), then at base_lr, or under an `after`
scheduler (e.g. CosineAnnealingLR), whose own step 0 is the first post-warmup step.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


class LinearWarmup(LRScheduler):
    """A torch LRScheduler; call .step() after each optimizer.step(), as with any scheduler.

    The playbook's advice: sweep warmup_steps over [10, 1e3, 1e4, 1e5], keep it under 10% of
    max_train_steps, and warm up for about twice as long as training is unstable.
    """

    def __init__(self, optimizer, warmup_steps: int, after: LRScheduler | None = None, last_epoch: int = -1) -> None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, float)):
            raise TypeError(f"warmup_steps must be a positive integer, got {type(warmup_steps).__name__} "
                            f"{warmup_steps!r}")
        if not (math.isfinite(warmup_steps) and warmup_steps == int(warmup_steps) and warmup_steps >= 1):
            raise ValueError(f"warmup_steps must be a positive integer, got {warmup_steps}")
        if after is not None and not isinstance(after, LRScheduler):
            raise TypeError(f"`after` must be an LRScheduler (e.g. CosineAnnealingLR), got {type(after).__name__}")
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("`after` must schedule the same optimizer as the warmup")
        self.warmup_steps = int(warmup_steps)
        self.after = after
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        k = self.last_epoch + 1  # the optimizer step about to run, counted from 1
        if k <= self.warmup_steps:
            return [base * k / self.warmup_steps for base in self.base_lrs]
        return list(self.base_lrs)

    def step(self, epoch=None) -> None:
        if epoch is not None:
            raise ValueError("LinearWarmup does not take an epoch argument")
        k = self.last_epoch + 2  # the step about to run after this call
        if self.after is None or k <= self.warmup_steps + 1:
            super().step()
            return
        # Past warmup: `after` drives the lr; its step 0 (base_lr) served step warmup+1.
        self.last_epoch += 1
        self.after.step()
        self._last_lr = [_value(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "after")}
        d["after"] = None if self.after is None else self.after.state_dict()
        return d

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        after = state_dict.pop("after", None)
        self.__dict__.update(state_dict)
        if after is not None and self.after is not None:
            self.after.load_state_dict(after)


def _value(lr):
    return float(lr) if isinstance(lr, torch.Tensor) else lr
