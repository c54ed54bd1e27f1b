"""Parity with torch.optim's for-loop implementation (the reference, architecture.md §3)."""
import pytest
import torch

from optim_cases import NAMES, all_cases, case_id, make_pair, make_params, set_grads

CASES = [(n, kw) for n in NAMES for kw in all_cases(n)]


def run_pair(name, kw, dtype, device, steps=20, scheduler=True):
    pa, pb = make_params(dtype, device), make_params(dtype, device)
    ref, ours = make_pair(name, kw, pa, pb)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5) for o in (ref, ours)] if scheduler else []
    for step in range(steps):
        set_grads(pa, step)
        set_grads(pb, step)
        ref.step()
        ours.step()
        for s in scheds:
            s.step()
    return pa, pb, ref, ours


def assert_same_state(ref, ours, pa, pb):
    for a, b in zip(pa, pb):
        sa, sb = ref.state.get(a, {}), ours.state.get(b, {})
        assert set(sa) == set(sb), (set(sa), set(sb))
        for k in sa:
            if torch.is_tensor(sa[k]):
                torch.testing.assert_close(sb[k].cpu(), sa[k].cpu(), msg=lambda m: f"state {k}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{case_id(kw)}" for n, kw in CASES])
def test_parity_with_torch(name, kw, dtype, device):
    pa, pb, ref, ours = run_pair(name, kw, dtype, device)
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b, a)
        assert b.stride() == a.stride()
    assert_same_state(ref, ours, pa, pb)
    # the run really moved the parameters
    assert any((a.detach() - b0).abs().max() > 1e-4 for a, b0 in zip(pa, make_params(dtype, device)) if a.numel())


@pytest.mark.parametrize("name", NAMES)
def test_complex_params_match_torch(name, device):
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(5, 3, dtype=torch.complex64, generator=g), torch.randn(11, dtype=torch.complex64, generator=g)]
    pa = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    pb = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    kw = {"SGD": dict(lr=0.1, momentum=0.9)}.get(name, {})
    ref = getattr(torch.optim, name)(pa, foreach=False, **kw)
    import fusekit.optim as fo

    ours = getattr(fo, name)(pb, **kw)
    for step in range(10):
        set_grads(pa, step, skip_some=False)
        set_grads(pb, step, skip_some=False)
        ref.step()
        ours.step()
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("name", NAMES)
def test_closure_hooks_add_param_group_zero_grad(name):
    import fusekit.optim as fo

    pa, pb = make_params(), make_params()
    ref = getattr(torch.optim, name)(pa[:5], foreach=False)
    ours = getattr(fo, name)(pb[:5])
    calls = []
    ours.register_step_pre_hook(lambda opt, a, k: calls.append("pre"))
    ours.register_step_post_hook(lambda opt, a, k: calls.append("post"))
    for step in range(6):
        if step == 3:
            ref.add_param_group({"params": pa[5:]})
            ours.add_param_group({"params": pb[5:]})
        for ps, opt in ((pa, ref), (pb, ours)):
            def closure(ps=ps, opt=opt):
                opt.zero_grad()
                loss = sum((p.float() ** 2).sum() for p in ps)
                loss.backward()
                return loss

            loss = opt.step(closure)
            assert torch.is_tensor(loss)
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b, a)
    assert calls == ["pre", "post"] * 6
    ours.zero_grad()
    assert all(p.grad is None for p in pb)


def test_global_hooks_and_profiler_label():
    import fusekit.optim as fo
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    p = torch.nn.Parameter(torch.ones(3))
    opt = fo.Adam([p])
    seen = []
    h1 = register_optimizer_step_pre_hook(lambda o, a, k: seen.append(("pre", type(o).__name__)))
    h2 = register_optimizer_step_post_hook(lambda o, a, k: seen.append(("post", type(o).__name__)))
    try:
        p.grad = torch.ones(3)
        with torch.profiler.profile() as prof:
            opt.step()
    finally:
        h1.remove()
        h2.remove()
    assert seen == [("pre", "Adam"), ("post", "Adam")]
    assert any(e.name == "Optimizer.step#Adam.step" for e in prof.events())
