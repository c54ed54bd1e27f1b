"""Global-norm clipping: the global norm of many gradients (several devices, DTensor shards
across ranks), the grad-norm monitor and AutoClip.

Per device the norm is one native call (fusekit/_backend/norm.py). Gradients on several
devices are combined as torch combines them (the norm of the per-device norms); DTensor
gradients contribute their local shards, and the per-rank partials are combined with one
all-reduce per device mesh (sum of p-th powers, max for inf), as torch does for DTensors.
What follows the total (unscaling, the clip coefficient, telemetry) runs natively where
the total lives, so nothing is read back to the host.
"""
from __future__ import annotations

import math

import torch

from ._backend import local
from ._backend import norm as _norm
from ._backend.norm import Tail, readable, result_dtype
from .errors import error

__all__ = ["AutoClip", "GradNormMonitor", "global_norm"]


def _is_dtensor(t) -> bool:
    return hasattr(t, "_local_tensor") and hasattr(t, "device_mesh")


def _check_norm_type(norm_type) -> float:
    """A positive number or +/-inf, converted with float() as torch does (so 'fro' raises
    torch's ValueError); torch also accepts 0, negative and NaN orders, fusekit does not."""
    try:
        p = float(norm_type)
    except ValueError as e:
        raise ValueError(f"norm_type must be a number, got {norm_type!r}") from e
    except TypeError as e:
        raise TypeError(f"norm_type must be a number, got {norm_type!r}") from e
    if not (p > 0 or p == math.inf or p == -math.inf):
        raise ValueError(f"norm_type must be positive or +/-inf, got {norm_type}")
    return p


def global_norm(tensors: list, norm_type: float = 2.0, tail: Tail | None = None, *, clip_in_place: bool = False):
    """(total, unscaled, coef) over all tensors, as torch.nn.utils.get_total_norm computes it.

    total and unscaled are 0-d tensors in torch's result dtype on the first tensor's device
    (DTensors when the inputs are: Replicate on their mesh, like torch's); coef is a 0-d
    float64 tensor when the tail has a threshold. clip_in_place (a single CPU device only):
    the tensors are scaled in the same call and coef is None.
    """
    p = _check_norm_type(norm_type)
    if not tensors:
        raise ValueError("global_norm needs at least one tensor")
    for t in tensors:
        if not isinstance(t, torch.Tensor):  # torch fails on t.device: an AttributeError
            raise error(f"global norms take tensors, got {type(t).__name__}", TypeError, AttributeError)
        if t.is_sparse or local(t).layout != torch.strided:
            raise NotImplementedError(f"fusekit computes norms of dense tensors only; got a {local(t).layout} tensor")
    real = result_dtype(tensors)
    if real not in _norm.DTYPE_CODES:
        raise RuntimeError(f"gradient norms need floating-point tensors, got {sorted({str(t.dtype) for t in tensors})}")
    if p != 2.0 and any(t.is_complex() for t in tensors):
        total, unscaled, coef = _complex_norm(tensors, p, real, tail)
        if clip_in_place and coef is not None:
            _norm.scale_([local(t) for t in tensors], coef)
            coef = None
        return total, unscaled, coef
    if math.isinf(p) and any(t.numel() == 0 for t in tensors):
        raise RuntimeError("_foreach_norm cannot compute the infinity norm on an empty tensor because the "
                           "operation does not have an identity")  # torch's error, for parity
    meshes = {}
    by_device: dict = {}
    for t in tensors:
        if _is_dtensor(t):
            meshes.setdefault(id(t.device_mesh), (t.device_mesh, _sharded_dims(t)))
        lt = local(t)
        by_device.setdefault(lt.device, []).append(readable(lt))
    first = local(tensors[0]).device
    if len(by_device) == 1 and not meshes:
        ts = by_device[first]
        if clip_in_place and first.type != "cpu":
            return _clip_after(ts, p, real, tail)
        return _norm.norm(ts, p, real, tail, clip_in_place=clip_in_place)
    totals = [_norm.norm(ts, p, real)[0].to(first) for ts in by_device.values()]
    total = torch.linalg.vector_norm(torch.stack(totals), p) if len(totals) > 1 else totals[0]
    for mesh, dims in meshes.values():
        total = _all_reduce_norm(total, p, mesh, dims)
    unscaled, coef = _norm.finish(total, real, tail or Tail())
    if clip_in_place and coef is not None:
        _norm.scale_([t for ts in by_device.values() for t in ts], coef)
        coef = None
    if meshes:
        mesh = next(iter(meshes.values()))[0]
        total, unscaled = _replicated(total, mesh), _replicated(unscaled, mesh)
    return total, unscaled, coef


def _complex_norm(tensors, p, real, tail):
    """Complex tensors under a norm other than L2: |z| is not a norm of the real view, so
    torch's own per-tensor norms, combined as torch combines them (a rare path)."""
    if any(_is_dtensor(t) for t in tensors):
        raise NotImplementedError("fusekit computes norms of complex DTensor gradients only for norm_type=2")
    first = tensors[0].device
    norms = [torch.linalg.vector_norm(t.detach(), p).to(first) for t in tensors]
    total = torch.linalg.vector_norm(torch.stack(norms), p).to(real)
    unscaled, coef = _norm.finish(total, real, tail or Tail())
    return total, unscaled, coef


def _clip_after(ts, p, real, tail):
    """CUDA clip_grad_norm_: the coefficient stays on the device; a second pass scales."""
    total, unscaled, coef = _norm.norm(ts, p, real, tail)
    if coef is not None:
        _norm.scale_(ts, coef)
    return total, unscaled, None


def _sharded_dims(t) -> tuple:
    """Mesh dims over which t's local shards differ (Shard / Partial placements)."""
    return tuple(i for i, pl in enumerate(t.placements) if not pl.is_replicate())


def _all_reduce_norm(total, p, mesh, dims):
    """The global norm from per-rank partial norms: one all-reduce over the sharded mesh
    dims (max for inf norms, else the sum of p-th powers)."""
    import torch.distributed as dist

    if not dims:
        return total
    x = total.to(torch.float64)
    inf = math.isinf(p)
    x = x if inf else x.abs() ** p
    if p == -math.inf:
        x = -x
    groups = [mesh.get_group(d) for d in dims]
    for g in groups:
        dist.all_reduce(x, op=dist.ReduceOp.MAX if inf else dist.ReduceOp.SUM, group=g)
    if p == -math.inf:
        x = -x
    return (x if inf else x ** (1.0 / p)).to(total.dtype)


def _replicated(t, mesh):
    from torch.distributed.tensor import DTensor, Replicate

    return DTensor.from_local(t, mesh, [Replicate()] * mesh.ndim, run_check=False)


class AutoClip:
    """Pass as `max_grad_norm`: each step's threshold is `percentile` of the unclipped
    gradient norms recorded over the last `history` steps (the tuning playbook's choice,
    near the 90th percentile), computed on the device without a host sync. Until
    `min_history` norms are recorded nothing is clipped."""

    def __init__(self, percentile: float = 90.0, history: int = 1000, min_history: int = 100) -> None:
        if not isinstance(percentile, (int, float)) or isinstance(percentile, bool) or not 0.0 < percentile <= 100.0:
            raise ValueError(f"AutoClip percentile must be in (0, 100], got {percentile!r}")
        for name, v in (("history", history), ("min_history", min_history)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"AutoClip {name} must be an int, got {v!r}")
        if history < 1 or not 1 <= min_history <= history:
            raise ValueError(f"AutoClip needs 1 <= min_history <= history, got {min_history} and {history}")
        self.percentile, self.history, self.min_history = float(percentile), history, min_history

    def __repr__(self) -> str:
        return f"AutoClip(percentile={self.percentile}, history={self.history}, min_history={self.min_history})"


class GradNormMonitor:
    """Every step's unclipped global gradient norm and the threshold used, in device-side
    rings of `history` entries with a device-side count: recording (done by the native
    norm tail) never syncs with the host; reading (values(), summary(), ...) does."""

    def __init__(self, history: int = 1000) -> None:
        if not isinstance(history, int) or isinstance(history, bool):
            raise TypeError(f"grad_norm_history must be an int, got {history!r}")
        if history < 1:
            raise ValueError(f"grad_norm_history must be >= 1, got {history}")
        self.history = history
        self._norms = self._thresholds = self._count = None

    def rings(self, device: torch.device):
        """(norms, thresholds, count) on `device`, created (NaN, NaN, 0) or moved there."""
        if self._norms is None:
            self._norms = torch.full((self.history,), math.nan, dtype=torch.float32, device=device)
            self._thresholds = torch.full_like(self._norms, math.nan)
            self._count = torch.zeros((), dtype=torch.int64, device=device)
        elif self._norms.device != device:  # e.g. restored on the CPU, training on CUDA
            self._norms, self._thresholds, self._count = (t.to(device) for t in (self._norms, self._thresholds,
                                                                                  self._count))
        return self._norms, self._thresholds, self._count

    @property
    def count(self) -> int:
        """Norms recorded so far (reads the device counter)."""
        return 0 if self._count is None else int(self._count)

    def _ordered(self, buf):
        count = self.count
        n = min(count, self.history)
        if buf is None or n == 0:
            return torch.empty(0)
        return buf[:n] if count <= self.history else torch.roll(buf, -(count % self.history))

    def values(self) -> torch.Tensor:
        """Recorded norms, oldest first, as a CPU tensor (steps skipped for inf/nan show so)."""
        return self._ordered(self._norms).cpu()

    def thresholds(self) -> torch.Tensor:
        """The clipping threshold of each recorded step (inf: not clipped)."""
        return self._ordered(self._thresholds).cpu()

    def threshold_tensor(self, autoclip: AutoClip, device: torch.device) -> torch.Tensor:
        """AutoClip's threshold on the device: the percentile of the finite norms among the
        last `autoclip.history` recorded, or inf until `min_history` are (no host sync)."""
        norms, _, count = self.rings(device)
        last = min(autoclip.history, self.history)
        age = torch.arange(last, device=device)
        idx = torch.remainder(count - 1 - age, self.history)
        v = norms.index_select(0, idx)
        v = torch.where((age < count) & torch.isfinite(v), v, torch.full_like(v, math.nan))
        q = torch.nanquantile(v, autoclip.percentile / 100.0)
        ready = (count >= autoclip.min_history) & ~torch.isnan(q)
        return torch.where(ready, q, torch.full_like(q, math.inf))

    def percentile(self, p: float) -> float:
        v = self.values()
        v = v[torch.isfinite(v)]
        return float(torch.quantile(v, p / 100.0)) if v.numel() else math.nan

    def clipped(self) -> torch.Tensor:
        """Per recorded step: was the gradient scaled down (norm + 1e-6 > threshold)?"""
        return (self.values() + 1e-6) > self.thresholds()

    def clipped_fraction(self) -> float:
        c = self.clipped()
        return c.sum().item() / c.numel() if c.numel() else 0.0

    def summary(self) -> str:
        v = self.values()
        finite = v[torch.isfinite(v)]
        if finite.numel() == 0:
            return "grad norm: no finite norms recorded yet"
        frac = self.clipped_fraction()
        lines = [
            f"grad norm over {v.numel()} steps (of {self.count} recorded): min {finite.min():.4g}, "
            f"median {finite.median():.4g}, p90 {self.percentile(90):.4g}, max {finite.max():.4g}",
            f"clipped: {frac:.1%} of steps; suggested max_grad_norm (90th percentile): {self.percentile(90):.4g}",
        ]
        if v.numel() > finite.numel():
            lines.append(f"non-finite norms: {v.numel() - finite.numel()} steps")
        if frac > 0.5:
            lines.append("WARNING: more than half of the updates were clipped: the threshold is acting as a "
                         "learning-rate cut; lower the learning rate instead (Deep Learning Tuning Playbook)")
        return "\n".join(lines)

    def plot(self, path: str) -> str:
        """One PNG: norm vs step (threshold line, clipped steps marked) beside the histogram
        over all recorded steps with the 90th percentile marked. Needs matplotlib
        (pip install fusekit[plot])."""
        try:
            import matplotlib
        except ImportError as e:
            raise ImportError("GradNormMonitor.plot needs matplotlib: pip install fusekit[plot]") from e

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        v, thr, clipped = self.values(), self.thresholds(), self.clipped()
        count = self.count
        steps = torch.arange(count - v.numel(), count)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        ax1.plot(steps, v, lw=1, label="unclipped grad norm")
        if torch.isfinite(thr).any():
            ax1.plot(steps, thr, "r--", lw=1, label="clip threshold")
        if clipped.any():
            ax1.scatter(steps[clipped], v[clipped], s=10, c="red", zorder=3, label="clipped step")
        ax1.set_xlabel("step")
        ax1.set_ylabel("global L2 norm")
        ax1.set_yscale("log")
        ax1.legend()
        finite = v[torch.isfinite(v)]
        ax2.hist(finite.numpy(), bins=50)
        if finite.numel():
            p90 = self.percentile(90)
            ax2.axvline(p90, color="k", ls="--", label=f"90th percentile {p90:.3g}")
            ax2.legend()
        ax2.set_xlabel("global L2 norm")
        ax2.set_ylabel("steps")
        fig.suptitle(f"gradient norms ({self.clipped_fraction():.0%} of steps clipped)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def state_dict(self) -> dict:
        return {"history": self.history, "count": self.count, "norms": self.values(),
                "thresholds": self.thresholds()}

    def load_state_dict(self, d: dict) -> None:
        history, count = d["history"], d["count"]
        norms, thresholds = torch.as_tensor(d["norms"], dtype=torch.float32), torch.as_tensor(d["thresholds"],
                                                                                              dtype=torch.float32)
        if not isinstance(history, int) or history < 1 or not isinstance(count, int) or count < 0 \
                or norms.shape != thresholds.shape or norms.numel() != min(count, history):
            raise ValueError(f"grad_norms state: history {history!r}, count {count!r} and {norms.numel()} / "
                             f"{thresholds.numel()} recorded values do not fit together")
        self.history = history
        device = self._norms.device if self._norms is not None else torch.device("cpu")
        self._norms = self._thresholds = self._count = None
        rn, rt, rc = self.rings(device)
        n = norms.numel()
        slots = torch.remainder(torch.arange(count - n, count), history).to(device)
        rn[slots], rt[slots] = norms.to(device), thresholds.to(device)
        rc.fill_(count)
