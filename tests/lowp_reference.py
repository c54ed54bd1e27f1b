"""NumPy reference for low-precision optimizer state (docs/lowp_state_notes.md).

8-bit: bitsandbytes 0.50's blockwise dynamic quantization (blocks of 256 elements, one float32
absmax per block, the 256-entry maps of create_dynamic_map) and one step of its 8-bit Adam
(= AdamW), SGD with momentum, RMSprop and Adagrad; NAdam defined the same way (bitsandbytes has
none). bitsandbytes' two backends differ in small ways, chosen by `backend`:
  "cuda": the formulas of its CUDA kernels, nearest-code rounding with ties to the even code and
          the sign of first moments kept (the semantics fusekit reproduces);
  "cpu":  the formulas of its CPU backend (backends/cpu/ops.py) and its rounding through a
          65,536-point grid (csrc/cpu_ops.cpp), to check this module against the installed package.
bf16: states stored as bfloat16 (round to nearest even), math in float32, torch 2.13's for-loop
update rules.

Arithmetic is float32 wherever bitsandbytes and torch compute in float32: array operands are
float32 and every scalar is an np.float32, so NumPy never widens. Scalars that torch and
bitsandbytes' CPU backend compute as Python floats (bias corrections, 1 - beta) are computed
as Python floats and then rounded, as they are. Arrays are flat float32 views of tensors.
"""
import numpy as np

F32 = np.float32
BLOCK = 256  # elements per absmax block of every 8-bit blockwise optimizer in bitsandbytes 0.50


# ---------------------------------------------------------------------------------------------
# The dynamic maps
# ---------------------------------------------------------------------------------------------

def _linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32) as torch's CPU kernel computes it with
    AVX2/AVX-512: the lower half is fma(step, i, start), the upper half fma(-step, steps-1-i, end).
    The products and sums are exact in float64 (a 24-bit step times an index < 2^8, added to a
    value with a close exponent), so float64 is an exact fused multiply-add here."""
    start, end = F32(start), F32(end)
    step = (end - start) / F32(steps - 1)
    i = np.arange(steps)
    lo = np.float64(start) + np.float64(step) * i
    hi = np.float64(end) - np.float64(step) * (steps - 1 - i)
    return np.where(i < steps // 2, lo, hi).astype(F32)


def dynamic_map(signed):
    """create_dynamic_map(signed) of bitsandbytes (max_exponent_bits=7, total_bits=8), float32,
    sorted. Decade d = 0..6 holds n_d linearly spaced magnitudes in (10^(d-7), 10^(d-6)): the
    midpoints of linspace(0.1, 1, n_d + 1) times 10^(d-6), with n_d = 2^d (signed, each also
    negated) or 2^(d+1) (unsigned); then 0 and 1.0. Signed: codes 0..126 negative, 127 = 0,
    128..254 positive, 255 = 1.0; unsigned: 0 = 0, 255 = 1.0."""
    vals = [F32(0), F32(1)]
    for d in range(7):
        n = 2 ** d if signed else 2 ** (d + 1)
        b = _linspace_f32(0.1, 1.0, n + 1)
        means = (b[:-1] + b[1:]) / F32(2)
        scaled = F32(10.0 ** (d - 6)) * means
        vals += list(scaled) + (list(-scaled) if signed else [])
    out = np.sort(np.array(vals, dtype=F32))
    assert out.shape == (256,)
    return out


SIGNED = dynamic_map(True)     # bitsandbytes' "dynamic": first moments, and every 1-state optimizer
UNSIGNED = dynamic_map(False)  # bitsandbytes' "udynamic": Adam's second moment


def midpoints(qmap):
    """(code[j] + code[j+1]) * 0.5 in float32: the boundaries both bitsandbytes backends use."""
    return (qmap[:-1] + qmap[1:]) * F32(0.5)


def zero_code(qmap):
    return int(np.flatnonzero(qmap == 0)[0])


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------

def quantize_nearest(x, qmap, keep_sign=False):
    """Nearest code of normalized values x in [-1, 1]: code j for mid[j-1] < x < mid[j]; x equal
    to a float32 midpoint goes to the even one of its two codes (the outcome of the CUDA
    kernels' binary search). keep_sign (signed map, CUDA optimizer kernels): a negative x,
    -0.0 included, whose nearest code is the zero code gets the smallest negative code instead.
    NaN is not modelled (bitsandbytes' CUDA search returns code 0 for it)."""
    x = np.asarray(x, dtype=F32)
    mids = midpoints(qmap)
    j = np.searchsorted(mids, x, side="left")  # number of midpoints < x
    tie = (j < mids.size) & (x == mids[np.minimum(j, mids.size - 1)])
    j = j + (tie & (j % 2 == 1))
    if keep_sign:
        z = zero_code(qmap)
        j = np.where(np.signbit(x) & (j == z), z - 1, j)
    return j.astype(np.uint8)


_LUT_SIZE = 65536


def _cpu_lut(qmap):
    """bitsandbytes' CPU table: grid point i = -1 + 2i/65535 maps to the code whose float32
    midpoints bracket it, the lower code when it equals a midpoint."""
    grid = F32(-1) + (F32(2) * np.arange(_LUT_SIZE, dtype=F32)) / F32(_LUT_SIZE - 1)
    return np.searchsorted(midpoints(qmap), grid, side="left").astype(np.uint8)


_LUTS = {}


def quantize_cpu_grid(x, qmap):
    """bitsandbytes' CPU quantizer: x is clamped to [-1, 1], rounded half up to the nearest of
    65,536 grid points and given that point's code. Values within about 1.5e-5 of 0 therefore
    never get the zero code (0.0 itself gets +2.125e-5 signed, +1.5625e-5 unsigned)."""
    if np.isnan(x).any():
        raise ValueError("x contains NaN, which has no code on bitsandbytes' CPU path (undefined there)")
    key = qmap.tobytes()
    if key not in _LUTS:
        _LUTS[key] = _cpu_lut(qmap)
    x = np.clip(np.asarray(x, dtype=F32), F32(-1), F32(1))
    idx = ((x + F32(1)) * F32(0.5) * F32(_LUT_SIZE - 1) + F32(0.5)).astype(np.int64)
    return _LUTS[key][idx]


def block_absmax(a):
    """max |a| over each block of 256 elements (the last block may be shorter), float32."""
    a = np.abs(np.asarray(a, dtype=F32).ravel())
    return np.concatenate([a, np.zeros((-a.size) % BLOCK, F32)]).reshape(-1, BLOCK).max(axis=1)


def quantize_blockwise(a, qmap, rounding="nearest", keep_sign=False):
    """Blockwise quantization: absmax per block, then codes of a / absmax. A block with absmax 0
    gets the zero code ("cpu" rounding: code 0, as bitsandbytes' CPU backend writes); every code
    decodes to 0 there. "nearest" divides (IEEE); "cpu" multiplies by 1/absmax, as bitsandbytes
    does on the CPU. Returns (uint8 codes, float32 absmax)."""
    a = np.asarray(a, dtype=F32).ravel()
    absmax = block_absmax(a)
    scale = np.repeat(absmax, BLOCK)[: a.size]
    safe = np.where(scale == 0, F32(1), scale)
    if rounding == "nearest":
        codes = quantize_nearest(a / safe, qmap, keep_sign)
        codes = np.where(scale == 0, np.uint8(zero_code(qmap)), codes)
    elif rounding == "cpu":
        codes = quantize_cpu_grid(a * (F32(1) / safe), qmap)
        codes = np.where(scale == 0, np.uint8(0), codes)
    else:
        raise ValueError(f"rounding must be 'nearest' or 'cpu', got {rounding!r}")
    return codes.astype(np.uint8), absmax


def dequantize_blockwise(codes, absmax, qmap):
    """code value times its block's absmax, float32."""
    codes = np.asarray(codes).ravel()
    return qmap[codes.astype(np.int64)] * np.repeat(np.asarray(absmax, F32), BLOCK)[: codes.size]


# ---------------------------------------------------------------------------------------------
# Storage rounding of parameters and bf16 state
# ---------------------------------------------------------------------------------------------

def round_bf16(x):
    """float32 -> nearest bfloat16 (ties to even), returned as float32; NaN stays NaN."""
    u = np.asarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = r.view(F32)
    return np.where(np.isnan(x), F32(np.nan), out).astype(F32)


def store(x, dtype):
    """Round a float32 result to the dtype a parameter is stored in ("float32", "bfloat16",
    "float16"); the result stays a float32 array holding values of that dtype."""
    x = np.asarray(x, dtype=F32)
    if dtype == "float32":
        return x
    if dtype == "bfloat16":
        return round_bf16(x)
    if dtype == "float16":
        return x.astype(np.float16).astype(F32)
    raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")


# ---------------------------------------------------------------------------------------------
# 8-bit optimizer steps (bitsandbytes' blockwise kernels)
# ---------------------------------------------------------------------------------------------

def _requantize(s, qmap, backend):
    if backend == "cuda":
        return quantize_blockwise(s, qmap, "nearest", keep_sign=qmap[0] < 0)
    return quantize_blockwise(s, qmap, "cpu")


def _check_backend(backend):
    if backend not in ("cuda", "cpu"):
        raise ValueError(f"backend must be 'cuda' or 'cpu', got {backend!r}")


def adam8bit_step(p, g, state1, absmax1, state2, absmax2, *, step, lr=1e-3, betas=(0.9, 0.999),
                  eps=1e-8, weight_decay=0.0, backend="cuda", param_dtype="float32"):
    """One step of bitsandbytes' Adam8bit / AdamW8bit (the same kernel; weight decay is always
    decoupled, p *= 1 - lr*wd). m (state1) uses the signed map, v (state2) the unsigned one;
    both are dequantized with the absmax of the previous step and requantized with the new
    one. `step` counts from 1. Returns (p, state1, absmax1, state2, absmax2)."""
    _check_backend(backend)
    p = np.asarray(p, F32).ravel()
    g = np.asarray(g, F32).ravel()
    m = dequantize_blockwise(state1, absmax1, SIGNED)
    v = dequantize_blockwise(state2, absmax2, UNSIGNED)
    b1, b2 = betas
    if backend == "cuda":
        # kOptimizerStatic8bit2StateBlockwise: float32 hyper-parameters; a non-finite gradient
        # zeroes both states and leaves the parameter unchanged.
        b1, b2, lr32, eps32, wd32 = F32(b1), F32(b2), F32(lr), F32(eps), F32(weight_decay)
        ok = np.isfinite(g)
        gz = np.where(ok, g, F32(0))
        v = np.where(ok, v * b2 + (F32(1) - b2) * gz * gz, F32(0))
        m = np.where(ok, m * b1 + (F32(1) - b1) * gz, F32(0))
        c1 = F32(1) - b1 ** F32(step)
        c2 = np.sqrt(F32(1) - b2 ** F32(step))
        step_size = (-lr32 * c2) / c1
        new_p = store(p + step_size * (m / (np.sqrt(v) + c2 * eps32)), param_dtype)
        if weight_decay > 0:  # applied after the update, rounded to the parameter dtype again
            new_p = store(new_p * (F32(1) - lr32 * wd32), param_dtype)
        p = np.where(ok, new_p, p)
    else:
        # backends/cpu/ops.py: Python-float scalars rounded to float32 by torch.
        m = m * F32(b1) + F32(1.0 - b1) * g
        v = v * F32(b2) + F32(1.0 - b2) * g * g
        c1 = 1.0 - b1 ** step
        c2 = (1.0 - b2 ** step) ** 0.5
        denom = np.sqrt(v) / F32(c2) + F32(eps)
        if weight_decay > 0:  # applied before the update
            p = p * F32(1.0 - lr * weight_decay)
        p = store(p + F32(-lr / c1) * (m / denom), param_dtype)
    c1_, a1 = _requantize(m, SIGNED, backend)
    c2_, a2 = _requantize(v, UNSIGNED, backend)
    return p, c1_, a1, c2_, a2


def _one_state(kind, p, g, state1, absmax1, *, step, lr, beta1, eps, weight_decay, backend,
               param_dtype):
    """bitsandbytes' 1-state blockwise kernel for "momentum", "rmsprop" and "adagrad"; the state
    uses the signed map for all three."""
    _check_backend(backend)
    p = np.asarray(p, F32).ravel()
    g = np.asarray(g, F32).ravel()
    s = dequantize_blockwise(state1, absmax1, SIGNED)
    if backend == "cuda":
        # kOptimizerStatic8bit1StateBlockwise: weight decay enters the gradient of the state
        # update, but RMSprop and Adagrad divide the raw gradient in the parameter update.
        b1, lr32, eps32 = F32(beta1), F32(lr), F32(eps)
        gw = g + p * F32(weight_decay) if weight_decay > 0 else g
        if kind == "momentum":
            s = gw if step == 1 else s * b1 + gw
            p = p - lr32 * s
        else:
            s = s * b1 + (F32(1) - b1) * (gw * gw) if kind == "rmsprop" else s + gw * gw
            p = p - lr32 * (g / (np.sqrt(s) + eps32))
    else:
        gw = g + F32(weight_decay) * p
        if kind == "momentum":
            s = gw if step == 1 else s * F32(beta1) + gw
            p = p + F32(-lr) * s
        else:
            if kind == "rmsprop":
                s = s * F32(beta1) + F32(1.0 - beta1) * gw * gw
            else:
                s = s + gw * gw
            p = p + F32(-lr) * (gw / (np.sqrt(s) + F32(eps)))
    codes, absmax = _requantize(s, SIGNED, backend)
    return store(p, param_dtype), codes, absmax


def sgd8bit_step(p, g, state1, absmax1, *, step, lr, momentum, weight_decay=0.0, backend="cuda",
                 param_dtype="float32"):
    """SGD8bit: buf = g + wd*p at step 1, else momentum*buf + (g + wd*p); p -= lr*buf.
    dampening and nesterov are accepted by SGD8bit and ignored. Returns (p, state1, absmax1)."""
    return _one_state("momentum", p, g, state1, absmax1, step=step, lr=lr, beta1=momentum, eps=0.0,
                      weight_decay=weight_decay, backend=backend, param_dtype=param_dtype)


def rmsprop8bit_step(p, g, state1, absmax1, *, step, lr=1e-2, alpha=0.99, eps=1e-8,
                     weight_decay=0.0, backend="cuda", param_dtype="float32"):
    """RMSprop8bit: sq = alpha*sq + (1-alpha)*g^2; p -= lr*g/(sqrt(sq) + eps). momentum is
    accepted and ignored. Returns (p, state1, absmax1)."""
    return _one_state("rmsprop", p, g, state1, absmax1, step=step, lr=lr, beta1=alpha, eps=eps,
                      weight_decay=weight_decay, backend=backend, param_dtype=param_dtype)


def adagrad8bit_step(p, g, state1, absmax1, *, step, lr=1e-2, eps=1e-10, weight_decay=0.0,
                     backend="cuda", param_dtype="float32"):
    """Adagrad8bit: sum += g^2; p -= lr*g/(sqrt(sum) + eps). Returns (p, state1, absmax1)."""
    return _one_state("adagrad", p, g, state1, absmax1, step=step, lr=lr, beta1=0.0, eps=eps,
                      weight_decay=weight_decay, backend=backend, param_dtype=param_dtype)


def nadam8bit_step(p, g, state1, absmax1, state2, absmax2, mu_product, *, step, lr=2e-3,
                   betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                   decoupled_weight_decay=False, param_dtype="float32"):
    """NAdam with 8-bit m (signed map) and v (unsigned map), blockwise as Adam8bit with the
    "cuda" rounding, and torch.optim.NAdam's math (see nadam_bf16_step); mu_product is a
    float32 scalar. Returns (p, state1, absmax1, state2, absmax2, mu_product)."""
    p, codes, absmax, mu_product = torch_rule_8bit_step(
        "nadam", p, g, [state1, state2], [absmax1, absmax2], step=step, mu_product=mu_product,
        param_dtype=param_dtype, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay)
    return p, codes[0], absmax[0], codes[1], absmax[1], mu_product


# ---------------------------------------------------------------------------------------------
# bf16 state with torch's update rules (float32 math, each state rounded once when stored)
# ---------------------------------------------------------------------------------------------

def _lerp(a, b, w):
    """at::lerp with a scalar weight: a + w*(b-a) for |w| < 0.5, else b - (b-a)*(1-w)."""
    w = F32(w)
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (F32(1) - w)


def _decay(p, g, lr, weight_decay, decoupled):
    if weight_decay == 0:
        return p, g
    if decoupled:
        return p * F32(1 - lr * weight_decay), g
    return p, g + F32(weight_decay) * p


def _adam_math(p, g, m, v, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               decoupled=False):
    p, g = _decay(np.asarray(p, F32), np.asarray(g, F32), lr, weight_decay, decoupled)
    b1, b2 = betas
    m = _lerp(np.asarray(m, F32), g, 1 - b1)
    v = np.asarray(v, F32) * F32(b2) + F32(1 - b2) * g * g
    denom = np.sqrt(v) / F32((1 - b2 ** step) ** 0.5) + F32(eps)
    p = p + F32(-(lr / (1 - b1 ** step))) * (m / denom)
    return p, m, v


def adam_bf16_step(p, g, m, v, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False, param_dtype="float32"):
    """torch.optim.Adam (decoupled=True: AdamW), m and v stored as bf16. Returns (p, m, v)."""
    p, m, v = _adam_math(p, g, m, v, step=step, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled=decoupled)
    return store(p, param_dtype), round_bf16(m), round_bf16(v)


def _nadam_math(p, g, m, v, mu_product, step, lr, betas, eps, weight_decay, momentum_decay,
                decoupled):
    p, g = _decay(np.asarray(p, F32), np.asarray(g, F32), lr, weight_decay, decoupled)
    b1, b2 = betas
    mu = b1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product = F32(mu_product) * F32(mu)
    m = _lerp(np.asarray(m, F32), g, 1 - b1)
    v = np.asarray(v, F32) * F32(b2) + F32(1 - b2) * g * g
    denom = np.sqrt(v / F32(1 - b2 ** step)) + F32(eps)
    p = p + F32(-lr * (1.0 - mu) / (1.0 - float(mu_product))) * (g / denom)
    p = p + F32(-lr * mu_next / (1.0 - float(mu_product) * mu_next)) * (m / denom)
    return p, m, v, mu_product


def nadam_bf16_step(p, g, m, v, mu_product, *, step, lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                    weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False,
                    param_dtype="float32"):
    """torch.optim.NAdam: mu_t = b1(1 - 0.5*0.96^(t*momentum_decay)), mu_product (float32)
    *= mu_t, m = lerp(m, g, 1-b1), v = b2 v + (1-b2) g^2, denom = sqrt(v/(1-b2^t)) + eps,
    p += -lr(1-mu_t)/(1-mu_product) g/denom - lr mu_{t+1}/(1-mu_product mu_{t+1}) m/denom.
    m and v stored as bf16. Returns (p, m, v, mu_product)."""
    p, m, v, mu_product = _nadam_math(p, g, m, v, mu_product, step, lr, betas, eps, weight_decay,
                                      momentum_decay, decoupled_weight_decay)
    return store(p, param_dtype), round_bf16(m), round_bf16(v), mu_product


def _rmsprop_math(p, g, square_avg, momentum_buffer=None, grad_avg=None, *, lr=1e-2, alpha=0.99,
                  eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    p, g = _decay(np.asarray(p, F32), np.asarray(g, F32), lr, weight_decay, False)
    sq = np.asarray(square_avg, F32) * F32(alpha) + F32(1 - alpha) * g * g
    if centered:
        grad_avg = _lerp(np.asarray(grad_avg, F32), g, 1 - alpha)
        avg = np.sqrt(sq + F32(-1) * grad_avg * grad_avg) + F32(eps)
    else:
        avg = np.sqrt(sq) + F32(eps)
    if momentum > 0:
        momentum_buffer = np.asarray(momentum_buffer, F32) * F32(momentum) + g / avg
        p = p + F32(-lr) * momentum_buffer
    else:
        p = p + F32(-lr) * (g / avg)
    return p, sq, momentum_buffer if momentum > 0 else None, grad_avg if centered else None


def rmsprop_bf16_step(p, g, square_avg, momentum_buffer=None, grad_avg=None, *, param_dtype="float32",
                      **hyper):
    """torch.optim.RMSprop, states stored as bf16. Returns (p, square_avg, momentum_buffer,
    grad_avg); the last two are None when unused."""
    p, *states = _rmsprop_math(p, g, square_avg, momentum_buffer, grad_avg, **hyper)
    return (store(p, param_dtype),) + tuple(None if x is None else round_bf16(x) for x in states)


def _sgd_math(p, g, momentum_buffer, *, first, lr, momentum=0.0, dampening=0.0, nesterov=False,
              weight_decay=0.0):
    p, g = _decay(np.asarray(p, F32), np.asarray(g, F32), lr, weight_decay, False)
    buf = None
    if momentum != 0:
        buf = g.copy() if first else np.asarray(momentum_buffer, F32) * F32(momentum) + F32(1 - dampening) * g
        g = g + F32(momentum) * buf if nesterov else buf
    return p + F32(-lr) * g, buf


def sgd_bf16_step(p, g, momentum_buffer, *, first, param_dtype="float32", **hyper):
    """torch.optim.SGD, the momentum buffer stored as bf16 (first: the buffer is g at this
    step). Returns (p, momentum_buffer)."""
    p, buf = _sgd_math(p, g, momentum_buffer, first=first, **hyper)
    return store(p, param_dtype), None if buf is None else round_bf16(buf)


def _adagrad_math(p, g, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10):
    p, g = _decay(np.asarray(p, F32), np.asarray(g, F32), lr, weight_decay, False)
    clr = lr / (1 + (step - 1) * lr_decay)
    s = np.asarray(state_sum, F32) + g * g
    return p + F32(-clr) * (g / (np.sqrt(s) + F32(eps))), s


def adagrad_bf16_step(p, g, state_sum, *, step, param_dtype="float32", **hyper):
    """torch.optim.Adagrad (dense), the sum stored as bf16. Returns (p, state_sum)."""
    p, s = _adagrad_math(p, g, state_sum, step=step, **hyper)
    return store(p, param_dtype), round_bf16(s)


# ---------------------------------------------------------------------------------------------
# fusekit's 8-bit optimizers: torch's update rules on bitsandbytes' blockwise 8-bit state
# ---------------------------------------------------------------------------------------------

def torch_rule_8bit_step(rule, p, g, codes, absmax, *, step, mu_product=None, param_dtype="float32",
                         **hyper):
    """One step of fusekit's <rule>8bit: every state dequantized with its previous absmax
    (state1 on the signed map, state2 on the unsigned one), torch's float32 math, then
    requantized blockwise to the nearest code of the new absmax (even ties, the signed map
    keeping the sign: the "cuda" rounding of §3). rule: "adam" (hyper decoupled=True for
    Adam8bit/AdamW8bit), "nadam", "sgd" (first = step == 1), "rmsprop", "adagrad".
    Returns (p, codes, absmax, mu_product)."""
    maps = (SIGNED, UNSIGNED)
    s = [dequantize_blockwise(c, a, q) for c, a, q in zip(codes, absmax, maps)]
    if rule == "adam":
        p, *s = _adam_math(p, g, *s, step=step, **hyper)
    elif rule == "nadam":
        p, m, v, mu_product = _nadam_math(p, g, *s, mu_product, step, hyper.get("lr", 2e-3),
                                          hyper.get("betas", (0.9, 0.999)), hyper.get("eps", 1e-8),
                                          hyper.get("weight_decay", 0.0), hyper.get("momentum_decay", 4e-3),
                                          hyper.get("decoupled_weight_decay", False))
        s = [m, v]
    elif rule == "sgd":
        p, buf = _sgd_math(p, g, s[0], first=step == 1, **hyper)
        s = [buf]
    elif rule == "rmsprop":
        p, sq, _, _ = _rmsprop_math(p, g, s[0], **hyper)
        s = [sq]
    elif rule == "adagrad":
        p, acc = _adagrad_math(p, g, s[0], step=step, **hyper)
        s = [acc]
    else:
        raise ValueError(f"unknown rule {rule!r}")
    out = [_requantize(np.ravel(x), q, "cuda") for x, q in zip(s, maps)]
    return store(p, param_dtype), [c for c, _ in out], [a for _, a in out], mu_product


# ---------------------------------------------------------------------------------------------
# The tables of csrc/include/fusekit/math/quant8.h
# ---------------------------------------------------------------------------------------------

def quant8_tables():
    """name -> float32 values of the tables in quant8.h: each map and its bounds (bound[0] =
    -inf, bound[j] = midpoint of entries j-1 and j, bound[256] = +inf)."""
    out = {}
    for name, qmap in (("signed", SIGNED), ("unsigned", UNSIGNED)):
        out[name + " code"] = qmap
        out[name + " bound"] = np.concatenate([[-np.inf], midpoints(qmap), [np.inf]]).astype(F32)
    return out


def cxx_table(values, per_line=4, indent=" " * 6):
    """C++ hexadecimal float literals of float32 values (exact), `per_line` to a line."""
    def lit(x):
        if np.isinf(x):
            return "-INFINITY" if x < 0 else "INFINITY"
        mant, exp = float(abs(x)).hex().split("p")
        return ("-" if np.signbit(x) else "") + mant.rstrip("0").rstrip(".") + "p" + exp + "f"
    lits = [lit(x) for x in np.asarray(values, F32)]
    rows = [", ".join(lits[i:i + per_line]) for i in range(0, len(lits), per_line)]
    return ",\n".join(indent + r for r in rows)


if __name__ == "__main__":  # prints the table bodies of csrc/include/fusekit/math/quant8.h
    for name, values in quant8_tables().items():
        print(f"// {name}\n{cxx_table(values)}")
