"""Self-test of an installed fusekit: ``python -m fusekit.check [--device cpu|cuda|all]``.

CPU: every ISA the machine runs (FUSEKIT_CPU_ISA caps it per process, so each runs in a
subprocess) must give the scalar build's bits for every rule, dtype and option set, AMP
(found_inf 0 and 1), clipping inside the step, and every norm type.

CUDA: every kernel must give the CPU kernels' bits (same math on both sides; NaNs compare
equal whatever their payload) for every rule, option set and dtype, on > 256 tensors (two
launches) including empty, odd-sized and misaligned ones, with AMP found_inf 0/1, clipping
inside the step, capturable/fused on and off, with launches cut small so tensors split
across them; norms of every type (the p-norm's |x|^p uses each side's pow(): a few ulp);
a CUDA-graph capture and replay of a capturable AdamW step with max_grad_norm and of an
AMP SGD step (neither may sync); capture of a non-capturable step must raise as torch's
does; and, with --huge, a 2^31+-element bf16 SGD step and norm.

Prints one line per check and a summary; exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32, torch.float64: torch.int64}

# (class, kwargs): every variant bit of every rule (csrc/include/fusekit/math/*.h).
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), maximize=True, folded_bias_correction=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("NAdam", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2, decoupled_weight_decay=True, weight_decay=0.05)),
    ("NAdam", dict(lr=1e-2, betas=(0.4, 0.99), weight_decay=0.01, folded_bias_correction=True)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=1e-2, alpha=0.3, centered=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, square_avg_init=1.0, eps_in_sqrt=True, lr_in_momentum=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, maximize=True)),
]
# Device-side coefficients use the GPU's pow() where a rule needs a non-integer power
# (NAdam's momentum-decay schedule): the same formula, so a few ulp are allowed there.
_DEVICE_POW = {"NAdam"}
NORM_TYPES = [2.0, 1.0, math.inf, -math.inf, 3.0]


# ---------------------------------------------------------------------------- compare
def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    return t.view(_INT[t.dtype]).to(torch.int64)


def ulp_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    """Max distance in units of the last place; 0 means bitwise equal (NaNs equal each other,
    +0 and -0 differ)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return -1
    if a.numel() == 0:
        return 0
    ia, ib = _bits(a), _bits(b)
    both_nan = a.detach().cpu().isnan() & b.detach().cpu().isnan()
    same = (ia == ib) | both_nan
    if bool(same.all()):
        return 0
    width = 8 * a.element_size()
    sign = 1 << (width - 1)

    def ordered(i):  # sign-magnitude -> monotone integers
        i = i & ((1 << width) - 1)
        return torch.where(i >= sign, -(i - sign), i)

    d = (ordered(ia) - ordered(ib)).abs()
    d[same] = 0
    return max(int(d.max()), 1)


class Report:
    def __init__(self, out=sys.stdout, verbose=False):
        self.rows, self.out, self.verbose, self.t0 = [], out, verbose, time.time()

    def add(self, section: str, name: str, ok: bool, detail: str = "") -> None:
        self.rows.append({"section": section, "name": name, "ok": bool(ok), "detail": detail})
        if self.verbose or not ok:
            print(f"{'ok  ' if ok else 'FAIL'} [{section}] {name} {detail}".rstrip(), file=self.out, flush=True)

    def section_done(self, section: str, seconds: float) -> None:
        rows = [r for r in self.rows if r["section"] == section]
        bad = sum(not r["ok"] for r in rows)
        print(f"{'ok  ' if not bad else 'FAIL'} {section}: {len(rows) - bad}/{len(rows)} checks passed "
              f"({seconds:.1f} s)", file=self.out, flush=True)

    @property
    def failed(self) -> list:
        return [r for r in self.rows if not r["ok"]]


# ---------------------------------------------------------------------------- inputs
def _randn(shape, seed: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def param_sizes(quick: bool, many: bool) -> list:
    """Empty, 1, odd, chunk-boundary and multi-chunk sizes; with `many`, > 256 tensors so a
    CUDA step needs two launches (the table holds 256)."""
    sizes = [0, 1, 7, 31, 4097, 16385, 40001 if quick else 200003]
    if many:
        sizes += [5 + 3 * i for i in range(20 if quick else 260)]
    return sizes


def make_params(device: str, dtype: torch.dtype, sizes: list, seed: int) -> list:
    ps = [torch.nn.Parameter(_randn((n,), seed + i, dtype).to(device)) for i, n in enumerate(sizes)]
    ps.append(torch.nn.Parameter(_randn((33, 65), seed + 999, dtype).to(device)))  # 2-D
    # A view one element into its buffer: its slots are not equally 16-byte aligned, so the
    # kernels take their scalar path for it.
    buf = _randn((5002,), seed + 1000, dtype).to(device)
    ps.append(torch.nn.Parameter(buf[1:]))
    return ps


def set_grads(ps: list, step: int, scale: float = 1.0) -> None:
    for i, p in enumerate(ps):
        p.grad = _randn(p.shape, 7919 * step + i, p.dtype, 0.5 * scale).to(p.device)


def accepts(cls, arg: str) -> bool:
    import inspect

    return arg in inspect.signature(cls.__init__).parameters


def run_optimizer(name: str, kw: dict, dtype, device: str, sizes: list, *, amp=False, clip=False, device_state=False,
                  lr_tensor=None, steps: int = 3):
    """`steps` steps of fusekit.optim.<name>; returns (params, optimizer), or None where the
    class cannot run the variant. amp: GradScaler's in-kernel unscaling, which torch (and
    fusekit) hand only to fused=True optimizers. device_state: step state on the device
    (capturable where the class has it, else fused). lr_tensor (default: with
    device_state, for the rules with a step): lr as a float32 tensor on `device`."""
    import fusekit.optim as fo

    cls = getattr(fo, name)
    kw = dict(kw)
    if amp:
        if not accepts(cls, "fused"):
            return None
        kw["fused"] = True
    if device_state:
        kw["capturable" if accepts(cls, "capturable") else "fused"] = True
    if lr_tensor if lr_tensor is not None else (device_state and name not in ("SGD", "Adagrad")):
        kw["lr"] = torch.tensor(kw["lr"], device=device)  # read from device memory on CUDA
    if clip:
        kw["max_grad_norm"] = 0.5
    ps = make_params(device, dtype, sizes, 17)
    opt = cls(ps, **kw)
    for s in range(steps):
        scale = 1024.0 if amp else 1.0
        set_grads(ps, s, scale)
        if amp:  # as GradScaler hands them over; step 1 "overflows" and must change nothing
            opt.grad_scale = torch.tensor(scale, device=device)
            opt.found_inf = torch.tensor(1.0 if s == 1 else 0.0, device=device)
        opt.step()
    return ps, opt


def state_tensors(ps: list, opt) -> list:
    out = []
    for p in ps:
        out.append(("param", p.detach()))
        if p.grad is not None:
            out.append(("grad", p.grad.detach()))
        for k, v in sorted(opt.state[p].items()):
            if torch.is_tensor(v):
                out.append((k, v.detach().reshape(v.shape)))
    return out


def compare_runs(a: tuple, b: tuple) -> tuple:
    """(max ulp, where) over params, grads (unscaled in place by AMP) and state. The
    tensors of each dtype are compared as one concatenation (one device-to-host copy), and
    searched one by one only when that differs."""
    sa, sb = state_tensors(*a), state_tensors(*b)
    if len(sa) != len(sb):
        return -1, f"state has {len(sa)} vs {len(sb)} tensors"
    pairs = []
    for (ka, va), (_, vb) in zip(sa, sb):
        if va.dim() == 0 and vb.dim() == 0:
            va, vb = va.float().reshape(()), vb.float().reshape(())
        pairs.append((ka, va, vb))
    worst, where = 0, ""
    for dt in {va.dtype for _, va, _ in pairs}:
        group = [(i, k, va, vb) for i, (k, va, vb) in enumerate(pairs) if va.dtype == dt]
        if any(va.shape != vb.shape or va.dtype != vb.dtype for _, _, va, vb in group):
            return -1, "shapes or dtypes differ"
        cat = lambda vs: torch.cat([v.reshape(-1) for v in vs]).cpu() if vs else torch.empty(0, dtype=dt)
        if ulp_diff(cat([g[2] for g in group]), cat([g[3] for g in group])) == 0:
            continue
        for i, k, va, vb in group:
            u = ulp_diff(va, vb)
            if u > worst:
                worst, where = u, f"{k} #{i}"
    return worst, where


# ---------------------------------------------------------------------------- CPU ISAs
def cpu_suite(quick: bool) -> dict:
    """Deterministic CPU results of every case (for the ISA comparison)."""
    import fusekit.nn.utils as fu

    out = {}
    sizes = param_sizes(True, False)
    for name, kw in CASES:
        for dt in DTYPES:  # every dtype plain; AMP and clipping (dtype-independent paths) in two
            for variant in ("plain", "amp", "clip") if dt in (torch.float32, torch.bfloat16) else ("plain",):
                run = run_optimizer(name, kw, dt, "cpu", sizes, amp=variant == "amp", clip=variant == "clip",
                                    steps=2 if quick else 3)
                if run is not None:
                    out[f"{name} {kw} {dt} {variant}"] = [v.clone() for _, v in state_tensors(*run)]
    for dt in DTYPES:
        gs = [_randn((n,), 31 + n, dt) for n in (1, 7, 4097, 70001)]
        for nt in NORM_TYPES:
            out[f"norm {dt} {nt}"] = [fu.get_total_norm(gs, nt)]
        cl = [g.clone() for g in gs]
        out[f"clip_grad_norm_ {dt}"] = [fu.clip_grad_norm_(cl, 1.0)] + cl
    return out


def _isa_worker(path: str, quick: bool) -> None:
    import fusekit

    torch.save({"isa": fusekit.build_info()["cpu_isa"], "results": cpu_suite(quick)}, path)


def check_cpu_isas(rep: Report, quick: bool) -> None:
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cap in ("scalar", "avx2", "best"):
            env = dict(os.environ)
            env.pop("FUSEKIT_CPU_ISA", None)
            if cap != "best":
                env["FUSEKIT_CPU_ISA"] = cap
            path = os.path.join(tmp, f"{cap}.pt")
            cmd = [sys.executable, "-m", "fusekit.check", "--_isa-worker", path] + (["--quick"] if quick else [])
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                rep.add("cpu-isa", f"worker {cap}", False, r.stderr.strip()[-300:])
                continue
            got = torch.load(path)
            runs.setdefault(got["isa"], got["results"])
    if "scalar" not in runs:
        rep.add("cpu-isa", "scalar reference", False, "the scalar run failed")
        return
    ref = runs["scalar"]
    for isa, res in runs.items():
        if isa == "scalar":
            continue
        for key, vals in ref.items():
            worst = max((ulp_diff(a, b) for a, b in zip(vals, res[key])), default=0)
            rep.add("cpu-isa", f"{isa} vs scalar: {key}", worst == 0, f"max ulp {worst}" if worst else "bitwise")
    rep.add("cpu-isa", f"ISAs compared: {', '.join(sorted(runs))}", len(runs) >= 1)


# ---------------------------------------------------------------------------- CUDA
def reference(name: str, variant: dict) -> dict:
    """The CPU run a CUDA variant is compared with: the same inputs and lr (a float32 lr
    tensor where the CUDA run reads lr from device memory), state on the host."""
    v = dict(variant)
    if v.pop("device_state", False):
        v["lr_tensor"] = name not in ("SGD", "Adagrad")
    return v


def check_cuda_kernels(rep: Report, quick: bool, section: str = "cuda-kernels", sizes=None) -> None:
    sizes = sizes or param_sizes(quick, True)
    for name, kw in CASES:
        for dt in DTYPES:
            variants = [dict(), dict(amp=True), dict(clip=True), dict(device_state=True),
                        dict(device_state=True, clip=True), dict(amp=True, clip=True)]
            if quick:
                variants = [variants[0], variants[4], variants[5]]
            for v in variants:
                cuda = run_optimizer(name, kw, dt, "cuda", sizes, **v)
                if cuda is None:  # no fused=True for this class: no in-kernel AMP
                    continue
                cpu = run_optimizer(name, kw, dt, "cpu", sizes, **reference(name, v))
                worst, where = compare_runs(cuda, cpu)
                allowed = 4 if (v.get("device_state") and name in _DEVICE_POW and not kw.get("folded_bias_correction")) else 0
                label = " ".join(f"{k}" for k in v) or "plain"
                rep.add(section, f"{name} {kw} {str(dt)[6:]} [{label}]", 0 <= worst <= allowed,
                        "bitwise" if worst == 0 else f"max ulp {worst} at {where}")


def check_cuda_split(rep: Report, quick: bool) -> None:
    """Tensors split across launches: the launch caps cut small."""
    from . import _C

    _C.set_launch_limits(3, 5)
    try:
        sizes = [0, 1, 16385 * 3 + 7, 70001, 5, 9]
        for name, kw in [CASES[1], CASES[4], CASES[8], CASES[11], CASES[15]]:
            for dt in (torch.float32, torch.bfloat16):
                for v in (dict(), dict(device_state=True, clip=True)):
                    cuda = run_optimizer(name, kw, dt, "cuda", sizes, **v)
                    cpu = run_optimizer(name, kw, dt, "cpu", sizes, **reference(name, v))
                    worst, where = compare_runs(cuda, cpu)
                    allowed = 4 if (v and name in _DEVICE_POW) else 0
                    rep.add("cuda-split", f"{name} {str(dt)[6:]} {'device' if v else 'host'} (<= 3 tensors, 5 chunks "
                            "per launch)", 0 <= worst <= allowed, "bitwise" if worst == 0 else f"max ulp {worst} at {where}")
        check_cuda_norms(rep, quick, section="cuda-split")
    finally:
        _C.set_launch_limits(0, 0)


def check_cuda_norms(rep: Report, quick: bool, section: str = "cuda-norms") -> None:
    import fusekit.nn.utils as fu

    n_big = 300_000 if quick else 3_000_001
    lists = {f"{str(dt)[6:]}": [_randn((n,), n + 5, dt) for n in (1, 7, 255, 16385, n_big)] for dt in DTYPES}
    lists["mixed"] = [_randn((n,), n, dt) for n, dt in zip((4097, 16384, 99, 70001), DTYPES)]
    buf = _randn((70003,), 3, torch.float32)
    lists["misaligned view"] = [buf[1:], buf[3:40000]]
    for key, gs in lists.items():
        for nt in NORM_TYPES:
            a = fu.get_total_norm([g.cuda() for g in gs], nt)
            b = fu.get_total_norm(gs, nt)
            u = ulp_diff(a.cpu(), b)
            allowed = 4 if nt == 3.0 else 0  # |x|^p: each side's pow()
            rep.add(section, f"get_total_norm {key} p={nt}", 0 <= u <= allowed, "bitwise" if u == 0 else f"ulp {u}")
        ga, gb = [g.cuda() * 50 for g in gs], [g * 50 for g in gs]
        ta, tb = fu.clip_grad_norm_(ga, 1.0), fu.clip_grad_norm_(gb, 1.0)
        worst = max([ulp_diff(ta.cpu(), tb)] + [ulp_diff(x.cpu(), y) for x, y in zip(ga, gb)])
        rep.add(section, f"clip_grad_norm_ {key}", worst == 0, "bitwise" if worst == 0 else f"max ulp {worst}")
        ga, gb = [g.cuda() for g in gs], [g.clone() for g in gs]
        fu.clip_grad_value_(ga, 0.3)
        fu.clip_grad_value_(gb, 0.3)
        worst = max(ulp_diff(x.cpu(), y) for x, y in zip(ga, gb))
        rep.add(section, f"clip_grad_value_ {key}", worst == 0, "bitwise" if worst == 0 else f"max ulp {worst}")


def check_cuda_graphs(rep: Report) -> None:
    import fusekit.optim as fo

    dev = "cuda"
    init = [_randn(s, i, torch.float32).to(dev) for i, s in enumerate([(512, 256), (256,), (70001,), (3, 5, 7)])]
    grads = [_randn(t.shape, 100 + i, torch.float32).to(dev) for i, t in enumerate(init)]

    def make(kind):
        ps = [torch.nn.Parameter(t.clone()) for t in init]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        if kind == "adamw":
            opt = fo.AdamW(ps, lr=torch.tensor(1e-3, device=dev), capturable=True, max_grad_norm=1.0)
        else:  # AMP SGD with momentum: found_inf and the scale are read on the device
            opt = fo.SGD(ps, lr=0.05, momentum=0.9, fused=True)
            opt.grad_scale = torch.tensor(4.0, device=dev)
            opt.found_inf = torch.zeros((), device=dev)
        return ps, opt

    for kind in ("adamw", "sgd-amp"):
        try:
            (pe, oe), (pg, og) = make(kind), make(kind)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up: state exists before capture
                for _ in range(2):
                    oe.step()
                    og.step()
                    if kind == "sgd-amp":  # the step unscales grads in place: restore them
                        for ps in (pe, pg):
                            for p, g in zip(ps, grads):
                                p.grad.copy_(g * 4)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                og.step()
            for r in range(4):
                if kind == "sgd-amp":
                    flag = 1.0 if r == 2 else 0.0  # one replay with found_inf set: a no-op
                    og.found_inf.fill_(flag)
                    oe.found_inf.fill_(flag)
                    for ps in (pe, pg):
                        for p, g in zip(ps, grads):
                            p.grad.copy_(g * 4)
                graph.replay()
                oe.step()
            torch.cuda.synchronize()
            worst, where = compare_runs((pe, oe), (pg, og))
            rep.add("cuda-graphs", f"{kind}: 4 replays == 4 eager steps", worst == 0,
                    "bitwise" if worst == 0 else f"max ulp {worst} at {where}")
        except Exception as e:  # noqa: BLE001 - a failed capture is a finding, not a crash
            rep.add("cuda-graphs", f"{kind}: capture and replay", False, repr(e)[:300])

    # Capturing a non-capturable step must raise (torch: "... capturable is False") and
    # change nothing.
    p = torch.nn.Parameter(init[1].clone())
    p.grad = grads[1].clone()
    opt = fo.Adam([p], lr=1e-3)
    opt.step()
    before = p.detach().clone()
    step_before = float(opt.state[p]["step"])
    raised = ""
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            opt.step()
    except Exception as e:  # noqa: BLE001
        raised = str(e)
    torch.cuda.synchronize()
    ok = "capturable" in raised and torch.equal(p.detach(), before) and float(opt.state[p]["step"]) == step_before
    rep.add("cuda-graphs", "capture of a non-capturable Adam step raises, changes nothing", ok, raised[:160])


def check_cuda_no_sync(rep: Report) -> None:
    """Steady-state capturable / fused / AMP steps never wait for the GPU (torch's sync
    debug mode turns any synchronizing call into an error)."""
    import fusekit.optim as fo

    dev = "cuda"
    configs = [("Adam fused + AMP + max_grad_norm",
                lambda ps: fo.Adam(ps, lr=torch.tensor(1e-3, device=dev), fused=True, max_grad_norm=1.0)),
               ("AdamW capturable, lr tensor", lambda ps: fo.AdamW(ps, lr=torch.tensor(1e-3, device=dev),
                                                                   capturable=True)),
               ("SGD fused + AMP (momentum)", lambda ps: fo.SGD(ps, lr=0.1, momentum=0.9, fused=True)),
               ("SGD fused + AMP (no state)", lambda ps: fo.SGD(ps, lr=0.1, fused=True)),
               ("Adagrad fused + AMP", lambda ps: fo.Adagrad(ps, lr=0.1, fused=True))]
    for label, make in configs:
        ps = [torch.nn.Parameter(_randn((n,), n, torch.float32).to(dev)) for n in (1000, 70001)]
        opt = make(ps)
        err = ""
        for s in range(3):
            set_grads(ps, s)
            if opt.defaults.get("fused"):
                opt.grad_scale = torch.ones((), device=dev)
                opt.found_inf = torch.zeros((), device=dev)
            if s == 0:
                opt.step()  # creates state
                continue
            torch.cuda.set_sync_debug_mode("error")
            try:
                opt.step()
            except RuntimeError as e:
                err = str(e)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        rep.add("cuda-no-sync", label, not err, err[:200])


def check_cuda_huge(rep: Report) -> None:
    """One bf16 tensor of 2^31 + 64 elements: 64-bit offsets in the step and the norm."""
    import fusekit.nn.utils as fu
    import fusekit.optim as fo

    n = 2**31 + 64
    p = torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16, device="cuda"))
    p.grad = torch.full((n,), 2.0, dtype=torch.bfloat16, device="cuda")
    fo.SGD([p], lr=0.25).step()
    ok = bool((p.detach() == 0.5).all())
    rep.add("cuda-huge", "SGD bf16, 2^31+64 elements: every element updated", ok, f"first {p[0].item()} last {p[-1].item()}")
    total = fu.get_total_norm([p.grad]).item()
    # Sums of powers of two are exact in the fixed order until the top of the tree, where
    # 2^33 + 256 rounds to 2^33 in float32: the norm is sqrt(2^33) in float32, rounded to
    # bfloat16 (the tensor's dtype, torch's result dtype).
    expect = float(torch.tensor(2.0**33, dtype=torch.float32).sqrt().to(torch.bfloat16))
    rep.add("cuda-huge", "norm bf16, 2^31+64 elements", total == expect, f"{total!r} (expected {expect!r})")
    del p
    torch.cuda.empty_cache()


SECTIONS = ["cpu-isa", "cuda-kernels", "cuda-split", "cuda-norms", "cuda-graphs", "cuda-no-sync", "cuda-huge"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusekit.check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                    help="cpu: the ISA comparison; cuda: GPU vs CPU kernels; all (default): both where present")
    ap.add_argument("--quick", action="store_true", help="smaller inputs and fewer variants (sanitizer runs)")
    ap.add_argument("--huge", action="store_true", help="also the 2^31+-element case (~9 GB of GPU memory)")
    ap.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--json", help="write every check's result here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print passing checks too")
    ap.add_argument("--_isa-worker", dest="isa_worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.isa_worker:
        _isa_worker(args.isa_worker, args.quick)
        return 0

    import fusekit

    info = fusekit.build_info()
    print(f"fusekit {fusekit.__version__}: torch {info['torch']}, CPU ISA {info['cpu_isa']}, CUDA built "
          f"{info['cuda_built']} (archs {','.join(info['cuda_archs']) or '-'}), CUDA devices {info['cuda_devices']}")
    cuda_ok = fusekit.cuda_available() and torch.cuda.is_available()
    if args.device == "cuda" and not cuda_ok:
        print("FAIL --device cuda: no usable CUDA device or fusekit was built without CUDA kernels")
        return 1
    wanted = SECTIONS if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    if not args.huge and not args.only:
        wanted = [s for s in wanted if s != "cuda-huge"]
    if args.device == "cpu" or not cuda_ok:
        wanted = [s for s in wanted if not s.startswith("cuda")]
    if args.device == "cuda":
        wanted = [s for s in wanted if s != "cpu-isa"]
    if not cuda_ok and args.device == "all":
        print("note: no CUDA device / kernels: CPU checks only")
    rep = Report(verbose=args.verbose)
    run = {"cpu-isa": lambda: check_cpu_isas(rep, args.quick),
           "cuda-kernels": lambda: check_cuda_kernels(rep, args.quick),
           "cuda-split": lambda: check_cuda_split(rep, args.quick),
           "cuda-norms": lambda: check_cuda_norms(rep, args.quick),
           "cuda-graphs": lambda: check_cuda_graphs(rep),
           "cuda-no-sync": lambda: check_cuda_no_sync(rep),
           "cuda-huge": lambda: check_cuda_huge(rep)}
    for s in wanted:
        t = time.time()
        try:
            run[s]()
        except Exception as e:  # noqa: BLE001 - report and go on with the other sections
            rep.add(s, "section raised", False, f"{type(e).__name__}: {e}"[:400])
        rep.section_done(s, time.time() - t)
    n, bad = len(rep.rows), len(rep.failed)
    print(f"{n - bad} passed, {bad} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build": info, "sections": wanted, "checks": rep.rows}, f, indent=1, default=str)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
