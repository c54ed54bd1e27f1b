"""Bad input to the optimizers (construction, step, load_state_dict, add_param_group), each
case run on torch.optim (for-loop implementation) and on fusekit in the same test; see
errors_harness.py for the contract checked."""
import copy
import math

import pytest
import torch

import fusekit.optim as fo
from errors_harness import SAME, check

nan, inf = math.nan, math.inf
NAMES = ["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]
KW = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(amsgrad=True), "RMSprop": dict(momentum=0.5, centered=True)}


def accepts(name, key) -> bool:
    import inspect
    return key in inspect.signature(getattr(torch.optim, name)).parameters


# ---- construction --------------------------------------------------------------------------

COMMON = [  # (keyword, value, expected, fragment)
    ("lr", -1.0, SAME, "learning rate"), ("lr", nan, ValueError, "learning rate"),
    ("lr", inf, ValueError, "learning rate"), ("lr", "0.1", TypeError, "lr"), ("lr", None, TypeError, "lr"),
    ("lr", torch.tensor([0.1, 0.2]), SAME, "lr"), ("lr", torch.tensor(nan), ValueError, "learning rate"),
    ("lr", torch.tensor(-1.0), SAME, "learning rate"), ("lr", 1j, TypeError, "lr"),
    ("weight_decay", -1.0, SAME, "weight_decay"), ("weight_decay", nan, ValueError, "weight_decay"),
    ("weight_decay", inf, ValueError, "weight_decay"), ("weight_decay", "x", TypeError, "weight_decay"),
    ("weight_decay", torch.tensor(0.1), SAME, "weight_decay"),
]
PER = {
    "SGD": [("momentum", -0.1, SAME, "momentum"), ("momentum", nan, ValueError, "momentum"),
            ("momentum", inf, ValueError, "momentum"), ("momentum", "0.9", TypeError, "momentum"),
            ("dampening", nan, ValueError, "dampening"), ("dampening", inf, ValueError, "dampening"),
            ("nesterov", True, SAME, "Nesterov"), ("dampening", 0.5, SAME, "dampening")],
    "Adam": [("betas", (1.0, 0.999), SAME, "beta"), ("betas", (0.9,), SAME, "betas"),
             ("betas", (0.9, 1.5), SAME, "beta"), ("betas", (nan, 0.999), SAME, "beta"),
             ("betas", ("a", 0.9), TypeError, "betas"), ("betas", 0.9, SAME, "betas"),
             ("betas", (0.9, 0.999, 0.1), ValueError, "betas"), ("betas", (-0.1, 0.999), SAME, "beta"),
             ("eps", -1.0, SAME, "epsilon"), ("eps", nan, ValueError, "epsilon"), ("eps", inf, ValueError, "epsilon"),
             ("fused_and_foreach", None, SAME, "fused"), ("differentiable", True, ValueError, "differentiable")],
    "NAdam": [("momentum_decay", -1.0, SAME, "momentum_decay"), ("momentum_decay", nan, ValueError, "momentum_decay"),
              ("momentum_decay", inf, ValueError, "momentum_decay"), ("eps", nan, ValueError, "epsilon"),
              ("betas", (0.9,), SAME, "betas"), ("betas", (0.9, 1.0), SAME, "beta")],
    "RMSprop": [("alpha", -0.5, SAME, "alpha"), ("alpha", 1.5, ValueError, "alpha"), ("alpha", nan, ValueError, "alpha"),
                ("alpha", inf, ValueError, "alpha"), ("momentum", -1.0, SAME, "momentum"),
                ("momentum", nan, ValueError, "momentum"), ("eps", -1.0, SAME, "epsilon"),
                ("eps", nan, ValueError, "epsilon")],
    "Adagrad": [("lr_decay", -1.0, SAME, "lr_decay"), ("lr_decay", nan, ValueError, "lr_decay"),
                ("initial_accumulator_value", -1.0, SAME, "initial_accumulator_value"),
                ("initial_accumulator_value", nan, ValueError, "initial_accumulator_value"),
                ("initial_accumulator_value", inf, ValueError, "initial_accumulator_value"),
                ("eps", -1.0, SAME, "epsilon"), ("eps", nan, ValueError, "epsilon"),
                ("fused_and_foreach", None, SAME, "fused")],
}
PER["AdamW"] = PER["Adam"]
FUSEKIT_ONLY = [  # fusekit's own keywords (torch has no counterpart: the expectation is fusekit's)
    ("max_grad_norm", -1.0, ValueError, "max_grad_norm"), ("max_grad_norm", 0.0, ValueError, "max_grad_norm"),
    ("max_grad_norm", nan, ValueError, "max_grad_norm"), ("max_grad_norm", inf, ValueError, "max_grad_norm"),
    ("max_grad_norm", "1", TypeError, "max_grad_norm"), ("max_grad_norm", torch.tensor(-1.0), ValueError, "max_grad_norm"),
    ("max_grad_norm", torch.tensor(0.0), ValueError, "max_grad_norm"),
    ("max_grad_norm", torch.tensor(nan), ValueError, "max_grad_norm"),
    ("max_grad_norm", torch.ones(2), ValueError, "max_grad_norm"),
    ("grad_norm_history", 0, ValueError, "grad_norm_history"), ("grad_norm_history", 1.5, TypeError, "grad_norm_history"),
    ("grad_norm_history", nan, TypeError, "grad_norm_history"), ("grad_norm_history", True, TypeError, "grad_norm_history"),
    ("track_grad_norm", "yes", TypeError, "track_grad_norm"),
]
CTOR = [(n, *c) for n in NAMES for c in COMMON + PER[n]] + [(n, *c) for n in NAMES for c in FUSEKIT_ONLY]


@pytest.mark.parametrize("name,key,value,expect,fragment", CTOR,
                         ids=[f"{c[0]}-{c[1]}={c[2]!r}" for c in CTOR])
def test_construction(name, key, value, expect, fragment):
    def kwargs(for_torch):
        if key == "fused_and_foreach":
            return dict(fused=True, foreach=True)
        if key == "nesterov":
            return dict(nesterov=True)
        if key in ("max_grad_norm", "grad_norm_history", "track_grad_norm") and for_torch:
            return {}
        return {key: value}

    p = torch.nn.Parameter(torch.randn(3))
    check(lambda: getattr(torch.optim, name)([p], **kwargs(True)),
          lambda: getattr(fo, name)([p], **kwargs(False)), expect, fragment, p)


# ---- step --------------------------------------------------------------------------------------

def setup(mod, name, new_grads=True):
    """Two groups after one step; new gradients unless new_grads is False (the step's own,
    which fusekit's cached table has seen: their in-place changes must be caught too)."""
    torch.manual_seed(0)
    g0 = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(2)]
    g1 = [torch.nn.Parameter(torch.randn(5)) for _ in range(2)]
    kw = dict(KW.get(name, {}))
    if mod is torch.optim:
        kw["foreach"] = False
    opt = getattr(mod, name)([{"params": g0}, {"params": g1, "lr": 0.05}], **kw)
    for p in g0 + g1:
        p.grad = torch.randn_like(p)
    opt.step()  # there is state to protect
    for p in g0 + g1:
        if new_grads:
            p.grad = torch.randn_like(p)
    return g0, g1, opt


def _state_key(opt, p):
    return [k for k in opt.state[p] if k not in ("step", "mu_product")][0]


def _last_state_key(opt, p):
    return [k for k in opt.state[p] if k not in ("step", "mu_product")][-1]


STEP = {  # name -> (mutation of (g0, g1, opt), expected, fragment, optimizers it applies to)
    "sparse gradient": (lambda g0, g1, o: setattr(g1[1], "grad", torch.randn(5).to_sparse()), SAME, "sparse",
                        ["Adam", "AdamW", "NAdam", "RMSprop"]),
    "sparse gradient (torch supports it)": (lambda g0, g1, o: setattr(g1[1], "grad", torch.randn(5).to_sparse()),
                                            RuntimeError, "sparse", ["SGD", "Adagrad"]),
    "gradient dtype": (lambda g0, g1, o: setattr(g1[0].grad, "data", torch.randn(5, dtype=torch.float64)), SAME,
                       "dtype", ["Adam", "AdamW", "NAdam", "RMSprop"]),
    "gradient dtype (torch promotes)": (lambda g0, g1, o: setattr(g1[0].grad, "data",
                                                                  torch.randn(5, dtype=torch.float64)),
                                        RuntimeError, "dtype", ["SGD", "Adagrad"]),
    "gradient half on float param": (lambda g0, g1, o: setattr(g1[0].grad, "data", torch.randn(5).half()),
                                     RuntimeError, "dtype", NAMES),
    "gradient shape": (lambda g0, g1, o: setattr(g1[0].grad, "data", torch.randn(1, 5)), SAME, "shape", NAMES),
    "gradient shape, same numel": (lambda g0, g1, o: setattr(g0[0].grad, "data", torch.randn(3, 4)), SAME, "shape",
                                   NAMES),
    "integer parameter": (lambda g0, g1, o: _append_int_param(o), SAME, "dtype", NAMES),
    "state of the wrong shape": (lambda g0, g1, o: o.state[g1[0]].__setitem__(_state_key(o, g1[0]), torch.zeros(7)),
                                 SAME, "state", NAMES),
    "state of the wrong dtype": (lambda g0, g1, o: o.state[g1[0]].__setitem__(
        _state_key(o, g1[0]), o.state[g1[0]][_state_key(o, g1[0])].double()), SAME, "state",
        ["Adam", "AdamW", "NAdam"]),
    "state of the wrong dtype (torch promotes)": (lambda g0, g1, o: o.state[g1[0]].__setitem__(
        _state_key(o, g1[0]), o.state[g1[0]][_state_key(o, g1[0])].double()), RuntimeError, "state",
        ["SGD", "RMSprop", "Adagrad"]),
    "state on the meta device": (lambda g0, g1, o: o.state[g1[0]].__setitem__(
        _state_key(o, g1[0]), torch.empty(5, device="meta")), RuntimeError, "state", NAMES),
    "state entry missing": (lambda g0, g1, o: o.state[g1[0]].pop(_last_state_key(o, g1[0])), SAME, "state",
                            ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "state not a tensor": (lambda g0, g1, o: o.state[g1[0]].__setitem__(_state_key(o, g1[0]), [1.0] * 5),
                           RuntimeError, "state", NAMES),
    "step = -1": (lambda g0, g1, o: o.state[g1[0]].__setitem__("step", torch.tensor(-1.0)), ValueError, "step",
                  ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "step = nan": (lambda g0, g1, o: o.state[g1[0]].__setitem__("step", torch.tensor(nan)), ValueError, "step",
                   ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "step of shape (2,)": (lambda g0, g1, o: o.state[g1[0]].__setitem__("step", torch.zeros(2)), RuntimeError,
                           "step", ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "step a string": (lambda g0, g1, o: o.state[g1[0]].__setitem__("step", "3"), TypeError, "step",
                      ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "mu_product = nan": (lambda g0, g1, o: o.state[g1[0]].__setitem__("mu_product", torch.tensor(nan)), ValueError,
                         "mu_product", ["NAdam"]),
    "group lr = nan": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr", nan), ValueError, "learning rate", NAMES),
    "group lr < 0": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr", -0.1), ValueError, "learning rate", NAMES),
    "group lr = inf": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr", inf), ValueError, "learning rate", NAMES),
    "group lr a string": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr", "0.1"), SAME, "lr", NAMES),
    "group lr tensor of 2": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr", torch.ones(2)), ValueError, "lr",
                             NAMES),
    "group weight_decay = nan": (lambda g0, g1, o: o.param_groups[1].__setitem__("weight_decay", nan), ValueError,
                                 "weight_decay", NAMES),
    "group weight_decay < 0": (lambda g0, g1, o: o.param_groups[1].__setitem__("weight_decay", -1.0), ValueError,
                               "weight_decay", NAMES),
    "group weight_decay missing": (lambda g0, g1, o: o.param_groups[1].pop("weight_decay"), SAME, "weight_decay",
                                   NAMES),
    "group betas of one": (lambda g0, g1, o: o.param_groups[1].__setitem__("betas", (0.9,)), SAME, "betas",
                           ["Adam", "AdamW", "NAdam"]),
    "group beta2 = 1.5": (lambda g0, g1, o: o.param_groups[1].__setitem__("betas", (0.9, 1.5)), ValueError, "beta",
                          ["Adam", "AdamW", "NAdam"]),
    "group eps = nan": (lambda g0, g1, o: o.param_groups[1].__setitem__("eps", nan), ValueError, "epsilon",
                        ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad"]),
    "group momentum = nan": (lambda g0, g1, o: o.param_groups[1].__setitem__("momentum", nan), ValueError,
                             "momentum", ["SGD", "RMSprop"]),
    "group alpha = 1.5": (lambda g0, g1, o: o.param_groups[1].__setitem__("alpha", 1.5), ValueError, "alpha",
                          ["RMSprop"]),
    "group lr_decay = nan": (lambda g0, g1, o: o.param_groups[1].__setitem__("lr_decay", nan), ValueError, "lr_decay",
                             ["Adagrad"]),
    "group momentum_decay < 0": (lambda g0, g1, o: o.param_groups[1].__setitem__("momentum_decay", -1.0), ValueError,
                                 "momentum_decay", ["NAdam"]),
    "group amsgrad switched on": (lambda g0, g1, o: _amsgrad_on(g0, o), SAME, "max_exp_avg_sq", ["AdamW"]),
    "group centered switched on": (lambda g0, g1, o: _centered_on(o), SAME, "state", []),
    "parameter twice in a group": (lambda g0, g1, o: o.param_groups[1]["params"].append(g1[0]), ValueError,
                                   "more than once", NAMES),
    "grad_scale without fused": (lambda g0, g1, o: _amp(o, torch.tensor(2.0), torch.tensor(0.0)), AssertionError,
                                 "fused", ["SGD", "Adam", "AdamW", "Adagrad"]),
    "grad_scale a float": (lambda g0, g1, o: _amp(o, 2.0, torch.tensor(0.0)), AssertionError, "fused",
                           ["SGD", "Adam", "AdamW", "Adagrad"]),
}


def _append_int_param(o):
    p = torch.zeros(3, dtype=torch.int64)
    p.grad = torch.zeros(3, dtype=torch.int64)
    o.param_groups[1]["params"].append(p)


def _amsgrad_on(g0, o):
    o.param_groups[0]["amsgrad"] = True


def _centered_on(o):
    o.param_groups[1]["centered"] = True


def _amp(o, scale, inf_):
    o.grad_scale, o.found_inf = scale, inf_


STEP_CASES = [(n, c, True) for c, (_, _, _, names) in STEP.items() for n in names]
# the gradients changed in place after a step that used them
STEP_CASES += [(n, c, False) for c, (_, _, _, names) in STEP.items() if c.startswith("gradient") for n in names]


@pytest.mark.parametrize("name,case,new_grads", STEP_CASES,
                         ids=[f"{n}-{c}" + ("" if fresh else "-stepped grads") for n, c, fresh in STEP_CASES])
def test_step(name, case, new_grads):
    mutate, expect, fragment, _ = STEP[case]
    if case == "group amsgrad switched on" and name != "AdamW":
        pytest.skip("one optimizer is enough")
    tg0, tg1, topt = setup(torch.optim, name, new_grads)
    mutate(tg0, tg1, topt)
    g0, g1, opt = setup(fo, name, new_grads)
    mutate(g0, g1, opt)
    res = check(topt.step, opt.step, expect, fragment, opt)
    if res is not None:
        for a, b in zip(tg0 + tg1, g0 + g1):
            torch.testing.assert_close(b, a, equal_nan=True)


def test_meta_parameters_step_like_torch():
    """torch's optimizers run on meta tensors (no data); fusekit's create their state there and run no kernel."""
    for name in NAMES:
        p = torch.nn.Parameter(torch.empty(3, device="meta"))
        p.grad = torch.empty(3, device="meta")
        opt = getattr(fo, name)([p], **KW.get(name, {}))
        opt.step()
        ref = getattr(torch.optim, name)([p], **KW.get(name, {}))
        ref.step()
        assert sorted(opt.state[p]) == sorted(ref.state[p])


# ---- load_state_dict / add_param_group -----------------------------------------------------------

def _saved(name):
    _, _, o = setup(fo, name)
    return o.state_dict()


LOAD = {
    "a group too many": (lambda sd: sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0])), SAME, "group"),
    "a parameter too few": (lambda sd: sd["param_groups"][1]["params"].pop(), SAME, "param"),
    "state of the wrong shape": (lambda sd: _first_state(sd).update({_key(sd): torch.zeros(2, 2)}), ValueError,
                                 "shape"),
    "step = -1": (lambda sd: _first_state(sd, "step").update(step=torch.tensor(-1.0)), ValueError, "step"),
    "step = inf": (lambda sd: _first_state(sd, "step").update(step=torch.tensor(inf)), ValueError, "step"),
    "lr = nan": (lambda sd: sd["param_groups"][1].update(lr=nan), ValueError, "learning rate"),
    "lr < 0": (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "learning rate"),
    "weight_decay a string": (lambda sd: sd["param_groups"][0].update(weight_decay="0"), TypeError, "weight_decay"),
    "no 'state' key": (lambda sd: sd.pop("state"), SAME, "state"),
}


def _first_state(sd, need=None):
    for st in sd["state"].values():
        if need is None or need in st:
            return st
    pytest.skip(f"no state holds {need!r}")


def _key(sd):
    return [k for k in _first_state(sd) if k not in ("step", "mu_product")][0]


LOAD_CASES = [(n, c) for c in LOAD for n in NAMES]


@pytest.mark.parametrize("name,case", LOAD_CASES, ids=[f"{n}-{c}" for n, c in LOAD_CASES])
def test_load_state_dict(name, case):
    mutate, expect, fragment = LOAD[case]
    sd = _saved(name)
    mutate(sd)
    tg0, tg1, topt = setup(torch.optim, name)
    g0, g1, opt = setup(fo, name)
    groups = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    check(lambda: topt.load_state_dict(copy.deepcopy(sd)), lambda: opt.load_state_dict(copy.deepcopy(sd)), expect,
          fragment, opt)
    if expect != SAME:
        assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


ADD = {
    "a parameter already in another group": (lambda g0, g1: {"params": [g0[0]]}, SAME, "more than one"),
    "a parameter twice": (lambda g0, g1: {"params": [torch.nn.Parameter(torch.ones(2))] * 2}, ValueError,
                          "more than once"),
    "lr = nan": (lambda g0, g1: {"params": [torch.nn.Parameter(torch.ones(2))], "lr": nan}, ValueError,
                 "learning rate"),
    "lr < 0": (lambda g0, g1: {"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1.0}, ValueError,
               "learning rate"),
    "weight_decay < 0": (lambda g0, g1: {"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": -1.0},
                         ValueError, "weight_decay"),
    "params a set": (lambda g0, g1: {"params": {torch.nn.Parameter(torch.ones(2))}}, SAME, "set"),
    "no params": (lambda g0, g1: {"lr": 0.1}, SAME, "params"),
}
ADD_CASES = [(n, c) for c in ADD for n in NAMES]


@pytest.mark.parametrize("name,case", ADD_CASES, ids=[f"{n}-{c}" for n, c in ADD_CASES])
def test_add_param_group(name, case):
    make, expect, fragment = ADD[case]
    tg0, tg1, topt = setup(torch.optim, name)
    g0, g1, opt = setup(fo, name)
    n = len(opt.param_groups)
    check(lambda: topt.add_param_group(make(tg0, tg1)), lambda: opt.add_param_group(make(g0, g1)), expect, fragment,
          opt)
    if expect != SAME:
        assert len(opt.param_groups) == n
