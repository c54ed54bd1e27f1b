"""8-bit optimizers: drop-ins for bitsandbytes' Adam8bit, AdamW8bit, SGD8bit, RMSprop8bit and
Adagrad8bit, plus NAdam8bit (architecture.md §2.10, docs/lowp_state_notes.md).

The state is bitsandbytes': per parameter of at least `min_8bit_size` elements, uint8 codes
on its dynamic maps (`state1` signed, `state2` unsigned) with one float32 absmax per block
of 256 elements (`absmax1`, `absmax2`); smaller parameters keep float32 state. Each step
dequantizes with the previous absmax, applies the rule in float32, and requantizes to the
nearest code of the new block maximum, in the same single pass over memory as the fp32
optimizers. The update rules are torch's (which bitsandbytes' CPU backend follows):
  * Adam8bit and AdamW8bit decay weights decoupled, before the update (torch's AdamW);
    bitsandbytes' CUDA kernel decays after it, a difference of lr*wd*update.
  * RMSprop8bit and Adagrad8bit divide the weight-decayed gradient (torch's L2 rule);
    bitsandbytes' 8-bit CUDA kernels divide the raw gradient.
  * SGD8bit ignores dampening and nesterov, RMSprop8bit ignores momentum, as bitsandbytes.
state_dict() has bitsandbytes' layout (codes, maps and absmax nested under
"__bnb_optimizer_quant_state__", `step` an int) and loads into bitsandbytes; load_state_dict
takes both layouts.
"""
from __future__ import annotations

import copy
import warnings

import torch

from .. import _C
from .._backend import local
from . import _checks as C
from ._base import FusedOptimizer
from .adam import Adam
from .nadam import NAdam
from ._storage import F, qmap_key

QUANT_KEY = "__bnb_optimizer_quant_state__"
# bitsandbytes' non_castable_tensor_keys: what state_dict() nests under QUANT_KEY
NON_CASTABLE = ("state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2", "max1", "max2", "new_max1", "new_max2",
                "gnorm_vec", "unorm_vec")
MAPS = {"qmap1": "signed", "qmap2": "unsigned"}  # state1: signed map (all optimizers), state2: unsigned


def _bnb_args(owner: str, args, min_8bit_size: int) -> int:
    """bitsandbytes' `args` object replaces optim_bits / min_8bit_size / max_unorm / skip_zeros
    wholesale; fusekit runs 8-bit state and neither update-norm clipping nor zero skipping."""
    if args is None:
        return min_8bit_size
    bits = getattr(args, "optim_bits", 8)
    if bits != 8:
        raise NotImplementedError(f"{owner}: args.optim_bits={bits}; for 32-bit state use "
                                  f"fusekit.optim.{owner.replace('8bit', '')}")
    if getattr(args, "max_unorm", 0.0):
        raise NotImplementedError(f"{owner}: args.max_unorm (update-norm clipping) is not supported; "
                                  "max_grad_norm clips the gradient inside the step")
    if getattr(args, "skip_zeros", False):
        raise NotImplementedError(f"{owner}: args.skip_zeros is not supported")
    return getattr(args, "min_8bit_size", min_8bit_size)


class Optimizer8bit(FusedOptimizer):
    """The bitsandbytes layout over a fusekit update rule: state entries state1/state2 (+ step,
    NAdam's mu_product), live qmap1/qmap2 on 8-bit parameters, checkpoints in its format."""

    _names: tuple = ("state1", "state2")

    def __init__(self, params, defaults: dict, *, args, min_8bit_size: int, is_paged: bool = False, **fk) -> None:
        name = type(self).__name__
        if not isinstance(is_paged, bool):
            raise TypeError(f"{name}: is_paged must be a bool, got {is_paged!r}")
        if is_paged:
            warnings.warn(f"{name}: is_paged=True is ignored: fusekit keeps optimizer state in ordinary "
                          "device memory (the numbers are the same)", UserWarning, stacklevel=3)
        min_8bit_size = _bnb_args(name, args, min_8bit_size)
        self._qmaps: dict = {}
        super().__init__(params, defaults, min_8bit_size=min_8bit_size, **fk)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_qmaps", {})

    # ---- the rule's state, under bitsandbytes' names -------------------------------------
    def _state_names(self, group):
        return list(self._names)

    def _init_state(self, p, group, state):
        fresh = self._names[0] not in state
        if fresh:
            if self._has_step:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
            if self._has_mu_product:
                state["mu_product"] = torch.tensor(1.0, dtype=torch.float32)
            for n in self._names:
                state[n] = self._new_state(p)
        if self._storage.format(p) == F.Block8:
            for n in self._names:
                state.setdefault(qmap_key(n), self._qmap(qmap_key(n), local(p).device))
        return fresh

    def _qmap(self, key: str, device) -> torch.Tensor:
        """One map tensor per device, shared by the parameters' states (as bitsandbytes)."""
        k = (key, device)
        if k not in self._qmaps:
            self._qmaps[k] = torch.tensor(_C.QUANT_MAPS[MAPS[key]], dtype=torch.float32, device=device)
        return self._qmaps[k]

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = super().state_dict()
        out = {}
        for pid, st in sd["state"].items():
            st = dict(st)  # torch's state_dict shares the live per-parameter dicts
            nested = {k: st.pop(k) for k in list(st) if k in NON_CASTABLE}
            if nested:
                st[QUANT_KEY] = nested
            if torch.is_tensor(st.get("step")):
                st["step"] = int(st["step"].item())  # bitsandbytes counts in a Python int
            out[pid] = st
        sd["state"] = out
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """bitsandbytes' layout or the flat one; maps are checked against the kernels'."""
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict):
            state_dict = dict(state_dict)
            state_dict["state"] = {pid: self._flatten(st) for pid, st in state_dict["state"].items()}
            self._check_formats(state_dict)
        super().load_state_dict(state_dict)

    @staticmethod
    def _flatten(st: dict) -> dict:
        st = dict(st)
        st.update(st.pop(QUANT_KEY, {}))
        if isinstance(st.get("step"), (int, float)) and not isinstance(st.get("step"), bool):
            st["step"] = torch.tensor(float(st["step"]), dtype=torch.float32)
        return st

    def _check_formats(self, state_dict: dict) -> None:
        """What casting cannot fix: 8-bit codes where this optimizer keeps float32 state (or
        the reverse: min_8bit_size differs from the run that saved them), or a map other
        than bitsandbytes' dynamic map."""
        name = type(self).__name__
        saved_ids = [i for g in state_dict.get("param_groups", []) for i in g.get("params", [])]
        params = [p for g in self.param_groups for p in g["params"]]
        if len(saved_ids) != len(params):
            return  # torch's load_state_dict raises for this
        for index, (pid, p) in enumerate(zip(saved_ids, params)):
            st = state_dict["state"].get(pid, {})
            for n in self._names:
                value = st.get(n)
                if not torch.is_tensor(value):
                    continue
                want8 = self._storage.format(p) == F.Block8
                if (value.dtype == torch.uint8) != want8:
                    raise ValueError(
                        f"{name}: loaded state {n!r} of parameter {index} is {value.dtype} but this optimizer keeps "
                        f"{'8-bit' if want8 else 'float32'} state for it (min_8bit_size={self._storage.min_8bit_size}, "
                        f"{p.numel()} elements): load with the min_8bit_size the checkpoint was saved with")
            for key, kind in MAPS.items():
                qmap = st.get(key)
                if qmap is None:
                    continue
                ours = torch.tensor(_C.QUANT_MAPS[kind])
                if not torch.is_tensor(qmap) or qmap.shape != ours.shape or \
                        not torch.allclose(qmap.detach().float().cpu(), ours, rtol=1e-6, atol=0.0):
                    raise ValueError(f"{name}: loaded {key!r} of parameter {index} is not bitsandbytes' "
                                     f"{'signed' if kind == 'signed' else 'unsigned'} dynamic map, which fusekit's "
                                     "kernels decode with")


def _two_state_defaults(lr, betas, eps, weight_decay, fused) -> dict:
    # bitsandbytes' Optimizer2State groups (alpha / t_alpha / t_beta3 are AdEMAMix's, unused here)
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, alpha=0.0, t_alpha=None, t_beta3=None,
                fused=fused)


class Adam8bit(Optimizer8bit):
    """bitsandbytes.optim.Adam8bit: Adam with 8-bit m and v; weight decay decoupled (AdamW's)."""

    _rule = "adam"

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, optim_bits: int = 32, args=None,
                 min_8bit_size: int = 4096, is_paged: bool = False, *, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        name = type(self).__name__
        if amsgrad:
            raise ValueError(f"{name} does not support amsgrad=True")
        if optim_bits != 32:  # bitsandbytes: kept for its signature; the state is 8-bit
            raise ValueError(f"{name} only supports optim_bits=32 (default value for compatibility)")
        super().__init__(params, _two_state_defaults(lr, betas, eps, weight_decay, fused), args=args,
                         min_8bit_size=min_8bit_size, is_paged=is_paged, max_grad_norm=max_grad_norm,
                         track_grad_norm=track_grad_norm, grad_norm_history=grad_norm_history)

    _check_options = Adam._check_options

    def _hyper_fields(self, group):
        b1, b2 = group["betas"]
        return dict(beta1=float(b1), beta2=float(b2), eps=group["eps"], weight_decay=group["weight_decay"],
                    amsgrad=False, maximize=False, decoupled=True, folded=False)


class AdamW8bit(Adam8bit):
    """bitsandbytes.optim.AdamW8bit: Adam8bit with weight_decay 1e-2 by default."""

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, optim_bits: int = 32, args=None,
                 min_8bit_size: int = 4096, is_paged: bool = False, *, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, optim_bits, args, min_8bit_size, is_paged,
                         fused=fused, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history)


class NAdam8bit(Optimizer8bit):
    """torch.optim.NAdam's rule with 8-bit m and v (blockwise, as Adam8bit); not in
    bitsandbytes. Weight decay is torch's: L2, or decoupled with decoupled_weight_decay."""

    _rule = "nadam"
    _has_mu_product = True

    def __init__(self, params, lr: float | torch.Tensor = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 args=None, min_8bit_size: int = 4096, is_paged: bool = False, *, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=False, folded_bias_correction=False,
                        fused=fused)
        super().__init__(params, defaults, args=args, min_8bit_size=min_8bit_size, is_paged=is_paged,
                         max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history)

    # torch's NAdam checks and fields (its groups carry maximize / folded_bias_correction False)
    _check_options = NAdam._check_options
    _hyper_fields = NAdam._hyper_fields


class _OneState(Optimizer8bit):
    """bitsandbytes' Optimizer1State groups: lr, betas, eps, weight_decay (SGD's momentum and
    RMSprop's alpha are betas[0])."""

    _names = ("state1",)

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, epsilon=group["eps"], weight_decay=group["weight_decay"])
        C.check_betas(group["betas"], where)


class SGD8bit(_OneState):
    """bitsandbytes.optim.SGD8bit: SGD with an 8-bit momentum buffer (torch's rule with
    dampening 0, no Nesterov; both arguments are accepted and ignored, as bitsandbytes)."""

    _rule = "sgd"

    def __init__(self, params, lr: float | torch.Tensor, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, args=None, min_8bit_size: int = 4096, *,
                 fused: bool | None = None, max_grad_norm=None, track_grad_norm: bool = False,
                 grad_norm_history: int = 1000) -> None:
        if momentum == 0:
            raise NotImplementedError("SGD without momentum is not supported!")
        defaults = dict(lr=lr, betas=(momentum, dampening), eps=0.0, weight_decay=weight_decay, fused=fused)
        super().__init__(params, defaults, args=args, min_8bit_size=min_8bit_size, max_grad_norm=max_grad_norm,
                         track_grad_norm=track_grad_norm, grad_norm_history=grad_norm_history)

    def _hyper_fields(self, group):
        return dict(momentum=group["betas"][0], dampening=0.0, weight_decay=group["weight_decay"], nesterov=False,
                    maximize=False)


class RMSprop8bit(_OneState):
    """bitsandbytes.optim.RMSprop8bit: RMSprop with an 8-bit square average (momentum is
    accepted and ignored, as bitsandbytes; centered raises)."""

    _rule = "rmsprop"

    def __init__(self, params, lr: float | torch.Tensor = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, args=None,
                 min_8bit_size: int = 4096, *, fused: bool | None = None, max_grad_norm=None,
                 track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        if alpha == 0:
            raise NotImplementedError("RMSprop with alpha==0.0 is not supported!")
        if centered:
            raise NotImplementedError("Centered RMSprop is not supported!")
        defaults = dict(lr=lr, betas=(alpha, momentum), eps=eps, weight_decay=weight_decay, fused=fused)
        super().__init__(params, defaults, args=args, min_8bit_size=min_8bit_size, max_grad_norm=max_grad_norm,
                         track_grad_norm=track_grad_norm, grad_norm_history=grad_norm_history)

    def _hyper_fields(self, group):
        return dict(alpha=group["betas"][0], eps=group["eps"], weight_decay=group["weight_decay"], momentum=0.0,
                    centered=False, maximize=False, eps_in_sqrt=False, lr_in_momentum=False)


class Adagrad8bit(_OneState):
    """bitsandbytes.optim.Adagrad8bit: Adagrad with an 8-bit sum (lr_decay and
    initial_accumulator_value must be 0, as in bitsandbytes)."""

    _rule = "adagrad"

    def __init__(self, params, lr: float | torch.Tensor = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, optim_bits: int = 8, args=None,
                 min_8bit_size: int = 4096, *, fused: bool | None = None, max_grad_norm=None,
                 track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        if initial_accumulator_value != 0.0:
            raise ValueError("Initial accumulator value != 0.0 not supported!")
        if lr_decay != 0.0:
            raise ValueError("Lr Decay != 0.0 not supported!")
        if optim_bits != 8:
            raise ValueError(f"Adagrad8bit: optim_bits must be 8, got {optim_bits!r}")
        defaults = dict(lr=lr, betas=(0.0, 0.0), eps=eps, weight_decay=weight_decay, fused=fused)
        super().__init__(params, defaults, args=args, min_8bit_size=min_8bit_size, max_grad_norm=max_grad_norm,
                         track_grad_norm=track_grad_norm, grad_norm_history=grad_norm_history)

    def _hyper_fields(self, group):
        return dict(lr_decay=0.0, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
