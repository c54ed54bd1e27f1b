"""state_dict moves between torch.optim.X and fusekit.optim.X mid-run, both ways."""
import io

import pytest
import torch

import fusekit.optim as fo
from optim_cases import NAMES, make_params, set_grads

KW = {"SGD": dict(lr=0.05, momentum=0.9), "Adam": dict(amsgrad=True, weight_decay=0.01),
      "AdamW": dict(lr=0.01), "NAdam": dict(weight_decay=0.01), "RMSprop": dict(momentum=0.5, centered=True),
      "Adagrad": dict(lr_decay=0.01)}


def steps(params, opt, start, n):
    for s in range(start, start + n):
        set_grads(params, s)
        opt.step()


def reload(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("direction", ["torch->fusekit", "fusekit->torch", "fusekit->fusekit"])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_mid_run(name, direction):
    src_cls = getattr(torch.optim, name) if direction.startswith("torch") else getattr(fo, name)
    dst_cls = getattr(torch.optim, name) if direction.endswith("torch") else getattr(fo, name)
    extra = {"foreach": False} if src_cls.__module__.startswith("torch") else {}
    params = make_params()
    src = src_cls(params, **KW[name], **extra)
    steps(params, src, 0, 10)
    sd = reload(src.state_dict())

    # continue the source run, and a copy of the params under the other implementation
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    dst_extra = {"foreach": False} if dst_cls.__module__.startswith("torch") else {}
    dst = dst_cls(copies, **KW[name], **dst_extra)
    dst.load_state_dict(sd)
    steps(params, src, 10, 10)
    steps(copies, dst, 10, 10)
    for a, b in zip(params, copies):
        torch.testing.assert_close(b, a)
    for a, b in zip(params, copies):
        for k, v in src.state[a].items():
            if torch.is_tensor(v):
                torch.testing.assert_close(dst.state[b][k], v)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_torch(name):
    pa, pb = make_params(), make_params()
    ref = getattr(torch.optim, name)(pa, **KW[name], foreach=False)
    ours = getattr(fo, name)(pb, **KW[name])
    steps(pa, ref, 0, 3)
    steps(pb, ours, 0, 3)
    sa, sb = ref.state_dict(), ours.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name_, v in sa["state"][k].items():
            assert sb["state"][k][name_].dtype == v.dtype and sb["state"][k][name_].shape == v.shape
    for ga, gb in zip(sa["param_groups"], sb["param_groups"]):
        assert set(ga) <= set(gb)
        assert {k: ga[k] for k in ga if k != "foreach"} == {k: gb[k] for k in ga if k != "foreach"}
