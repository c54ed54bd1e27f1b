"""max_grad_norm inside the fused step == torch's clip_grad_norm_ followed by step;
grad-norm telemetry; AutoClip."""

import pytest
import torch

import fusekit.optim as fo
from optim_cases import NAMES

KW = {"SGD": dict(lr=0.05, momentum=0.9), "RMSprop": dict(lr=1e-3, centered=True)}


def grads_for(step, shapes, scale_every=3):
    g = torch.Generator().manual_seed(100 + step)
    scale = 10.0 if step % scale_every == 0 else 0.001  # some steps clipped (norm ~1500), some not (~0.15)
    return [torch.randn(s, generator=g) * scale for s in shapes]


@pytest.mark.parametrize("max_norm", [1.0, "tensor"])
@pytest.mark.parametrize("name", NAMES)
def test_fused_clip_equals_torch_clip_then_step(name, max_norm, device):
    shapes = [(30, 784), (30,), (10, 30), (10,), (0,)]
    init = [torch.randn(s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(shapes)]
    pa = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    pb = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    mn = torch.tensor(1.0, device=device) if max_norm == "tensor" else max_norm
    ref = getattr(torch.optim, name)(pa, foreach=False, **KW.get(name, {}))
    ours = getattr(fo, name)(pb, max_grad_norm=mn, **KW.get(name, {}))
    for step in range(12):
        gs = grads_for(step, shapes)
        for p, g in zip(pa, gs):
            p.grad = g.to(device).clone()
        for p, g in zip(pb, gs):
            p.grad = g.to(device).clone()
        norm = torch.nn.utils.clip_grad_norm_(pa, 1.0)
        ref.step()
        ours.step()
        torch.testing.assert_close(ours.last_grad_norm, norm)
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b, a)
    clipped = ours.grad_norms.clipped()
    assert clipped.numel() == 12 and clipped[0] and not clipped[1]


def test_clip_with_grad_scaler_and_skipped_step():
    torch.manual_seed(0)
    ma = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    mb = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    mb.load_state_dict(ma.state_dict())
    x, y = torch.randn(32, 8) * 5, torch.randn(32, 1)
    oa = torch.optim.Adam(ma.parameters(), foreach=False)
    ob = fo.Adam(mb.parameters(), max_grad_norm=0.5)
    sa = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    sb = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for step in range(6):
        for m, o, s, which in ((ma, oa, sa, "torch"), (mb, ob, sb, "fusekit")):
            o.zero_grad()
            s.scale(torch.nn.functional.mse_loss(m(x), y)).backward()
            if step == 2:
                next(m.parameters()).grad[0, 0] = float("inf")
            if which == "torch":
                s.unscale_(o)
                torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            s.step(o)
            s.update()
    for a, b in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(b, a)
    assert ob.grad_norms.count == 5  # the skipped step recorded nothing
    assert ob.state[next(mb.parameters())]["step"].item() == 5


def test_track_grad_norm_without_clipping_and_state_dict():
    p = torch.nn.Parameter(torch.zeros(100))
    opt = fo.SGD([p], lr=0.1, track_grad_norm=True, grad_norm_history=8)
    norms = []
    for step in range(11):
        p.grad = torch.full((100,), float(step + 1))
        opt.step()
        norms.append(10.0 * (step + 1))
    torch.testing.assert_close(opt.grad_norms.values(), torch.tensor(norms[-8:]))
    assert opt.grad_norms.clipped_fraction() == 0.0
    torch.testing.assert_close(p.detach(), torch.full((100,), -0.1 * sum(range(1, 12))))
    sd = opt.state_dict()
    other = fo.SGD([torch.nn.Parameter(torch.zeros(100))], lr=0.1, track_grad_norm=True, grad_norm_history=8)
    other.load_state_dict(sd)
    assert other.grad_norms.count == 11
    torch.testing.assert_close(other.grad_norms.values(), opt.grad_norms.values())
    q = other.param_groups[0]["params"][0]
    q.grad = torch.full((100,), 0.5)
    other.step()
    torch.testing.assert_close(other.grad_norms.values()[-1], torch.tensor(5.0))
    assert other.grad_norms.values().numel() == 8
    # a torch optimizer ignores the extra key
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(100))], lr=0.1).load_state_dict(sd)


def test_percentile_summary_and_warning():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = fo.SGD([p], lr=0.0, max_grad_norm=1.5)
    for v in [1.0, 2.0, 3.0, 0.5]:
        p.grad = torch.full((4,), v / 2)  # norm = v
        opt.step()
    gn = opt.grad_norms
    assert gn.percentile(50) == pytest.approx(1.5)
    assert gn.clipped_fraction() == 0.5
    assert "WARNING" not in gn.summary()
    p.grad = torch.full((4,), 5.0)
    opt.step()
    assert gn.clipped_fraction() == 0.6
    assert "more than half of the updates were clipped" in gn.summary()
    assert "lower the learning rate" in gn.summary()


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    p = torch.nn.Parameter(torch.zeros(10))
    opt = fo.AdamW([p], max_grad_norm=fo.AutoClip(percentile=90, history=50, min_history=10))
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        p.grad = torch.randn(10, generator=g) * torch.rand(1, generator=g).item() * 3
        opt.step()
    out = opt.grad_norms.plot(str(tmp_path / "norms.png"))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_autoclip_clips_about_the_tail_of_a_stationary_distribution():
    p = torch.nn.Parameter(torch.zeros(64))
    ac = fo.AutoClip(percentile=90.0, history=400, min_history=50)
    opt = fo.SGD([p], lr=0.0, max_grad_norm=ac)
    g = torch.Generator().manual_seed(0)
    for _ in range(1000):
        p.grad = torch.randn(64, generator=g) * torch.exp(torch.randn(1, generator=g))
        opt.step()
    clipped = opt.grad_norms.clipped()
    thr = opt.grad_norms.thresholds()
    assert torch.isinf(thr[:50]).all() and not clipped[:50].any()  # min_history: no clipping
    frac = clipped[200:].float().mean().item()
    assert 0.07 <= frac <= 0.13, frac
    assert opt.grad_norms.history == 1000


def test_bad_clip_arguments():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="Invalid max_grad_norm value: -1.0"):
        fo.Adam([p], max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="Tensor max_grad_norm must be 1-element"):
        fo.Adam([p], max_grad_norm=torch.ones(2))
    with pytest.raises(ValueError, match="AutoClip percentile must be in \\(0, 100\\]"):
        fo.AutoClip(percentile=0)
    with pytest.raises(ValueError, match="min_history <= history"):
        fo.AutoClip(history=10, min_history=20)
    with pytest.raises(ValueError, match="grad_norm_history must be >= 1"):
        fo.Adam([p], track_grad_norm=True, grad_norm_history=0)


def test_pickle_and_deepcopy_keep_clipping():
    import copy
    import io

    p = torch.nn.Parameter(torch.ones(3))
    opt = fo.Adam([p], max_grad_norm=fo.AutoClip(history=20, min_history=5))
    for _ in range(3):
        p.grad = torch.ones(3)
        opt.step()
    buf = io.BytesIO()
    torch.save(opt, buf)
    buf.seek(0)
    for other in (torch.load(buf, weights_only=False), copy.deepcopy(opt)):
        assert isinstance(other.max_grad_norm, fo.AutoClip) and other.grad_norms.count == 3
        q = other.param_groups[0]["params"][0]
        q.grad = torch.ones(3)
        other.step()
        assert other.grad_norms.count == 4
