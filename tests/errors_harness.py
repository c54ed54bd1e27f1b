"""Shared by the test_errors_* modules: run one bad input on torch and on fusekit in the
same test and hold fusekit to the error contract (README, "Errors"):

* SAME: where torch raises, fusekit raises an instance of torch's exception type; where
  torch accepts the input, fusekit accepts it too (and the caller compares the results).
* an exception type T: a documented departure; fusekit raises T (where torch accepts the
  input and misbehaves, or raises an incidental error).

Whenever fusekit raises, the message must name the argument (`fragment`) and every tensor
it could reach must be bitwise unchanged.
"""
import torch

SAME = "same as torch"


def outcome(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - every exception is the subject here
        return None, e


def tensors_of(*objs) -> list:
    """Every tensor reachable from optimizers (params, grads, state), modules, lists and
    dicts, for the nothing-changed check."""
    out, seen = [], set()

    def visit(o):
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            out.append(o)
            if o.grad is not None:
                visit(o.grad)
        elif isinstance(o, torch.optim.Optimizer):
            for g in o.param_groups:
                visit(g["params"])
            for st in o.state.values():
                visit(st)
        elif isinstance(o, torch.nn.Module):
            for p in o.parameters():
                visit(p)
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
    for o in objs:
        visit(o)
    return out


def _dense(t):
    return t.detach().to_dense() if t.layout != torch.strided else t.detach()


def snapshot(*objs):
    ts = [t for t in tensors_of(*objs) if t.device.type != "meta"]
    return [(t, _dense(t).clone()) for t in ts]


def assert_unchanged(snap) -> None:
    for t, before in snap:
        t = _dense(t)
        assert t.shape == before.shape and torch.equal(t.detach().nan_to_num(), before.nan_to_num()) \
            and torch.equal(t.detach().isnan(), before.isnan()), "a tensor changed although the call raised"


def check(torch_fn, fusekit_fn, expect, fragment: str, *reachable):
    """Runs both; asserts the contract. Returns (torch result, fusekit result) when neither
    raised, for the caller to compare."""
    t_res, t_err = outcome(torch_fn)
    snap = snapshot(*reachable)
    f_res, f_err = outcome(fusekit_fn)
    if expect == SAME:
        if t_err is None:
            assert f_err is None, f"torch accepts this, fusekit raised {type(f_err).__name__}: {f_err}"
        else:
            assert f_err is not None, f"torch raises {type(t_err).__name__}: {t_err}; fusekit accepted it"
            assert isinstance(f_err, type(t_err)), (
                f"torch raises {type(t_err).__name__} ({t_err}); fusekit raised {type(f_err).__name__}: {f_err}")
    else:
        assert isinstance(f_err, expect), (
            f"expected fusekit to raise {expect.__name__}, got {type(f_err).__name__ if f_err else None}: {f_err} "
            f"(torch: {type(t_err).__name__ if t_err else 'accepts'})")
    if f_err is not None:
        assert fragment.lower() in str(f_err).lower(), f"the message does not name {fragment!r}: {f_err}"
        assert_unchanged(snap)
        return None
    return t_res, f_res
