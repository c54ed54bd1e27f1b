"""The source documents' update rules (architecture.md §3), each checked against a NumPy float64
reference written from the formula; t counts from 0, eta_t is the learning rate at step t."""
import numpy as np
import pytest
import torch

import fusekit.optim as fo

STEPS = 20


def lr_at(base, t):
    return base * (0.9 ** (t // 5))  # a schedule, so eta_t really varies


def grads(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(STEPS)]


def run_fusekit(make_opt, theta0, gs, base_lr):
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = make_opt([p], base_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.9 ** (t // 5))
    for g in gs:
        p.grad = torch.tensor(g)
        opt.step()
        sched.step()
    return p.detach().numpy()


def ref_sgd(theta, gs, eta):
    for t, g in enumerate(gs):
        theta = theta - lr_at(eta, t) * g
    return theta


def ref_momentum(theta, gs, eta, gamma, nesterov):
    v = np.zeros_like(theta)
    for t, g in enumerate(gs):
        v = gamma * v + g
        theta = theta - lr_at(eta, t) * ((gamma * v + g) if nesterov else v)
    return theta


def ref_rmsprop(theta, gs, eta, rho, gamma, eps):
    v, m = np.ones_like(theta), np.zeros_like(theta)
    for t, g in enumerate(gs):
        v = rho * v + (1 - rho) * g * g
        m = gamma * m + lr_at(eta, t) / np.sqrt(v + eps) * g
        theta = theta - m
    return theta


def ref_adam(theta, gs, alpha, b1, b2, eps, nadam=False):
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(gs):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        b = np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        num = (b1 * m + (1 - b1) * g) if nadam else m
        theta = theta - lr_at(alpha, t) * num / (np.sqrt(v) + eps) * b
    return theta


def ref_adagrad(theta, gs, eps, delta):
    r = np.zeros_like(theta)
    for t, g in enumerate(gs):
        r = r + g * g
        theta = theta - lr_at(eps, t) / (delta + np.sqrt(r)) * g
    return theta


THETA = np.linspace(-1.0, 1.0, 37)
GS = grads(THETA.shape)

CASES = {
    "sgd": (lambda ps, lr: fo.SGD(ps, lr=lr), lambda: ref_sgd(THETA, GS, 0.1), 0.1),
    "momentum": (lambda ps, lr: fo.SGD(ps, lr=lr, momentum=0.9), lambda: ref_momentum(THETA, GS, 0.05, 0.9, False), 0.05),
    "nesterov": (lambda ps, lr: fo.SGD(ps, lr=lr, momentum=0.9, nesterov=True),
                 lambda: ref_momentum(THETA, GS, 0.05, 0.9, True), 0.05),
    "rmsprop": (lambda ps, lr: fo.RMSprop(ps, lr=lr, alpha=0.9, eps=1e-6, momentum=0.8, square_avg_init=1.0,
                                          eps_in_sqrt=True, lr_in_momentum=True),
                lambda: ref_rmsprop(THETA, GS, 0.01, 0.9, 0.8, 1e-6), 0.01),
    "adam": (lambda ps, lr: fo.Adam(ps, lr=lr, betas=(0.8, 0.99), eps=1e-3, folded_bias_correction=True),
             lambda: ref_adam(THETA, GS, 0.01, 0.8, 0.99, 1e-3), 0.01),
    "adamw-no-decay": (lambda ps, lr: fo.AdamW(ps, lr=lr, betas=(0.8, 0.99), eps=1e-3, weight_decay=0,
                                               folded_bias_correction=True),
                       lambda: ref_adam(THETA, GS, 0.01, 0.8, 0.99, 1e-3), 0.01),
    "nadam": (lambda ps, lr: fo.NAdam(ps, lr=lr, betas=(0.8, 0.99), eps=1e-3, folded_bias_correction=True),
              lambda: ref_adam(THETA, GS, 0.01, 0.8, 0.99, 1e-3, nadam=True), 0.01),
    "adagrad": (lambda ps, lr: fo.Adagrad(ps, lr=lr, eps=1e-7), lambda: ref_adagrad(THETA, GS, 0.1, 1e-7), 0.1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_source_formula(case):
    make_opt, ref, lr = CASES[case]
    got = run_fusekit(make_opt, THETA, GS, lr)
    want = ref()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.abs(want - THETA).max() > 1e-3


def test_source_forms_differ_from_torch_defaults():
    """The options really change the rule (otherwise the tests above prove nothing new)."""
    torch_rms = run_fusekit(lambda ps, lr: fo.RMSprop(ps, lr=lr, alpha=0.9, eps=1e-6, momentum=0.8), THETA, GS, 0.01)
    assert np.abs(torch_rms - ref_rmsprop(THETA, GS, 0.01, 0.9, 0.8, 1e-6)).max() > 1e-4
    torch_adam = run_fusekit(lambda ps, lr: fo.Adam(ps, lr=lr, betas=(0.8, 0.99), eps=1e-3), THETA, GS, 0.01)
    assert np.abs(torch_adam - ref_adam(THETA, GS, 0.01, 0.8, 0.99, 1e-3)).max() > 1e-6
