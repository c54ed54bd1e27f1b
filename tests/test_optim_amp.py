"""AMP as torch does it: GradScaler unscales for the default optimizers; with fused=True
grad_scale / found_inf are read by the kernel, as by torch's fused optimizers."""
import pytest
import torch

import fusekit.optim as fo
from optim_cases import NAMES

KW = {"SGD": dict(lr=0.05, momentum=0.9, dampening=0.1), "Adam": dict(amsgrad=True), "AdamW": {},
      "NAdam": {}, "RMSprop": dict(momentum=0.5, centered=True), "Adagrad": {}}


def model_and_data(seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(32, 8)
    y = torch.randn(32, 1)
    return m, x, y


def train(opt_cls, kw, inf_steps, n=8):
    m, x, y = model_and_data()
    opt = opt_cls(m.parameters(), **kw)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=3)
    snapshots = []
    for step in range(n):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x), y)
        scaler.scale(loss).backward()
        if step in inf_steps:
            next(m.parameters()).grad[0, 0] = float("inf")
        before = ([p.detach().clone() for p in m.parameters()],
                  {k: v.clone() for st in opt.state.values() for k, v in st.items() if torch.is_tensor(v)})
        scaler.step(opt)
        scaler.update()
        snapshots.append((before, opt))
    return m, opt, scaler, snapshots


@pytest.mark.parametrize("fused", [None, True])
@pytest.mark.parametrize("name", NAMES)
def test_grad_scaler_matches_torch_including_skipped_steps(name, fused):
    inf_steps = {0, 4}
    ma, oa, sa, _ = train(lambda p, **k: getattr(torch.optim, name)(p, foreach=False, **k), KW[name], inf_steps)
    mb, ob, sb, _ = train(lambda p, **k: getattr(fo, name)(p, fused=fused, **k), KW[name], inf_steps)
    assert ob._step_supports_amp_scaling is bool(fused)  # torch's contract: in-kernel unscaling is opt-in
    for a, b in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(b, a)
    for a, b in zip(ma.parameters(), mb.parameters()):
        for k, v in oa.state[a].items():
            torch.testing.assert_close(ob.state[b][k], v)
    assert sa.get_scale() == sb.get_scale()


STORAGE = {"plain": (torch.float32, {}), "bf16-state": (torch.float32, dict(state_dtype=torch.bfloat16)),
           "bf16-master": (torch.bfloat16, dict(master_weights=True))}


@pytest.mark.parametrize("storage", list(STORAGE))
@pytest.mark.parametrize("name", NAMES)
def test_skipped_step_changes_nothing(name, storage):
    m, x, y = model_and_data()
    dtype, extra = STORAGE[storage]
    m, x, y = m.to(dtype), x.to(dtype), y.to(dtype)
    opt = getattr(fo, name)(m.parameters(), fused=True, **KW[name], **extra)  # the kernel reads found_inf
    for first in (True, False):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        params = [p.detach().clone() for p in m.parameters()]
        grads = [p.grad.clone() for p in m.parameters()]
        state = {(id(p), k): v.clone() for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)}
        opt.grad_scale = torch.tensor(4.0)
        opt.found_inf = torch.tensor(1.0)
        opt.step()
        for p, before in zip(m.parameters(), params):
            assert torch.equal(p, before)
        for p, g in zip(m.parameters(), grads):
            assert torch.equal(p.grad, g)
        after = {(id(p), k): v for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)}
        if first and name != "Adagrad":
            assert all(len(st) == 0 for st in opt.state.values())  # no first-step buffers created
        else:
            assert after.keys() == state.keys()
            for k in state:
                assert torch.equal(after[k], state[k]), k
        del opt.grad_scale, opt.found_inf
        opt.step()  # a real step, so the second round has state


def test_grad_scale_unscales_and_writes_back():
    p = torch.nn.Parameter(torch.ones(5))
    q = torch.nn.Parameter(torch.ones(5))
    a = fo.SGD([p], lr=0.1, fused=True)
    b = fo.SGD([q], lr=0.1)
    g = torch.arange(5.0)
    p.grad = g * 8
    q.grad = g.clone()
    a.grad_scale = torch.tensor(8.0)
    a.found_inf = torch.tensor(0.0)
    a.step()
    b.step()
    torch.testing.assert_close(p, q)
    torch.testing.assert_close(p.grad, g)  # unscaled gradient stored back, as torch's fused kernels do
