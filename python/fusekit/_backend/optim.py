"""Optimizer steps: tensors -> StepArgs for one (device, dtype) list, and the StepTables of
the eager hot path (csrc/py/step_table.h).

A rule is one of the update rules in csrc/include/fusekit/math/ (Rule enum); its
hyper-parameters travel in the rule's Hyper struct, built once per param group options.
"""
from __future__ import annotations

import functools

import torch

from .. import _C
from .common import DTYPE_CODES, as_real, buf, current_stream, device_index, flat_compatible, local, real_dtype

# rule name -> (enum, Hyper struct, hyper-parameter fields)
RULES = {
    "sgd": (_C.Rule.SGD, _C.SGDHyper, ("momentum", "dampening", "weight_decay", "nesterov", "maximize")),
    "adam": (_C.Rule.Adam, _C.AdamHyper,
             ("beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize", "decoupled", "folded")),
    "nadam": (_C.Rule.NAdam, _C.NAdamHyper,
              ("beta1", "beta2", "eps", "weight_decay", "momentum_decay", "decoupled", "maximize", "folded")),
    "rmsprop": (_C.Rule.RMSprop, _C.RMSpropHyper,
                ("alpha", "eps", "weight_decay", "momentum", "centered", "maximize", "eps_in_sqrt", "lr_in_momentum")),
    "adagrad": (_C.Rule.Adagrad, _C.AdagradHyper, ("lr_decay", "weight_decay", "eps", "maximize")),
    "grad_op": (_C.Rule.GradOp, _C.GradOpHyper, ("clip_value", "clamp")),
}


def make_hyper(rule: str, fields: dict):
    """The rule's Hyper struct from a dict of its fields (bools stay bools, the rest float)."""
    h = RULES[rule][1]()
    for k in RULES[rule][2]:
        v = fields[k]
        setattr(h, k, bool(v) if isinstance(v, bool) else float(v))
    return h


def run(rule: str, args, hyper) -> None:
    _C.optimizer_step(RULES[rule][0], args, hyper)


def step_args(slots: list[list[torch.Tensor]], *, steps=None, mus=None, first=None, lr=0.0, lr_ptr=0,
              capturable=False, grad_scale=None, found_inf=None, clip_coef=None):
    """StepArgs for one list of dense tensors of one (device, dtype): slots[k][i] is slot k
    (param, grad, states...) of tensor i; steps / mus: 0-d float32 scalar state per tensor.
    The tensors must stay alive until the kernel has run."""
    first_t = slots[0][0]
    a = _C.StepArgs()
    a.device = device_index(first_t.device)
    a.stream = current_stream(first_t.device)
    a.num_threads = torch.get_num_threads()
    a.dtype = DTYPE_CODES[real_dtype(first_t.dtype)]
    a.nslots, a.count = len(slots), len(slots[0])
    ptrs, nbytes = [], []
    for slot in slots:
        for t in slot:
            p, n = buf(t)
            ptrs.append(p)
            nbytes.append(n)
    a.ptrs, a.nbytes = ptrs, nbytes
    a.numels = [as_real(t).numel() for t in slots[0]]
    if steps is not None:
        a.steps = [s.data_ptr() for s in steps]
        a.capturable = bool(steps) and steps[0].is_cuda
    if mus is not None:
        a.mu_products = [m.data_ptr() for m in mus]
    if first is not None:
        a.first = list(first)
    a.lr, a.lr_ptr = float(lr), lr_ptr
    a.capturable = a.capturable or capturable
    a.grad_scale = 0 if grad_scale is None else grad_scale.data_ptr()
    a.found_inf = 0 if found_inf is None else found_inf.data_ptr()
    a.clip_coef = 0 if clip_coef is None else clip_coef.data_ptr()
    return a


class StepTable:
    """A param group's cached kernel tables (eager hot path), built from validated tensors.

    rows: (index in group["params"], param, state dict, StateFormat, keys) for every param
    with a gradient, its state already created; keys: the state entries the kernel touches
    (nstates state tensors, then the 8-bit absmax per state, then the master copy).
    """

    def __init__(self, rule: str, hyper, group: dict, state, nstates: int, has_step: bool, has_mu: bool, rows,
                 first: set) -> None:
        self.table = _C.StepTable(RULES[rule][0], hyper, group["params"], state, has_step, has_mu)
        buckets: dict = {}
        self.params = []
        for index, p, st, fmt, keys in rows:
            pl = local(p)
            master = len(keys) > nstates * (2 if fmt == _C.StateFormat.Block8 else 1)
            key = (real_dtype(pl.dtype), pl.device, fmt, master)
            if key not in buckets:
                buckets[key] = self.table.add_bucket(DTYPE_CODES[key[0]], device_index(pl.device), fmt, nstates,
                                                     master)
            holders = [st[k] for k in keys]
            locals_ = [pl, local(p.grad)] + [local(t) for t in holders]
            self.table.add_member(index, buckets[key], keys, holders, locals_, as_real(pl).numel(),
                                  st["step"] if has_step else None, st["mu_product"] if has_mu else None,
                                  p in first, pl is not p)
            self.params.append(p)
        self.devices = [torch.device("cpu") if d < 0 else torch.device("cuda", d)
                        for d in (self.table.bucket_device(b) for b in range(self.table.buckets))]
        self.cpu = all(d.type == "cpu" for d in self.devices)
        # the gradients' promoted dtype: their dtypes cannot change without a rebuild
        self.real = real_dtype(functools.reduce(torch.promote_types, (p.grad.dtype for p in self.params)))

    def launch(self, lr, grad_scale, found_inf, clip_coef, capturable: bool) -> None:
        """Runs every bucket's kernel with this step's scalars (tensors are read by the
        kernel where they live on its device; lr too for capturable CUDA steps)."""
        threads = torch.get_num_threads()
        if grad_scale is None and found_inf is None and clip_coef is None and not capturable:
            if self.cpu:  # no device scalars to stage, no streams: lr only
                return self.table.launch_cpu(float(lr), threads)
            for b, device in enumerate(self.devices):
                self.table.launch(b, float(lr), 0, False, 0, 0, 0, threads, current_stream(device))
            return
        for b, device in enumerate(self.devices):
            keep = []

            def ptr(t, dtype=torch.float32):
                if t is None:
                    return 0
                t = t.detach().to(device=device, dtype=dtype)
                keep.append(t)
                return t.data_ptr()
            cap = capturable and device.type == "cuda"
            lr_ptr = ptr(lr.reshape(())) if cap and isinstance(lr, torch.Tensor) else 0
            self.table.launch(b, 0.0 if lr_ptr else float(lr), lr_ptr, cap, ptr(grad_scale), ptr(found_inf),
                              ptr(clip_coef, torch.float64), threads, current_stream(device))

    @staticmethod
    def applies(rows) -> bool:
        """The table runs over flat memory: each row (param, grad, states) dense in one
        layout; anything else takes the general path."""
        return all(flat_compatible([local(t) for t in row]) for row in rows)


def run_lists(rule: str, hyper, slots: list[list[torch.Tensor]], *, steps=None, mus=None, first=None, lr=0.0,
              lr_tensor=None, capturable=False, grad_scale=None, found_inf=None, clip_coef=None) -> None:
    """The general path: slots[k][i] is slot k (param, grad, states...) of tensor i, any
    mix of devices and dtypes, complex or strided. One kernel call per (device, dtype);
    tensors that cannot be updated as flat arrays go through contiguous copies, written
    back afterwards (param, state, and the gradient when it was unscaled in place)."""
    buckets: dict = {}
    for i, p in enumerate(slots[0]):
        buckets.setdefault((p.device, real_dtype(p.dtype)), []).append(i)
    for (device, _), idx in buckets.items():
        staged = []
        cols = []
        for i in idx:
            ts = [as_real(local(slot[i])) for slot in slots]
            if not flat_compatible(ts):
                copies = [t.contiguous() for t in ts]
                staged.append((ts, copies))
                ts = copies
            cols.append(ts)
        keep = []

        def on(t, dtype=torch.float32):
            if t is None:
                return None
            t = t.detach().reshape(()).to(device=device, dtype=dtype)
            keep.append(t)
            return t
        lr_ptr = 0
        cap = capturable or (steps is not None and bool(idx) and steps[idx[0]].is_cuda)
        if lr_tensor is not None and device.type == "cuda" and cap:
            lr_ptr = on(lr_tensor).data_ptr()
        elif lr_tensor is not None:
            lr = float(lr_tensor)
        a = step_args([list(c) for c in zip(*cols)], steps=None if steps is None else [steps[i] for i in idx],
                      mus=None if mus is None else [mus[i] for i in idx],
                      first=None if first is None else [bool(first[i]) for i in idx], lr=lr, lr_ptr=lr_ptr,
                      capturable=cap, grad_scale=on(grad_scale), found_inf=on(found_inf),
                      clip_coef=on(clip_coef, torch.float64))
        run(rule, a, hyper)
        if staged:
            with torch.no_grad():
                for orig, tmp in staged:
                    for k, (o, t) in enumerate(zip(orig, tmp)):
                        if k != 1 or grad_scale is not None:
                            o.copy_(t)
