"""python -m fusekit.check: its comparison is exact (a 1-ulp or sign-of-zero change is a
mismatch, a NaN of another payload is not), its CPU run passes on this machine, and it fails
cleanly where a section cannot run."""
import json
import subprocess
import sys

import pytest
import torch

import fusekit
from fusekit import check


@pytest.mark.parametrize("dtype", check.DTYPES)
def test_ulp_diff_is_exact(dtype):
    x = torch.linspace(-3, 3, 101, dtype=torch.float64).to(dtype)
    assert check.ulp_diff(x, x.clone()) == 0
    y = x.clone()
    y.view(check._INT[dtype])[17] += 1  # the next representable value away from zero
    assert check.ulp_diff(x, y) == 1
    y.view(check._INT[dtype])[90] -= 3
    assert check.ulp_diff(x, y) == 3
    z = torch.zeros(3, dtype=dtype)
    assert check.ulp_diff(z, -z) == 1  # +0 and -0 differ in bits
    nan1 = torch.full((2,), float("nan"), dtype=dtype)
    nan2 = nan1.clone()
    nan2.view(check._INT[dtype])[0] |= 1  # another NaN payload
    assert torch.isnan(nan2).all()
    assert check.ulp_diff(nan1, nan2) == 0
    assert check.ulp_diff(x, x[:-1]) == -1


def test_compare_runs_sees_state():
    a = check.run_optimizer("Adam", dict(lr=1e-2), torch.float32, "cpu", [7, 33], steps=2)
    b = check.run_optimizer("Adam", dict(lr=1e-2), torch.float32, "cpu", [7, 33], steps=2)
    assert check.compare_runs(a, b) == (0, "")
    ps, opt = b
    st = opt.state[ps[1]]["exp_avg_sq"]
    st.view(torch.int32)[3] += 2
    worst, where = check.compare_runs(a, b)
    assert worst == 2 and where.startswith("exp_avg_sq")


def test_cpu_check_passes(tmp_path):
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, "-m", "fusekit.check", "--device", "cpu", "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 failed" in r.stdout
    res = json.loads(out.read_text())
    isa_rows = [c for c in res["checks"] if c["section"] == "cpu-isa"]
    assert isa_rows and all(c["ok"] for c in isa_rows)
    isa = fusekit.build_info()["cpu_isa"]
    if isa != "scalar":  # the widest ISA was compared with the scalar build, case by case
        assert any(c["name"].startswith(f"{isa} vs scalar") for c in isa_rows)


@pytest.mark.skipif(fusekit.cuda_available(), reason="checks the message where no GPU is usable")
def test_cuda_check_without_a_gpu_fails_cleanly():
    r = subprocess.run([sys.executable, "-m", "fusekit.check", "--device", "cuda"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert "no usable CUDA device" in r.stdout


def test_unknown_section_is_an_error():
    with pytest.raises(SystemExit):
        check.main(["--only", "cpu-isa,warp-drive"])
