"""The benchmark CLI (python -m fusekit.bench): its JSON and table structure, the rule that
flags ratios, the plot, and the peers it builds. Tiny sizes: these check the machinery,
not speed."""
import json
import math

import pytest
import torch

from fusekit.bench import cli, peers, stats
from fusekit.bench.candidates import Candidate, measure
from fusekit.bench.plot import COLORS, plot
from fusekit.bench.timing import time_alternating
from fusekit.bench.workloads import WORKLOADS, make_params


def _summary(q1, med, q3, lo=None, hi=None):
    return dict(n=5, min=lo if lo is not None else q1, q1=q1, median=med, q3=q3, max=hi or q3, samples=[])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    out, png = d / "r.json", d / "r.png"
    assert cli.main(["--smoke", "--no-progress", "--out", str(out), "--plot", str(png)]) == 0
    return json.loads(out.read_text()), png


def test_smoke_json_rows(smoke):
    data, _ = smoke
    info, rows = data["info"], data["rows"]
    assert info["probe_gbs"]["cpu"] > 0 and info["threads"] >= 1 and info["wall_s"] > 0
    assert "cpu_isa" in info["fusekit"] and info["torch"] == torch.__version__
    assert {r["suite"] for r in rows} == {"optim", "lowp", "clip", "layers", "e2e"}
    assert sorted(r["case"] for r in rows if r["suite"] == "optim") == sorted(
        ["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"])
    for r in rows:
        assert r["candidates"][0]["name"] == "fusekit" and len(r["candidates"]) == len(r["comparisons"]) + 1
        for c in r["candidates"]:
            assert c["n"] == r["reps"] == len(c["samples"]) >= 3
            assert c["min"] <= c["q1"] <= c["median"] <= c["q3"] <= c["max"]
            assert c["min"] == min(c["samples"]) and c["max"] == max(c["samples"])
        ours = r["candidates"][0]
        for comp, peer in zip(r["comparisons"], r["candidates"][1:]):
            assert comp["vs"] == peer["name"]
            assert math.isclose(comp["speedup"], peer["median"] / ours["median"])
            assert comp["lo"] <= comp["speedup"] <= comp["hi"]
            assert set(comp["flag"]) <= {"~", "?", "L"}
            assert comp["peer"] in COLORS  # the chart colours each peer family, lowp rows too
    optim = next(r for r in rows if r["suite"] == "optim" and r["case"] == "AdamW")
    n = sum(math.prod(s) for s in WORKLOADS["nielsen"]())
    assert optim["params"] == n and optim["bytes_per_step"] == 7 * 4 * n
    for c in optim["candidates"]:
        assert math.isclose(c["gbs"], optim["bytes_per_step"] / (c["median"] / 1e3) / 1e9)
        assert math.isclose(c["bw_fraction"], c["gbs"] / info["probe_gbs"]["cpu"])
    for r in (r for r in rows if r["suite"] == "e2e"):
        for c in r["candidates"]:
            assert 0 < c["opt_ms"] <= c["max"] and math.isclose(c["opt_share"], c["opt_ms"] / c["median"])
    lowp = {r["case"]: r for r in rows if r["suite"] == "lowp"}
    assert {"AdamW8bit", "AdamW bf16 state"} <= set(lowp)
    for r in lowp.values():
        ours, torch_fp32 = r["candidates"][0], r["candidates"][1]
        assert torch_fp32["state"] == "fp32" and torch_fp32["state_bytes_per_param"] == 8.0
        # each candidate's bytes are its own: fewer state bytes, fewer bytes moved
        assert ours["bytes_per_step"] < torch_fp32["bytes_per_step"]
        assert math.isclose(ours["gbs"], ours["bytes_per_step"] / (ours["median"] / 1e3) / 1e9)
    assert lowp["AdamW bf16 state"]["candidates"][0]["state_bytes_per_param"] == 4.0
    # 8-bit: one byte per state element plus a float32 absmax per block (small tensors keep 32-bit state)
    assert 2.0 <= lowp["AdamW8bit"]["candidates"][0]["state_bytes_per_param"] < 8.0


def test_smoke_table(smoke, capsys):
    # the module fixture printed before this test's capture began: print one block again
    from fusekit.bench import report

    data, _ = smoke
    row = next(r for r in data["rows"] if r["suite"] == "optim")
    text = report.block(row)
    assert text.splitlines()[0].startswith("optim: SGD - optimizer step (nielsen, 4 tensors")
    assert "fusekit" in text.splitlines()[1] and "GB/s" in text.splitlines()[1]
    assert f"{row['comparisons'][0]['speedup']:.2f}x" in text.splitlines()[2]
    assert "flag ~" in report.legend() and "flag L" in report.legend()


def test_smoke_plot_file(smoke):
    _, png = smoke
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_flag_rule():
    fk = _summary(1.0, 1.1, 1.2)
    # IQRs overlap: the ratio's interval contains 1, whichever side the medians fall
    c = stats.compare(fk, _summary(1.15, 1.3, 1.5))
    assert c["lo"] < 1 < c["hi"] and c["flag"] == "~"
    # well apart and tight: no flag; the interval is peer q1 / fusekit q3 .. peer q3 / fusekit q1
    c = stats.compare(fk, _summary(3.0, 3.3, 3.6))
    assert (c["flag"], c["lo"], c["hi"]) == ("", 3.0 / 1.2, 3.6 / 1.0)
    assert math.isclose(c["speedup"], 3.0)
    # apart, but the interval spans more than x2: size uncertain
    assert stats.compare(fk, _summary(3.0, 5.0, 7.0))["flag"] == "?"
    # apart and tight, but the minimums tell another story (load shaped the medians)
    assert stats.compare(fk, _summary(3.0, 3.3, 3.6, lo=1.2))["flag"] == "?"
    # other processes busy while timing
    assert stats.compare(fk, _summary(3.0, 3.3, 3.6), others_cpu=0.5)["flag"] == "L"
    assert stats.compare(fk, _summary(1.15, 1.3, 1.5), others_cpu=0.5)["flag"] == "~L"
    assert stats.compare(fk, _summary(3.0, 3.3, 3.6), others_cpu=0.05)["flag"] == ""
    # fusekit slower, clearly: not flagged, speedup < 1
    c = stats.compare(_summary(3.0, 3.3, 3.6), fk)
    assert c["flag"] == "" and c["hi"] < 1


def test_summarize_quartiles():
    s = stats.summarize([0.005, 0.001, 0.004, 0.002, 0.003])
    assert (s["n"], s["min"], s["q1"], s["median"], s["q3"], s["max"]) == pytest.approx((5, 1, 2, 3, 4, 5))
    assert stats.summarize([0.002])["q1"] == pytest.approx(2)


def test_alternation_rotates_and_deadline_stops():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    samples = time_alternating(fns, "cpu", warmup=1, reps=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(v) == 3 for v in samples.values())
    samples = time_alternating(fns, "cpu", warmup=0, reps=1000, min_reps=4, deadline_s=0.0)
    assert all(len(v) == 4 for v in samples.values())


def test_measure_row_and_plot(tmp_path):
    cands = [Candidate("fusekit", lambda: None, extra=dict(peer="fusekit")),
             Candidate("torch foreach", lambda: sum(range(2000)), extra=dict(peer="torch"))]
    row = measure(dict(suite="clip", case="x", workload="nielsen", device="cpu", tensors=1, params=1), cands,
                  "cpu", warmup=1, reps=5, budget_s=0.001)
    assert row["reps"] >= 5 and row["comparisons"][0]["speedup"] > 1
    plot([row], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no comparisons"):
        plot([], str(tmp_path / "q.png"))


def test_peer_availability():
    avail = peers.available("cpu")
    assert avail["torch"] == "" and avail["compile"] == "" and avail["apex"] == "CUDA only"
    assert not peers.covers("deepspeed", "SGD") and peers.covers("deepspeed", "AdamW")
    assert not peers.covers("bitsandbytes", "NAdam") and peers.covers("torch", "NAdam")


def test_torch_compile_peer_does_not_recompile():
    params = make_params(WORKLOADS["nielsen"](), "cpu")
    cand = peers.build("compile", "SGD", params, dict(lr=0.01, momentum=0.9), "cpu")
    assert cand.name == "torch.compile" and cand.setup_s > 0
    for _ in range(5):
        cand.fn()
    facts = cand.finish({})
    # SGD's first step creates the momentum buffers, so the second may compile a second graph;
    # from then on one graph serves every step
    assert 1 <= facts["graphs"] <= 2 and facts["recompiles"] == 0 and facts["compile_s"] == cand.setup_s


@pytest.mark.parametrize("name", ["AdamW", "Adagrad"])
def test_bitsandbytes_peer_steps(name):
    pytest.importorskip("bitsandbytes")
    params = make_params(WORKLOADS["nielsen"](), "cpu")
    before = [p.detach().clone() for p in params]
    cand = peers.build("bitsandbytes", name, params, dict(lr=1e-2), "cpu")
    cand.fn()
    assert cand.name == f"bnb {name} 32-bit"
    assert all(not torch.equal(a, p) for a, p in zip(before, params))


def test_deepspeed_peer_steps():
    pytest.importorskip("deepspeed")
    if not peers.deepspeed_built():
        pytest.skip("DeepSpeed's CPU ops are not JIT-built yet (minutes); python -m fusekit.bench builds them")
    params = make_params(WORKLOADS["nielsen"](), "cpu")
    before = [p.detach().clone() for p in params]
    cand = peers.build("deepspeed", "AdamW", params, dict(lr=1e-3, weight_decay=0.1), "cpu")
    assert cand.name == "deepspeed CPUAdam" and cand.setup_s > 0
    assert all(not torch.equal(a, p) for a, p in zip(before, params))


@pytest.mark.parametrize("workload", ["gpt", "convnet"])
def test_e2e_sides_compute_the_same_model(workload):
    # the two sides must train the same network from the same weights, or the step times
    # compare different work
    from fusekit.bench.e2e import models

    ours, theirs, _, _, x, _ = models(workload, "tiny", "cpu")
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    torch.testing.assert_close(ours(x), theirs(x))
