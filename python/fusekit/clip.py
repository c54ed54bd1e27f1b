"""Global-norm clipping on fusekit's norm kernels, the grad-norm monitor and AutoClip.

The norm of many tensors is one kernel call per device: every gradient is read once, the
reduction runs in float32 (float64 for float64 gradients) with fixed chunk boundaries and a
fixed combine order, so the result is bitwise reproducible and independent of the thread
count. Clipping inside an optimizer step reuses norm_and_coef(): the coefficient stays in
device memory and the update kernel multiplies the gradients by it, with no host sync.
"""
from __future__ import annotations

import functools
import math
import threading

import torch

from . import _C
from ._backend import DTYPE_CODES, as_real, current_stream, device_index, is_dense, real_dtype

_F64 = torch.float64


def result_dtype(tensors) -> torch.dtype:
    """torch stacks the per-tensor norms (each in its tensor's dtype): promoted dtype."""
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors))


def _readable(t: torch.Tensor) -> torch.Tensor:
    t = as_real(t)
    return t if is_dense(t) else t.contiguous()


def norm_and_coef(tensors: list, norm_type: float, *, max_norm=None, grad_scale=None, clip_in_place=False):
    """Total norm of `tensors` on the first tensor's device, rounded to torch's result dtype.

    Returns (total, coef): coef is None unless max_norm (a float or a 0-d float32 tensor on
    that device) is given; then coef = min(1, max_norm / (total / grad_scale + 1e-6)) as a
    0-d float32 tensor, and total is the unscaled norm. Nothing is read back to the host on
    CUDA. clip_in_place (CPU): the tensors are scaled by coef in the same call, and coef is
    not returned.
    """
    norm_type = float(norm_type)
    if not (norm_type > 0 or math.isinf(norm_type)):
        raise ValueError(f"norm_type must be positive or +/-inf, got {norm_type}")
    if math.isinf(norm_type) and any(t.numel() == 0 for t in tensors):
        raise RuntimeError("_foreach_norm cannot compute the infinity norm on an empty tensor because the "
                           "operation does not have an identity")  # torch's error, for parity
    d0 = tensors[0].dtype
    simple = cpu = True  # all CPU / all of dtype d0, real and contiguous
    for t in tensors:
        if t.dtype is not d0 or not t.is_contiguous():
            simple = False
        if not t.is_cpu:
            cpu = False
    dtype = d0 if simple else result_dtype(tensors)
    real = real_dtype(dtype)
    if real not in DTYPE_CODES or (not simple and any(real_code(t) is None for t in tensors)):
        raise TypeError(f"gradient norms need floating-point tensors, got {sorted({str(t.dtype) for t in tensors})}")
    if dtype.is_complex or (not simple and any(t.is_complex() for t in tensors)):
        if norm_type != 2.0:
            raise NotImplementedError("fusekit computes norms of complex gradients only for norm_type=2")
        simple = False
    if cpu:
        ts = tensors if simple else [_readable(t) for t in tensors]
        return _cpu_norm(ts, norm_type, real, max_norm, grad_scale, clip_in_place)
    by_device: dict = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(_readable(t))
    first = tensors[0].device
    want_coef = max_norm is not None
    if len(by_device) == 1:
        total, coef = _cuda_norm(first, by_device[first], norm_type, real, max_norm, grad_scale, want_coef)
    else:  # several devices: per-device totals combined on the first, as torch stacks its norms
        totals = [_cuda_norm(d, ts, norm_type, real, None, None, False)[0].to(first) if d.type == "cuda"
                  else _cpu_norm(ts, norm_type, real, None, None, False)[0].to(first)
                  for d, ts in by_device.items()]
        total = torch.linalg.vector_norm(torch.stack(totals), norm_type)
        if grad_scale is not None:
            total = total / grad_scale.to(first)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0).to(torch.float32) if want_coef else None
    if clip_in_place and coef is not None:
        scale_(tensors, coef)
        coef = None
    return total, coef


def real_code(t: torch.Tensor):
    return DTYPE_CODES.get(real_dtype(t.dtype))


def _args(device, ts, norm_type, real) -> "_C.NormArgs":
    a = _C.NormArgs()
    if device is not None:
        a.device = device_index(device)
        a.stream = current_stream(device)
    a.num_threads = torch.get_num_threads()
    a.count = len(ts)
    a.ptrs = [t.data_ptr() for t in ts]
    a.numels = [t.numel() for t in ts]
    a.dtypes = [DTYPE_CODES[t.dtype] for t in ts]
    a.norm_type = norm_type
    a.total_dtype = DTYPE_CODES[real]
    return a


_TLS = threading.local()


def _cpu_norm(ts, norm_type, real, max_norm, grad_scale, clip_in_place):
    """One C++ call; results come back as Python floats (a per-thread scratch buffer holds
    the outputs the core writes)."""
    buf = getattr(_TLS, "buf", None)
    if buf is None:
        buf = _TLS.buf = torch.empty(2, dtype=_F64)
    a = _args(None, ts, norm_type, real)
    a.total_out = buf.data_ptr()
    a.total_unscaled_out = buf.data_ptr() + 8
    keep = []
    if grad_scale is not None:
        gs = grad_scale.to(dtype=torch.float32)
        keep.append(gs)
        a.grad_scale = gs.data_ptr()
    if max_norm is not None:
        if isinstance(max_norm, torch.Tensor):
            thr = max_norm.detach().to(dtype=torch.float32)
            keep.append(thr)
            a.max_norm_ptr = thr.data_ptr()
        else:
            a.max_norm = float(max_norm)
        a.clip = bool(clip_in_place)
    total, coef = _C.tensor_norms(a)
    if grad_scale is not None:
        total = float(buf[1])
    total_t = torch.tensor(total, dtype=real)
    if max_norm is None or clip_in_place:
        return total_t, None
    return total_t, torch.tensor(coef, dtype=torch.float32)


def _cuda_norm(device, ts, norm_type, real, max_norm, grad_scale, want_coef):
    a = _args(device, ts, norm_type, real)
    out = torch.empty(2, dtype=_F64, device=device)
    a.total_out = out.data_ptr()
    a.total_unscaled_out = out.data_ptr() + 8
    ws = torch.empty(max(1, _C.norm_chunk_count(a.numels)), dtype=_F64, device=device)
    norms = torch.empty(max(1, a.count), dtype=_F64, device=device)
    a.workspace, a.norms_out = ws.data_ptr(), norms.data_ptr()
    keep = [ws, norms]
    if grad_scale is not None:
        gs = grad_scale.to(device=device, dtype=torch.float32)
        keep.append(gs)
        a.grad_scale = gs.data_ptr()
    coef = None
    if want_coef:
        coef = torch.empty((), dtype=torch.float32, device=device)
        a.coef_out = coef.data_ptr()
        if isinstance(max_norm, torch.Tensor):
            thr = max_norm.to(device=device, dtype=torch.float32)
            keep.append(thr)
            a.max_norm_ptr = thr.data_ptr()
        else:
            a.max_norm = float(max_norm)
    _C.tensor_norms(a)
    total = out[1] if grad_scale is not None else out[0]
    return total.to(real), coef


def scale_(tensors: list, coef: torch.Tensor | float) -> None:
    """tensors *= coef in one pass per device and dtype (coef may live in device memory)."""
    _grad_op(tensors, _C.GradOpHyper(), coef)


def clamp_(tensors: list, value: float) -> None:
    h = _C.GradOpHyper()
    h.clamp = True
    h.clip_value = float(value)
    _grad_op(tensors, h, 1.0)


def _grad_op(tensors: list, hyper, factor) -> None:
    groups: dict = {}
    for t in tensors:
        r = as_real(t)
        if not is_dense(r):  # strided views: torch's own op (rare)
            if hyper.clamp:
                t.clamp_(-hyper.clip_value, hyper.clip_value)
            else:
                t.mul_(factor.to(t.device) if isinstance(factor, torch.Tensor) else factor)
            continue
        groups.setdefault((r.device, r.dtype), []).append(r)
    for (device, dtype), ts in groups.items():
        a = _C.StepArgs()
        a.device = device_index(device)
        a.stream = current_stream(device)
        a.num_threads = torch.get_num_threads()
        a.dtype = DTYPE_CODES[dtype]
        a.nslots, a.count = 1, len(ts)
        a.ptrs = [t.data_ptr() for t in ts]
        a.numels = [t.numel() for t in ts]
        keep = None
        if isinstance(factor, torch.Tensor):
            if device.type == "cuda":
                keep = factor.to(device=device, dtype=torch.float32)
                a.lr_ptr, a.capturable = keep.data_ptr(), True
            else:
                a.lr = float(factor)
        else:
            a.lr = float(factor)
        _C.grad_op(a, hyper)
        del keep


class AutoClip:
    """Pass as `max_grad_norm`: each step's threshold is `percentile` of the unclipped
    gradient norms recorded over the last `history` steps (the tuning playbook's choice,
    near the 90th percentile), computed on the device without a host sync. Until
    `min_history` norms are recorded nothing is clipped."""

    def __init__(self, percentile: float = 90.0, history: int = 1000, min_history: int = 100) -> None:
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"AutoClip percentile must be in (0, 100], got {percentile}")
        if history < 1 or not 1 <= min_history <= history:
            raise ValueError(f"AutoClip needs 1 <= min_history <= history, got {min_history} and {history}")
        self.percentile, self.history, self.min_history = float(percentile), int(history), int(min_history)

    def __repr__(self) -> str:
        return f"AutoClip(percentile={self.percentile}, history={self.history}, min_history={self.min_history})"


class GradNormMonitor:
    """Every step's unclipped global gradient norm (and the threshold used), in a
    device-side ring buffer of `history` entries: recording never syncs with the host."""

    def __init__(self, history: int = 1000) -> None:
        if history < 1:
            raise ValueError(f"grad_norm_history must be >= 1, got {history}")
        self.history = int(history)
        self.count = 0
        self._norms = None
        self._thresholds = None

    def record(self, norm: torch.Tensor, threshold) -> None:
        if self._norms is None:
            self._norms = torch.full((self.history,), math.nan, dtype=torch.float32, device=norm.device)
            self._thresholds = torch.full_like(self._norms, math.nan)
        elif self._norms.device != norm.device:  # e.g. restored on the CPU, training on CUDA
            self._norms, self._thresholds = self._norms.to(norm.device), self._thresholds.to(norm.device)
        i = self.count % self.history
        self._norms[i] = norm.detach().to(torch.float32)
        if isinstance(threshold, torch.Tensor):
            self._thresholds[i] = threshold.to(torch.float32)
        else:
            self._thresholds[i] = math.inf if threshold is None else float(threshold)
        self.count += 1

    def _ordered(self, buf, last=None):
        n = min(self.count, self.history)
        if buf is None or n == 0:
            return torch.empty(0)
        out = buf[:n] if self.count <= self.history else torch.roll(buf, -(self.count % self.history))
        return out if last is None else out[-last:]

    def values(self) -> torch.Tensor:
        """Recorded norms, oldest first, as a CPU tensor (steps skipped for inf/nan show so)."""
        return self._ordered(self._norms).cpu()

    def thresholds(self) -> torch.Tensor:
        """The clipping threshold of each recorded step (inf: not clipped)."""
        return self._ordered(self._thresholds).cpu()

    def threshold_tensor(self, percentile: float, last: int) -> torch.Tensor:
        """percentile of the finite recorded norms among the last `last`, on the device."""
        v = self._ordered(self._norms, last)
        v = torch.where(torch.isfinite(v), v, torch.full_like(v, math.nan))
        return torch.nanquantile(v, percentile / 100.0)

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
        over all recorded steps with the 90th percentile marked. Needs matplotlib."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        v, thr, clipped = self.values(), self.thresholds(), self.clipped()
        steps = torch.arange(self.count - v.numel(), self.count)
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
        self.history = int(d["history"])
        self.count = 0
        self._norms = self._thresholds = None
        norms, thr = d["norms"], d["thresholds"]
        for n, t in zip(norms, thr):
            self.record(n, t)
        self.count = int(d["count"])
        if self.count > self.history and self._norms is not None:
            # record() put the oldest entry at slot 0; move it to slot count % history
            k = self.count % self.history
            self._norms = torch.roll(self._norms, k)
            self._thresholds = torch.roll(self._thresholds, k)
