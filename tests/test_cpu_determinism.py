"""The CPU kernels give bitwise-identical results across runs, thread counts and ISAs."""
import os
import subprocess
import sys

import torch

import fusekit
import fusekit.optim as fo

SCRIPT = r"""
import torch, fusekit, fusekit.optim as fo, sys
cases = [("Adam", dict(amsgrad=True, weight_decay=0.1)), ("NAdam", {}), ("RMSprop", dict(momentum=0.9, centered=True)),
         ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adagrad", {})]
out = {"isa": fusekit.build_info()["cpu_isa"], "threads": torch.get_num_threads(),
       "backend": fusekit.build_info()["cpu_threads"]}
for name, kw in cases:
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(n, dtype=d)) for n in (300001, 4097, 7)
          for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64)]
    opt = getattr(fo, name)(ps, **kw)
    for s in range(3):
        g = torch.Generator().manual_seed(s)
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        opt.step()
    out[name] = [p.detach() for p in ps]
# Steps of 8K-64K elements (cut into a few chunks per thread) and low-precision state.
for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {}), ("AdamW8bit", {}),
                 ("AdamW", dict(state_dtype=torch.bfloat16))]:
    torch.manual_seed(1)
    ps = [torch.nn.Parameter(torch.randn(n)) for n in (12289, 4608, 7)]
    opt = getattr(fo, name)(ps, **kw)
    for s in range(3):
        g = torch.Generator().manual_seed(s)
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    out["small " + name + str(sorted(kw))] = [p.detach() for p in ps] + [
        v for p in ps for v in opt.state[p].values() if torch.is_tensor(v)]
torch.save(out, sys.argv[1])
"""


def run(tmp_path, env):
    out = tmp_path / f"{env.get('FUSEKIT_CPU_ISA', 'best')}-{env.get('FUSEKIT_THREADS', 'omp')}-{env['OMP_NUM_THREADS']}.pt"
    subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env={**os.environ, **env}, check=True)
    return torch.load(out)


def test_bitwise_across_isas_and_threads(tmp_path):
    base = run(tmp_path, {"OMP_NUM_THREADS": "2"})
    assert base["threads"] == 2
    isas = {base["isa"]}
    backends = {base["backend"]}
    for env in ({"OMP_NUM_THREADS": "1"}, {"FUSEKIT_CPU_ISA": "scalar", "OMP_NUM_THREADS": "2"},
                {"FUSEKIT_CPU_ISA": "avx2", "OMP_NUM_THREADS": "1"},
                {"FUSEKIT_THREADS": "pool", "OMP_NUM_THREADS": "2"}):
        other = run(tmp_path, env)
        isas.add(other["isa"])
        backends.add(other["backend"])
        cases = [k for k, v in base.items() if isinstance(v, list)]
        assert len(cases) == 9
        for name in cases:
            assert len(base[name]) == len(other[name])
            for a, b in zip(base[name], other[name]):
                assert torch.equal(a, b), (name, env)
    assert "scalar" in isas
    assert "fusekit thread pool" in backends  # both thread backends were compared


def test_threads_follow_torch_setting():
    torch.manual_seed(0)
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        p = torch.nn.Parameter(torch.linspace(-1, 1, 1_000_003))
        opt = fo.AdamW([p], lr=0.1)
        p.grad = torch.sin(torch.arange(p.numel(), dtype=torch.float32))
        opt.step()
        results.append(p.detach().clone())
    assert torch.equal(results[0], results[1])
    assert fusekit.build_info()["cpu_isa"] in ("scalar", "avx2", "avx512")
