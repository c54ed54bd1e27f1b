"""The 8-bit optimizers (fusekit.optim.*8bit): each step against the NumPy reference of the
algorithm (tests/lowp_reference.torch_rule_8bit_step), bitsandbytes' optimizers where it is
installed (parity, checkpoints both ways), torch where the state stays 32-bit, and the
features every fusekit optimizer has."""
import copy
import io
import warnings

import numpy as np
import pytest
import torch

import fusekit.optim as fo
import lowp_reference as R

# class -> (reference rule, constructor kwargs, reference hyper-parameters of those kwargs)
CASES = {
    "Adam8bit": ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                 dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, decoupled=True)),
    "AdamW8bit": ("adam", dict(lr=3e-3), dict(lr=3e-3, weight_decay=1e-2, decoupled=True)),
    "NAdam8bit": ("nadam", dict(lr=4e-3, weight_decay=0.05, momentum_decay=6e-3),
                  dict(lr=4e-3, weight_decay=0.05, momentum_decay=6e-3)),
    "SGD8bit": ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=0.01, dampening=0.5, nesterov=True),
                dict(lr=0.05, momentum=0.9, weight_decay=0.01)),  # dampening and nesterov ignored
    "RMSprop8bit": ("rmsprop", dict(lr=1e-3, alpha=0.9, weight_decay=0.01, momentum=0.5),
                    dict(lr=1e-3, alpha=0.9, weight_decay=0.01)),  # momentum ignored
    "Adagrad8bit": ("adagrad", dict(lr=0.05, weight_decay=0.01), dict(lr=0.05, weight_decay=0.01)),
}
NAMES = list(CASES)
STATES = {"adam": 2, "nadam": 2}


def memory_order(t: torch.Tensor) -> np.ndarray:
    """A dense tensor's elements in memory order (8-bit blocks run over memory)."""
    return torch.as_strided(t.detach(), (t.numel(),), (1,), t.storage_offset()).float().clone().numpy()


def make_params(dtype):
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(4097, generator=g), torch.randn(64, 65, generator=g),
          torch.randn(64, 8, 3, 3, generator=g).to(memory_format=torch.channels_last),
          torch.randn(3, 100, generator=g)]  # the last one is below min_8bit_size: float32 state
    return [torch.nn.Parameter(p.to(dtype)) for p in ps]


def set_grads(ps, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in ps:
        p.grad = (torch.randn(p.shape, generator=g) * (1 + step % 3)).to(p.dtype).to(
            memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)


def assert_codes(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Equal codes, except where the reference's and the kernel's float32 arithmetic (equal up
    to an ulp) fall on two sides of a code boundary: there adjacent codes, and rare."""
    diff = ours != ref
    if diff.any():
        assert np.abs(ours[diff].astype(int) - ref[diff].astype(int)).max() == 1, what
        assert diff.sum() <= max(2, diff.size // 10_000), (what, int(diff.sum()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_each_step_matches_the_numpy_reference(name, dtype):
    rule, kw, hyper = CASES[name]
    ps = make_params(dtype)
    opt = getattr(fo, name)(ps, **kw)
    dt = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    n = STATES.get(rule, 1)
    for step in range(1, 7):
        before = []
        for p in ps[:3]:
            st = opt.state.get(p)
            if st:
                codes = [memory_order(st[f"state{k}"]).astype(np.uint8) for k in range(1, n + 1)]
                absmax = [st[f"absmax{k}"].clone().numpy() for k in range(1, n + 1)]
                mu = st["mu_product"].item() if "mu_product" in st else None
            else:  # fresh state: code 0 with absmax 0 (decodes to zero, as bitsandbytes')
                blocks = -(-p.numel() // 256)
                codes, absmax = [np.zeros(p.numel(), np.uint8)] * n, [np.zeros(blocks, np.float32)] * n
                mu = 1.0 if rule == "nadam" else None
            before.append((memory_order(p), codes, absmax, mu))
        set_grads(ps, step)
        grads = [memory_order(p.grad) for p in ps[:3]]
        opt.step()
        for p, g, (p0, codes, absmax, mu) in zip(ps, grads, before):
            rp, rc, ra, rmu = R.torch_rule_8bit_step(rule, p0, g, codes, absmax, step=step, mu_product=mu,
                                                    param_dtype=dt, **hyper)
            st = opt.state[p]
            assert st["step"].item() == step
            np.testing.assert_allclose(memory_order(p), rp, rtol=1e-5, atol=1e-6)
            for k in range(n):
                s = st[f"state{k + 1}"]
                assert s.dtype == torch.uint8 and s.stride() == p.stride()
                assert_codes(memory_order(s), rc[k], f"state{k + 1} at step {step}")
                np.testing.assert_allclose(st[f"absmax{k + 1}"].numpy(), ra[k], rtol=1e-6)
            if rmu is not None:
                assert st["mu_product"].item() == pytest.approx(float(rmu), rel=1e-6)


TORCH_FP32 = {"Adam8bit": ("AdamW", dict(weight_decay=0.0)), "AdamW8bit": ("AdamW", {}), "NAdam8bit": ("NAdam", {}),
              "SGD8bit": ("SGD", {}), "RMSprop8bit": ("RMSprop", {}), "Adagrad8bit": ("Adagrad", {})}


@pytest.mark.parametrize("name", NAMES)
def test_small_tensors_keep_torchs_float32_state(name):
    """Below min_8bit_size (4096 elements) the state is float32 and the step is torch's."""
    _, kw, _ = CASES[name]
    tname, extra = TORCH_FP32[name]
    tkw = {k: v for k, v in kw.items() if k not in ("dampening", "nesterov")}
    if name == "RMSprop8bit":
        tkw.pop("momentum")
    for dtype in (torch.float32, torch.bfloat16):
        pa = [torch.nn.Parameter(torch.randn(4095).to(dtype)), torch.nn.Parameter(torch.randn(7, 9).to(dtype))]
        pb = [torch.nn.Parameter(p.detach().float()) for p in pa]
        ours = getattr(fo, name)(pa, **kw)
        ref = getattr(torch.optim, tname)(pb, foreach=False, **{**extra, **tkw})
        for step in range(5):
            for a, b in zip(pa, pb):
                a.grad = torch.randn(a.shape).to(dtype)
                b.grad = a.grad.float()
            ours.step()
            ref.step()
            for b in pb:  # the bf16 parameter is rounded each step: so is the reference's
                b.data = b.data.to(dtype).float()
        for a, b in zip(pa, pb):
            torch.testing.assert_close(a.float(), b.detach())
            st = ours.state[a]
            assert st["state1"].dtype == torch.float32 and "absmax1" not in st and "qmap1" not in st
    p = torch.nn.Parameter(torch.randn(4096))
    opt = getattr(fo, name)([p], **kw)
    p.grad = torch.randn(4096)
    opt.step()
    assert opt.state[p]["state1"].dtype == torch.uint8 and opt.state[p]["absmax1"].shape == (16,)


def test_state_memory_per_parameter():
    """8-bit: 2 codes + 2 float32 absmax per 256 elements = 2.03 bytes per parameter (Adam);
    bf16 state: 4; torch's fp32 Adam: 8."""
    def state_bytes(opt, p):
        return sum(t.nbytes for k, t in opt.state[p].items() if torch.is_tensor(t) and k not in ("step", "qmap1", "qmap2"))
    for make, want in ((lambda q: fo.AdamW8bit(q), 2 + 8 / 256), (lambda q: fo.AdamW(q, state_dtype=torch.bfloat16), 4),
                       (lambda q: fo.AdamW(q), 8)):
        p = torch.nn.Parameter(torch.randn(1 << 20))
        opt = make([p])
        p.grad = torch.randn_like(p)
        opt.step()
        assert state_bytes(opt, p) / p.numel() == want
    assert 2 + 8 / 256 <= 2.1


# ---- bitsandbytes --------------------------------------------------------------------------

def _bnb():
    return pytest.importorskip("bitsandbytes")


BNB_KW = {"Adam8bit": {}, "AdamW8bit": dict(weight_decay=0.1), "SGD8bit": dict(lr=0.01, momentum=0.9),
          "RMSprop8bit": dict(lr=1e-3), "Adagrad8bit": {}}
BNB_TORCH = {"Adam8bit": ("AdamW", dict(weight_decay=0.0)), "AdamW8bit": ("AdamW", {}), "SGD8bit": ("SGD", {}),
             "RMSprop8bit": ("RMSprop", {}), "Adagrad8bit": ("Adagrad", {})}


def _run(make, p0, grads):
    p = torch.nn.Parameter(p0.clone())
    opt = make([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p, opt


@pytest.mark.parametrize("name", list(BNB_KW))
def test_parity_with_bitsandbytes(name):
    """30 steps on 256x257 random data: fusekit as close to fp32 torch as bitsandbytes (both
    round to the same 256 values; measured within 0.2% either way), closer to bitsandbytes
    than either is to fp32, and >= 90% of the codes equal to bitsandbytes' (its CPU quantizer
    rounds through a 65,536-point grid, fusekit to the nearest code)."""
    bnb = _bnb()
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(256, 257, generator=g)
    grads = [torch.randn(256, 257, generator=g) for _ in range(30)]
    kw = BNB_KW[name]
    ours, oo = _run(lambda p: getattr(fo, name)(p, **kw), p0, grads)
    theirs, ob = _run(lambda p: getattr(bnb.optim, name)(p, **kw), p0, grads)
    tname, extra = BNB_TORCH[name]
    ref, _ = _run(lambda p: getattr(torch.optim, tname)(p, foreach=False, **{**extra, **kw}), p0, grads)
    update = (ref - p0).norm()
    err_ours, err_bnb = ((ours - ref).norm() / update).item(), ((theirs - ref).norm() / update).item()
    assert err_ours <= 1.005 * err_bnb, (err_ours, err_bnb)
    assert ((ours - theirs).norm() / update).item() < err_bnb
    for k in ("state1", "state2"):
        if k in ob.state[theirs]:
            same = (oo.state[ours][k] == ob.state[theirs][k]).float().mean().item()
            assert same >= 0.9, (k, same)
            torch.testing.assert_close(oo.state[ours][k.replace("state", "qmap")], ob.state[theirs][k.replace("state", "qmap")],
                                       rtol=0, atol=0)


@pytest.mark.parametrize("name", list(BNB_KW))
def test_checkpoints_move_between_fusekit_and_bitsandbytes(name):
    bnb = _bnb()
    kw = BNB_KW[name]
    g = torch.Generator().manual_seed(1)
    init = [torch.randn(64, 80, generator=g), torch.randn(100, generator=g)]  # 8-bit and float32 state
    grads = [[torch.randn(t.shape, generator=g) for t in init] for _ in range(6)]

    def stepped(opt, ps, gs):
        for p, gr in zip(ps, gs):
            p.grad = gr.clone()
        opt.step()

    pa = [torch.nn.Parameter(t.clone()) for t in init]
    ours = getattr(fo, name)(pa, **kw)
    pb = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = getattr(bnb.optim, name)(pb, **kw)
    for s in range(3):
        stepped(ours, pa, grads[s])
        stepped(theirs, pb, grads[s])
    # the same layout: keys, nesting, dtypes, shapes; step an int
    sa, sb = ours.state_dict(), theirs.state_dict()
    for i in sb["state"]:
        a, b = sa["state"][i], sb["state"][i]
        assert set(a) == set(b) and a["step"] == b["step"] == 3 and type(a["step"]) is int
        qa, qb = a["__bnb_optimizer_quant_state__"], b["__bnb_optimizer_quant_state__"]
        assert set(qa) == set(qb)
        for k in qb:
            assert qa[k].dtype == qb[k].dtype and qa[k].shape == qb[k].shape, k
    assert set(sb["param_groups"][0]) <= set(sa["param_groups"][0])
    # fusekit -> bitsandbytes: loads, its state is ours, and it keeps training
    pc = [torch.nn.Parameter(p.detach().clone()) for p in pa]
    loaded = getattr(bnb.optim, name)(pc, **kw)
    loaded.load_state_dict(copy.deepcopy(sa))
    for a, c in zip(pa, pc):
        for k, v in ours.state[a].items():
            if torch.is_tensor(v) and k != "step":
                assert torch.equal(loaded.state[c][k], v), k
    stepped(loaded, pc, grads[3])
    assert loaded.state[pc[0]]["step"] == 4
    # bitsandbytes -> fusekit (through torch.save): its codes, then fusekit's steps
    buf = io.BytesIO()
    torch.save(sb, buf)
    buf.seek(0)
    pd = [torch.nn.Parameter(p.detach().clone()) for p in pb]
    back = getattr(fo, name)(pd, **kw)
    back.load_state_dict(torch.load(buf, weights_only=True))
    for b, d in zip(pb, pd):
        for k, v in theirs.state[b].items():
            got = back.state[d][k]
            if k == "step":
                assert got.item() == v
            else:
                assert got.dtype == v.dtype and torch.equal(got, v), k
    stepped(back, pd, grads[3])
    assert back.state[pd[0]]["step"].item() == 4


def test_fusekit_checkpoint_resumes_bitwise():
    init = [torch.randn(64, 80), torch.randn(300)]
    grads = [[torch.randn(t.shape) for t in init] for _ in range(8)]
    pa = [torch.nn.Parameter(t.clone()) for t in init]
    a = fo.AdamW8bit(pa, lr=1e-2)
    pb = [torch.nn.Parameter(t.clone()) for t in init]
    b = fo.AdamW8bit(pb, lr=1e-2)
    for s, gs in enumerate(grads):
        for p, q, gr in zip(pa, pb, gs):
            p.grad, q.grad = gr.clone(), gr.clone()
        a.step()
        b.step()
        if s == 3:  # b restarts from its checkpoint
            buf = io.BytesIO()
            torch.save(b.state_dict(), buf)
            buf.seek(0)
            b = fo.AdamW8bit(pb, lr=1e-2)
            b.load_state_dict(torch.load(buf, weights_only=True))
    for p, q in zip(pa, pb):
        assert torch.equal(p, q)
        for k, v in a.state[p].items():
            assert torch.equal(b.state[q][k], v), k


def test_checkpoint_formats_that_cannot_be_cast_are_rejected():
    p = torch.nn.Parameter(torch.randn(5000))
    small = fo.AdamW8bit([p], min_8bit_size=10_000)  # float32 state for p
    p.grad = torch.randn(5000)
    small.step()
    q = torch.nn.Parameter(p.detach().clone())
    big = fo.AdamW8bit([q])
    with pytest.raises(ValueError, match="min_8bit_size"):
        big.load_state_dict(small.state_dict())
    big_sd = fo.AdamW8bit([q])
    q.grad = torch.randn(5000)
    big_sd.step()
    sd = big_sd.state_dict()
    sd["state"][0]["__bnb_optimizer_quant_state__"]["qmap1"] = torch.linspace(-1, 1, 256)
    fresh = fo.AdamW8bit([torch.nn.Parameter(q.detach().clone())])
    with pytest.raises(ValueError, match="dynamic map"):
        fresh.load_state_dict(sd)


# ---- constructors ---------------------------------------------------------------------------

def test_constructor_arguments_follow_bitsandbytes():
    p = [torch.nn.Parameter(torch.randn(10))]
    with pytest.raises(ValueError, match="amsgrad"):
        fo.Adam8bit(p, amsgrad=True)
    with pytest.raises(ValueError, match="optim_bits"):
        fo.AdamW8bit(p, optim_bits=8)
    with pytest.raises(NotImplementedError, match="momentum"):
        fo.SGD8bit(p, lr=0.1)
    with pytest.raises(TypeError):
        fo.SGD8bit(p)  # lr has no default
    with pytest.raises(NotImplementedError, match="Centered"):
        fo.RMSprop8bit(p, centered=True)
    with pytest.raises(NotImplementedError, match="alpha"):
        fo.RMSprop8bit(p, alpha=0.0)
    with pytest.raises(ValueError, match="accumulator"):
        fo.Adagrad8bit(p, initial_accumulator_value=0.1)
    with pytest.raises(ValueError, match="Lr Decay"):
        fo.Adagrad8bit(p, lr_decay=0.1)
    for bad in (dict(lr=-1.0), dict(eps=-1e-8), dict(weight_decay=-0.1), dict(betas=(1.0, 0.999))):
        with pytest.raises(ValueError):
            fo.Adam8bit(p, **bad)
    with pytest.raises(ValueError):
        fo.SGD8bit(p, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="min_8bit_size"):
        fo.Adam8bit(p, min_8bit_size=-1)
    assert fo.AdamW8bit(p).defaults["weight_decay"] == 1e-2 and fo.Adam8bit(p).defaults["weight_decay"] == 0

    class Args:
        optim_bits, min_8bit_size, max_unorm, skip_zeros = 8, 16, 0.0, False
    q = torch.nn.Parameter(torch.randn(20))
    opt = fo.Adam8bit([q], args=Args())  # args replaces min_8bit_size, as bitsandbytes
    q.grad = torch.randn(20)
    opt.step()
    assert opt.state[q]["state1"].dtype == torch.uint8
    Args.max_unorm = 1.0
    with pytest.raises(NotImplementedError, match="max_unorm"):
        fo.Adam8bit([q], args=Args())
    Args.max_unorm, Args.optim_bits = 0.0, 32
    with pytest.raises(NotImplementedError, match="32-bit"):
        fo.Adam8bit([q], args=Args())
    with pytest.warns(UserWarning, match="is_paged"):
        fo.AdamW8bit([q], is_paged=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fo.AdamW8bit([q])


# ---- what every fusekit optimizer has -----------------------------------------------------

def _model(dtype=torch.float32):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 1)).to(dtype)
    return m, torch.randn(128, 64).to(dtype), torch.randn(128, 1).to(dtype)


@pytest.mark.parametrize("name", NAMES)
def test_clipping_inside_the_step_is_clip_then_step(name):
    _, kw, _ = CASES[name]
    ma, x, y = _model()
    mb, _, _ = _model()
    a = getattr(fo, name)(ma.parameters(), min_8bit_size=1024, max_grad_norm=0.5, **kw)
    b = getattr(fo, name)(mb.parameters(), min_8bit_size=1024, **kw)
    for _ in range(4):
        for m in (ma, mb):
            m.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(mb.parameters(), 0.5)
        a.step()
        b.step()
    for p, q in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(p, q)
        for k, v in b.state[q].items():
            if v.dtype == torch.uint8:
                assert (a.state[p][k] != v).float().mean() < 1e-3, k
            else:
                torch.testing.assert_close(a.state[p][k], v)
    assert a.grad_norms.values().numel() == 4


@pytest.mark.parametrize("name", NAMES)
def test_skipped_amp_step_changes_nothing(name):
    _, kw, _ = CASES[name]
    m, x, y = _model()
    opt = getattr(fo, name)(m.parameters(), min_8bit_size=1024, fused=True, **kw)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        del_ok = [p.detach().clone() for p in m.parameters()]
        state = {(id(p), k): v.clone() for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)}
        opt.grad_scale, opt.found_inf = torch.tensor(2.0), torch.tensor(1.0)
        opt.step()
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), del_ok))
        after = {(id(p), k): v for p, st in opt.state.items() for k, v in st.items() if torch.is_tensor(v)}
        assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
        del opt.grad_scale, opt.found_inf
        opt.step()
    assert opt.state[m[0].weight]["state1"].dtype == torch.uint8


def test_groups_schedulers_and_bf16_params():
    m, x, y = _model(torch.bfloat16)
    opt = fo.AdamW8bit([{"params": [m[0].weight]}, {"params": list(m[2].parameters()) + [m[0].bias], "lr": 1e-2}],
                       lr=3e-3, min_8bit_size=1024)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[3e-3, 1e-2], total_steps=40)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x).float(), y.float())
        loss.backward()
        opt.step()
        sched.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    assert opt.state[m[0].weight]["state1"].dtype == torch.uint8
    assert opt.state[m[2].bias]["state1"].dtype == torch.float32  # 1 element: 32-bit, float32 as bitsandbytes


# ---- the quantizer itself --------------------------------------------------------------------

def test_cpu_block_encoder_equals_the_scalar_rule():
    """The vectorized 8-bit encoder/decoder of this CPU's ISA (AVX-512: arithmetic codes with an
    exact fallback per lane; VBMI byte-lookup decoding) against quant8.h's scalar functions, on
    every 97th float32 in [-1, 1], every entry and midpoint's neighbourhood and NaNs, with
    absmax 1, 3 and 0.7 (stride 1, every float, passes too: about 3 minutes)."""
    from fusekit import _C

    assert _C.quant8_mismatches(97) == 0


def test_scalar_quantizer_native_checks(tmp_path):
    """tests/native/test_quant8.cpp in its quick mode: quant8.h's scalar rule against a
    brute-force nearest-entry scan (the full mode also walks every float32 in [-1, 1])."""
    import os
    import shutil
    import subprocess

    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path / "test_quant8"
    subprocess.run([cxx, "-std=c++17", "-O2", "-I", os.path.join(root, "csrc", "include"),
                    os.path.join(root, "tests", "native", "test_quant8.cpp"), "-o", str(exe)], check=True)
    p = subprocess.run([str(exe), "quick"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "all quant8 checks passed" in p.stdout, p.stdout[-2000:]
