"""Shared fixtures for optimizer tests: parameter sets, gradient streams, optimizer pairs."""
from __future__ import annotations

import copy

import torch
from torch.testing._internal.common_optimizers import optim_db

import fusekit.optim as fo

NAMES = ["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]


def torch_cases(name: str) -> list[dict]:
    """Every hyper-parameter combination torch's own optimizer tests use (CPU inputs)."""
    info = next(i for i in optim_db if i.optim_cls.__name__ == name)
    out = []
    for inp in info.optim_inputs_func(device="cpu", dtype=torch.float32):
        kw = dict(inp.kwargs)
        if kw.get("differentiable") or kw.get("capturable"):
            continue
        out.append(kw)
    return out


# Extra combinations torch's list does not cover.
EXTRA = {
    "SGD": [dict(momentum=0.9, nesterov=True), dict(momentum=0.5, dampening=0.3, maximize=True, weight_decay=0.01)],
    "Adam": [dict(betas=(0.8, 0.99), eps=1e-6, amsgrad=True), dict(lr=torch.tensor(0.01)),
             dict(decoupled_weight_decay=True, weight_decay=0.1)],
    "AdamW": [dict(amsgrad=True, maximize=True), dict(lr=torch.tensor(0.01), weight_decay=0.05)],
    "NAdam": [dict(lr=torch.tensor(0.005), betas=(0.8, 0.95)), dict(decoupled_weight_decay=True, weight_decay=0.05)],
    "RMSprop": [dict(momentum=0.9), dict(centered=True), dict(lr=torch.tensor(0.003), alpha=0.9, eps=1e-6)],
    "Adagrad": [dict(lr_decay=0.1, maximize=True), dict(eps=1e-6, initial_accumulator_value=0.5)],
}


def all_cases(name: str) -> list[dict]:
    return torch_cases(name) + EXTRA[name]


def case_id(kw: dict) -> str:
    return ",".join(f"{k}={float(v) if torch.is_tensor(v) else v}" for k, v in kw.items()) or "defaults"


def make_params(dtype=torch.float32, device="cpu", seed=0):
    """Shapes of 0, 1, 7, 4097 elements, 2-D, a 4-D conv weight and non-contiguous views."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(0,), (), (1,), (7,), (4097,), (3, 0), (16, 9), (20, 4, 5, 5)]
    ps = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]
    # dense but transposed, and strided (non-dense) parameters
    ps.append(torch.randn(9, 6, generator=g, dtype=torch.float64).to(dtype).t())
    ps.append(torch.randn(5, 12, generator=g, dtype=torch.float64).to(dtype)[:, ::3])
    return [torch.nn.Parameter(p.to(device)) for p in ps]


def split_groups(params, kw, extra):
    """Two param groups; the second overrides some hyper-parameters."""
    half = len(params) // 2
    return [dict(params=params[:half]), dict(params=params[half:], **extra)]


def second_group_overrides(name):
    return {"SGD": dict(lr=0.05), "Adagrad": dict(lr=0.05, weight_decay=0.0)}.get(name, dict(lr=0.003, eps=1e-6))


def set_grads(params, step, seed=1, skip_some=True):
    g = torch.Generator().manual_seed(seed * 1000 + step)
    for i, p in enumerate(params):
        if skip_some and step % 5 == 3 and i % 4 == 1:
            p.grad = None  # a parameter without a gradient this step
            continue
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if p.is_complex():
            noise = torch.complex(noise, torch.randn(p.shape, generator=g, dtype=torch.float64))
        grad = (noise + 0.1 * p.detach().to(noise.dtype).cpu()).to(p.dtype).to(p.device)
        if p.grad is None:
            p.grad = torch.empty_like(p)
        p.grad.copy_(grad)


def make_pair(name, kw, params_a, params_b, groups=True):
    kw_torch = copy.deepcopy(kw)
    kw_fk = copy.deepcopy(kw)
    extra = second_group_overrides(name)
    ga = split_groups(params_a, kw, extra) if groups else params_a
    gb = split_groups(params_b, kw, extra) if groups else params_b
    ref = getattr(torch.optim, name)(ga, foreach=False, **kw_torch)
    ours = getattr(fo, name)(gb, **kw_fk)
    return ref, ours
