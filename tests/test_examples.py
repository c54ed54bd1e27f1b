"""The examples/ scripts: each runs with --quick in a subprocess and its summary.json is checked
(accuracies against the thresholds the source documents' networks reach on the digits, plots
written, every reported figure defined); the MNIST readers and the convnet's two builds are
checked directly."""
import gzip
import json
import math
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")  # the digits ship with scikit-learn (in the test extras)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, out) -> tuple:
    """Runs examples/<name>.py --quick --out <out>; returns (summary, stdout)."""
    cmd = [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f), p.stdout


def assert_pngs(out, names) -> None:
    for n in names:
        path = os.path.join(out, n)
        assert os.path.isfile(path), f"{n} was not written"
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == PNG_MAGIC and os.path.getsize(path) > 1000, f"{n} is not a PNG image"


@pytest.fixture(scope="module")
def nielsen(tmp_path_factory):
    out = tmp_path_factory.mktemp("nielsen")
    return run_example("nielsen_digits", out) + (out,)


@pytest.fixture(scope="module")
def greedy(tmp_path_factory):
    out = tmp_path_factory.mktemp("greedy")
    return run_example("greedy_pretraining", out) + (out,)


@pytest.fixture(scope="module")
def lowp(tmp_path_factory):
    out = tmp_path_factory.mktemp("lowp")
    return run_example("lowp_state", out) + (out,)


@pytest.fixture(scope="module")
def instability(tmp_path_factory):
    out = tmp_path_factory.mktemp("instability")
    return run_example("instability_workflow", out) + (out,)


def test_nielsen_accuracies(nielsen):
    s, _, out = nielsen
    assert s["dataset"] == "digits"
    assert s["mlp_accuracy"] >= 0.90
    assert s["convnet_accuracy"] >= 0.95
    # Same init, batches and update rule: fusekit's SGD must train the MLP as torch's does.
    assert abs(s["mlp_accuracy"] - s["torch_reference_accuracy"]["mlp"]) <= 0.02
    assert s["torch_reference_accuracy"]["convnet"] >= 0.95
    assert_pngs(out, ["mlp.png", "convnet.png", "convnet_grad_norms.png"])


def test_nielsen_epoch_seconds(nielsen):
    s, stdout, _ = nielsen
    for net in ("mlp", "convnet"):
        t = s["epoch_seconds"][net]
        for impl in ("fusekit", "torch"):
            assert math.isfinite(t[impl]) and t[impl] > 0
            lo, hi = t[impl + "_range"]
            assert lo <= t[impl] <= hi
        assert t["torch_over_fusekit"] == pytest.approx(t["torch"] / t["fusekit"])
    assert "not a benchmark" in s["epoch_seconds_note"]
    assert 0.0 <= s["convnet_clipped_fraction"] <= 1.0
    assert "mlp epoch 1/" in stdout  # progress is printed


def test_greedy_pretraining(greedy):
    s, _, out = greedy
    assert s["pretrained_accuracy"] >= 0.85
    assert s["random_init_accuracy"] >= 0.85
    layers = s["reconstruction_losses"]
    assert [r["sizes"] for r in layers] == [[64, 64], [64, 32]]
    for r in layers:  # each autoencoder learned: far below its start and below predicting the mean
        assert r["final_validation_mse"] < 0.5 * r["initial_validation_mse"]
        assert r["final_validation_mse"] < r["input_variance"]
    for name in ("pre-trained", "random init"):
        assert 1 <= s["finetuning"][name]["best_epoch"] <= s["finetuning_epochs"]
    assert_pngs(out, ["pretraining.png", "finetuning.png"])


def test_lowp_state_trains_like_fp32(lowp):
    """Issue 13's training check: AdamW8bit and bf16-state AdamW end within 3% of fp32 AdamW's
    loss (held out, and every 20-step window of the curve), NAdam8bit within 3% of NAdam; the
    half-lr control shows a 3% window is a real bar (it is more than 3% off early on)."""
    summary, _, out = lowp
    runs = summary["runs"]
    assert summary["steps"] == 300
    fp32 = runs["AdamW fp32"]
    assert fp32["held_out"] < 0.5 * math.log(64)  # it learned the language (chance: ln 64)
    for name in ("AdamW8bit", "AdamW bf16 state", "NAdam8bit"):
        r = runs[name]
        assert abs(r["held_out_gap_pct"]) <= 3.0 and r["max_abs_window_gap_pct"] <= 3.0, (name, r["held_out_gap_pct"])
    assert runs["control: AdamW fp32, lr / 2"]["max_abs_window_gap_pct"] > 3.0
    assert runs["AdamW8bit"]["state_bytes_per_param"] < 2.3 and runs["AdamW bf16 state"]["state_bytes_per_param"] == 4.0
    assert fp32["state_bytes_per_param"] == 8.0
    assert_pngs(out, ["lowp_state.png"])


def test_instability_workflow(instability):
    s, stdout, out = instability
    grid = s["sweep"]["grid"]
    assert s["lr_star"] in grid and min(grid) <= s["lr_star"] <= max(grid)
    assert s["lr"] == pytest.approx(2 * s["lr_star"])
    finite_sweep = [v for v in s["sweep"]["validation_loss"] if v is not None]
    assert s["sweep"]["validation_loss"][grid.index(s["lr_star"])] == min(finite_sweep)
    assert set(s["runs"]) == {"plain", "warmup", "max_grad_norm", "autoclip"}
    for name, r in s["runs"].items():
        assert isinstance(r["diverged"], bool)
        assert r["final_loss"] is not None and math.isfinite(r["final_loss"]), name
        assert 0.0 <= r["clipped_fraction"] <= 1.0
        assert 0 <= r["runs_with_spikes"] <= len(s["seeds"]) and len(r["per_seed"]) == len(s["seeds"])
        for d in r["per_seed"]:
            assert d["steps_run"] == s["steps"] or d["diverged"]
            assert d["diverged"] or (d["final_loss"] is not None and d["final_val_loss"] is not None)
        # the playbook's warning exactly when more than half of the steps clip
        assert (r["warning"] is not None) == (r["clipped_fraction"] > 0.5)
        if r["warning"]:
            assert f"WARNING ({name})" in stdout and any(w.startswith(name) for w in s["warnings"])
    assert s["runs"]["plain"]["clipped_fraction"] == 0.0 and s["runs"]["warmup"]["clipped_fraction"] == 0.0
    for d in s["runs"]["max_grad_norm"]["per_seed"]:
        assert d["threshold"] > 0 and math.isfinite(d["threshold"])
    assert_pngs(out, ["instability.png", "grad_norms_max_grad_norm.png", "grad_norms_autoclip.png"])


# ---- the data readers and the convnet builds, without training ---------------------------------

@pytest.fixture(scope="module")
def examples_path():
    sys.path.insert(0, EXAMPLES)
    yield
    sys.path.remove(EXAMPLES)


def _write_idx(path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_directory(tmp_path, examples_path):
    import _data

    rng = np.random.default_rng(0)
    x_tr, y_tr = rng.integers(0, 256, (60, 28, 28)), rng.integers(0, 10, 60)
    x_te, y_te = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x_tr, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y_tr, gz=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", x_te, gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_te, gz=True)
    s = _data.load(str(tmp_path))
    assert (s.name, s.side) == ("mnist", 28)
    assert s.sizes() == {"train": 50, "validation": 10, "test": 12}  # small files keep 1/6 for validation
    np.testing.assert_array_equal(s.x_train.numpy(), (x_tr[:50].reshape(50, -1) / 255.0).astype(np.float32))
    np.testing.assert_array_equal(s.y_val.numpy(), y_tr[50:])
    np.testing.assert_array_equal(s.x_test.numpy(), (x_te.reshape(12, -1) / 255.0).astype(np.float32))
    assert _data.load(str(tmp_path), train_limit=20).sizes()["train"] == 20


def test_mnist_nielsen_pickle(tmp_path, examples_path):
    import _data

    rng = np.random.default_rng(1)
    parts = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (30, 10, 8))
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    s = _data.load(str(path))
    assert s.side == 28 and s.sizes() == {"train": 30, "validation": 10, "test": 8}
    np.testing.assert_array_equal(s.x_val.numpy(), parts[1][0])
    np.testing.assert_array_equal(s.y_test.numpy(), parts[2][1])


def test_mnist_bad_inputs(tmp_path, examples_path):
    import _data

    with pytest.raises(FileNotFoundError, match="--mnist"):
        _data.load(str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        _data.load(str(tmp_path))  # a directory without the IDX files
    bad = tmp_path / "bad-idx"
    bad.write_bytes(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 4) + b"\0" * 16)  # float data
    with pytest.raises(ValueError, match="unsigned-byte"):
        _data.read_idx(str(bad))
    short = tmp_path / "short-idx"
    short.write_bytes(struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 9) + b"\0" * 4)
    with pytest.raises(ValueError, match="header says"):
        _data.read_idx(str(short))


def test_digits_split_is_fixed(examples_path):
    import _data

    a, b = _data.load(), _data.load()
    assert a.sizes() == {"train": 1197, "validation": 300, "test": 300}
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) == 1.0


@pytest.mark.parametrize("side", [8, 28])
def test_convnet_builds_agree(side, examples_path):
    """The fusekit convnet (fused conv-ReLU-pool, Conv2d, MaxPool2d) and the torch.nn one
    compute the same function once they share weights, on the digits' and MNIST's shapes."""
    import nielsen_digits as nd

    torch.manual_seed(0)
    ref, fk = nd.convnet(side, fused=False), nd.convnet(side, fused=True)
    with torch.no_grad():
        for a, b in zip(fk.parameters(), ref.parameters()):
            a.copy_(b)
    ref.eval()
    fk.eval()
    x = torch.rand(5, 1, side, side)
    torch.testing.assert_close(fk(x), ref(x))
