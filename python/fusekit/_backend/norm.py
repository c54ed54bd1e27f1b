"""Multi-tensor norms, the clip coefficient and the element-wise gradient ops (scale,
clamp): tensors -> NormArgs / StepArgs.

The norm of many tensors is one kernel call per device: each is read once, reduced in
float32 (float64 for float64 tensors) with fixed chunk boundaries and a fixed combine
order, so the result is bitwise reproducible and independent of the thread count. The
tail of a norm (unscaling, coefficient, telemetry) is native too (norm_tail.h): with a
`Tail` the coefficient and the recorded norm stay in the device's memory, no host sync.
"""
from __future__ import annotations

import functools
import threading

import torch

from .. import _C
from .common import DTYPE_CODES, as_real, buf, current_stream, device_index, is_dense, real_dtype
from .optim import make_hyper, run, step_args

_F64 = torch.float64


def result_dtype(tensors) -> torch.dtype:
    """torch stacks the per-tensor norms (each in its tensor's dtype): the promoted dtype."""
    return real_dtype(functools.reduce(torch.promote_types, (t.dtype for t in tensors)))


class Tail:
    """What a norm call produces besides the total: the unscaled total (grad_scale), the
    clip coefficient (max_norm: a float or a 0-d tensor) and the telemetry record
    (history: a GradNormMonitor's rings and count; found_inf skips the record)."""

    def __init__(self, *, max_norm=None, grad_scale=None, history=None, found_inf=None) -> None:
        self.max_norm, self.grad_scale, self.history, self.found_inf = max_norm, grad_scale, history, found_inf

    def fill(self, a, device: torch.device, keep: list) -> None:
        """Sets the tail fields of NormArgs a for tensors on `device`; keep holds the temporaries."""
        def on(t, dtype=torch.float32):
            t = t.detach().to(device=device, dtype=dtype)
            keep.append(t)
            return t.data_ptr()
        if self.grad_scale is not None:
            a.grad_scale = on(self.grad_scale)
        if self.found_inf is not None:
            a.found_inf = on(self.found_inf)
        if self.max_norm is not None:
            if isinstance(self.max_norm, torch.Tensor):
                a.max_norm_ptr = on(self.max_norm)
            else:
                a.max_norm = float(self.max_norm)
        if self.history is not None:
            norms, thresholds, count = self.history.rings(device)
            a.history_norms, a.history_thresholds = norms.data_ptr(), thresholds.data_ptr()
            a.history_count, a.history_len = count.data_ptr(), norms.numel()


def _args(ts, norm_type: float, real: torch.dtype, device) -> "_C.NormArgs":
    a = _C.NormArgs()
    if device is not None:
        a.device = device_index(device)
        a.stream = current_stream(device)
    a.num_threads = torch.get_num_threads()
    a.count = len(ts)
    ptrs, nbytes = zip(*(buf(t) for t in ts)) if ts else ((), ())
    a.ptrs, a.nbytes = list(ptrs), list(nbytes)
    a.numels = [t.numel() for t in ts]
    a.dtypes = [DTYPE_CODES[t.dtype] for t in ts]
    a.norm_type = norm_type
    a.total_dtype = DTYPE_CODES[real]
    return a


def readable(t: torch.Tensor) -> torch.Tensor:
    """A dense real view of t (a contiguous copy for strided views)."""
    t = as_real(t)
    return t if is_dense(t) else t.contiguous()


_TLS = threading.local()


def norm(tensors: list, norm_type: float, real: torch.dtype, tail: Tail | None = None, *, clip_in_place=False):
    """(total, unscaled total, coef) of dense real tensors all on one device.

    total is a 0-d tensor of dtype `real`; unscaled equals it without a grad_scale; coef is
    a 0-d float64 tensor (the value rounded to `real`, as torch's) when the tail asks for one (None otherwise, and with clip_in_place,
    CPU only, where the tensors are scaled in the same call)."""
    device = tensors[0].device
    keep: list = []
    if device.type == "cpu":
        out = getattr(_TLS, "out", None)
        if out is None:
            out = _TLS.out = torch.empty(2, dtype=_F64)
        a = _args(tensors, norm_type, real, None)
        coef = None
    else:
        a = _args(tensors, norm_type, real, device)
        out = torch.empty(2, dtype=_F64, device=device)
        ws = torch.empty(max(1, _C.norm_chunk_count(a.numels)), dtype=_F64, device=device)
        norms = torch.empty(max(1, a.count), dtype=_F64, device=device)
        a.workspace, a.norms_out = ws.data_ptr(), norms.data_ptr()
        keep += [ws, norms]
        coef = None
    a.total_out, a.total_unscaled_out = out.data_ptr(), out.data_ptr() + 8
    if tail is not None:
        tail.fill(a, device, keep)
        if tail.max_norm is not None and not clip_in_place:
            coef = torch.empty((), dtype=_F64, device=device)
            a.coef_out = coef.data_ptr()
    a.clip = bool(clip_in_place)
    _C.tensor_norms(a)
    if device.type == "cpu":  # out is a per-thread scratch buffer: copy the results out of it
        total, unscaled = torch.tensor(float(out[0]), dtype=real), torch.tensor(float(out[1]), dtype=real)
    else:
        total, unscaled = out[0].to(real), out[1].to(real)
    return total, unscaled, coef


def finish(total: torch.Tensor, real: torch.dtype, tail: Tail):
    """(unscaled, coef) of a total computed elsewhere (across devices or ranks), on its
    device, by the native tail: no host sync."""
    device = total.device
    t64 = total.detach().reshape(()).to(_F64)
    out = torch.empty((), dtype=_F64, device=device)
    a = _args([], 2.0, real, device if device.type == "cuda" else None)
    keep: list = [t64]
    tail.fill(a, device, keep)
    coef = None
    if tail.max_norm is not None:
        coef = torch.empty((), dtype=_F64, device=device)
        a.coef_out = coef.data_ptr()
    a.total_unscaled_out = out.data_ptr()
    _C.finish_norm(device_index(device), current_stream(device), t64.data_ptr(), a)
    return out.to(real), coef


def scale_(tensors: list, coef) -> None:
    """tensors *= coef in one pass per device and dtype (coef: a float, or a 0-d tensor
    read by the kernel on CUDA)."""
    _grad_op(tensors, make_hyper("grad_op", dict(clip_value=0.0, clamp=False)), coef)


def clamp_(tensors: list, value: float) -> None:
    _grad_op(tensors, make_hyper("grad_op", dict(clip_value=value, clamp=True)), 1.0)


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
    for (device, _), ts in groups.items():
        keep = None
        if isinstance(factor, torch.Tensor) and device.type == "cuda":
            keep = factor.detach().to(device=device, dtype=torch.float32)
            a = step_args([ts], lr_ptr=keep.data_ptr(), capturable=True)
        else:
            a = step_args([ts], lr=float(factor))
        run("grad_op", a, hyper)
        del keep


def norm_of_tables(tables: list, real: torch.dtype, device: torch.device, tail: Tail):
    """(unscaled total, coef) of the current gradients of StepTables on one device: the
    pointers the tables hold are used as they are, no per-tensor Python work."""
    keep: list = []
    a = _args([], 2.0, real, device if device.type == "cuda" else None)
    out = torch.empty(2, dtype=_F64, device=device)
    a.total_out, a.total_unscaled_out = out.data_ptr(), out.data_ptr() + 8
    if device.type == "cuda":
        numels = _C.table_grad_numels(tables)
        ws = torch.empty(max(1, _C.norm_chunk_count(numels)), dtype=_F64, device=device)
        norms = torch.empty(max(1, len(numels)), dtype=_F64, device=device)
        a.workspace, a.norms_out = ws.data_ptr(), norms.data_ptr()
        keep += [ws, norms]
    tail.fill(a, device, keep)
    coef = None
    if tail.max_norm is not None:
        coef = torch.empty((), dtype=_F64, device=device)
        a.coef_out = coef.data_ptr()
    _C.norm_of_tables(tables, a)
    return out[1].to(real), coef
