"""Optimizer peers, each built on the same parameter list as fusekit's optimizer:
torch's best eager implementation (fused where torch has it for the device, else
foreach), torch.compile of torch's step, DeepSpeed's CPU optimizers, bitsandbytes'
32-bit optimizers and NVIDIA apex's fused CUDA optimizers, where importable."""
from __future__ import annotations

import glob
import importlib.util
import logging
import os

import torch

from .candidates import Candidate, quiet, timed_setup

PEERS = ["torch", "compile", "deepspeed", "bitsandbytes", "apex"]


def torch_best(name: str, params, kw: dict, device: str):
    """torch's fastest eager implementation of the optimizer on this device, and its label."""
    cls = getattr(torch.optim, name)
    try:
        opt = cls(params, fused=True, **kw)
        opt.step()  # fused may exist in the signature but not for this device (raises then)
        return opt, "fused"
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **kw), "foreach"


def _torch_eager(name, params, kw, device):
    opt, impl = torch_best(name, params, kw, device)
    return Candidate(f"torch {impl}", opt.step)


def _torch_compile(name, params, kw, device):
    """torch's step under torch.compile, as torch's "compiling the optimizer" recipe: lr a
    tensor (a float lr is a guarded constant, so a scheduler would recompile every step),
    the compiled function built once and reused. Setup (reported as compile time) runs two
    steps: the second step may take a second graph once state exists (SGD's momentum buffer
    is created by the first). Graphs compiled after that are reported as recompiles."""
    import torch._dynamo.utils as dynamo_utils

    kw = dict(kw, lr=torch.tensor(kw["lr"], device=device))
    opt = getattr(torch.optim, name)(params, **kw)

    @torch.compile(fullgraph=False)
    def step():
        opt.step()

    graphs = lambda: dynamo_utils.counters["stats"]["unique_graphs"]  # noqa: E731
    before = graphs()
    cand = timed_setup(lambda: Candidate("torch.compile", step), calls=2)
    compiled = graphs() - before
    cand.note = f"compile {cand.setup_s:.1f} s, {compiled} graph(s)"
    cand.finish = lambda entry: dict(compile_s=cand.setup_s, graphs=compiled,
                                     recompiles=graphs() - before - compiled)
    return cand


_DS = {"Adam": ("deepspeed.ops.adam", "DeepSpeedCPUAdam", dict(adamw_mode=False)),
       "AdamW": ("deepspeed.ops.adam", "DeepSpeedCPUAdam", dict(adamw_mode=True)),
       "Adagrad": ("deepspeed.ops.adagrad", "DeepSpeedCPUAdagrad", {})}


def deepspeed_built() -> bool:
    """Whether DeepSpeed's CPU optimizer ops are already JIT-built (torch's extension cache);
    the first build takes minutes on a small machine."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.expanduser("~/.cache/torch_extensions")
    return bool(glob.glob(os.path.join(root, "**", "cpu_adam*.so"), recursive=True))


def _deepspeed(name, params, kw, device):
    module, cls, extra = _DS[name]

    def make():
        with quiet():  # DeepSpeed logs its accelerator choice and the JIT build at import / first use
            import importlib

            ds_cls = getattr(importlib.import_module(module), cls)
            logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
            opt = ds_cls(params, **kw, **extra)
        return Candidate(f"deepspeed {cls.replace('DeepSpeed', '')}", opt.step)

    cand = timed_setup(make)
    cand.note = f"setup {cand.setup_s:.1f} s (JIT build or load)"
    return cand


_BNB = {"SGD": "SGD", "Adam": "Adam", "AdamW": "AdamW", "RMSprop": "RMSprop", "Adagrad": "Adagrad"}


def _bitsandbytes(name, params, kw, device):
    with quiet():  # bitsandbytes warns at import about optional CPU kernels it cannot load
        import bitsandbytes as bnb
    opt = getattr(bnb.optim, _BNB[name])(params, optim_bits=32, **kw)
    return Candidate(f"bnb {_BNB[name]} 32-bit", opt.step)


_APEX = {"SGD": ("FusedSGD", {}), "Adam": ("FusedAdam", dict(adam_w_mode=False)),
         "AdamW": ("FusedAdam", dict(adam_w_mode=True)), "Adagrad": ("FusedAdagrad", {})}


def _apex_optimizers():
    """apex.optimizers when it is NVIDIA's apex (the PyPI package named apex is unrelated)."""
    if importlib.util.find_spec("apex") is None:
        return None
    try:
        import apex.optimizers as ao
    except Exception:
        return None
    return ao if hasattr(ao, "FusedAdam") else None


def _apex(name, params, kw, device):
    cls, extra = _APEX[name]
    opt = getattr(_apex_optimizers(), cls)(params, **kw, **extra)
    return Candidate(f"apex {cls}", opt.step)


def available(device: str) -> dict[str, str]:
    """peer -> "" when usable on this device, else why not."""
    why = {"torch": "", "compile": ""}
    if importlib.util.find_spec("deepspeed") is None:
        why["deepspeed"] = "not installed"
    else:
        why["deepspeed"] = "" if device == "cpu" else "CPU optimizers only"
    why["bitsandbytes"] = "" if importlib.util.find_spec("bitsandbytes") else "not installed"
    if device != "cuda":
        why["apex"] = "CUDA only"
    else:
        why["apex"] = "" if _apex_optimizers() is not None else "NVIDIA apex not importable"
    return why


def covers(peer: str, name: str) -> bool:
    """Whether the peer has this optimizer."""
    return {"deepspeed": name in _DS, "bitsandbytes": name in _BNB, "apex": name in _APEX}.get(peer, True)


_MAKERS = {"torch": _torch_eager, "compile": _torch_compile, "deepspeed": _deepspeed,
           "bitsandbytes": _bitsandbytes, "apex": _apex}


def build(peer: str, name: str, params, kw: dict, device: str) -> Candidate:
    cand = _MAKERS[peer](name, params, kw, device)
    cand.extra["peer"] = peer
    return cand
