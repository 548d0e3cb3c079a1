#!/usr/bin/env python3
"""
make_golden.py -- PyTorch reference implementation of SAELens v1.0's classic
SAE training step (plus the seed fork's tanh_sae / noise / l2_squared
options), used to generate the small golden fixtures that the C engine's unit
tests compare against.

Run from the repository root:

    python3 test/golden/make_golden.py

It writes everything under test/fixtures/golden/ (about 0.4 MB) in ~10 s.  It needs
torch and numpy, and is meant for developer machines only: neither the build
nor the tests run it; they only read the fixtures it wrote.

The math follows reference/saelens.md (sections 1.3-1.6, 2.1-2.6 and 8); the
code below is written from that description, not copied from SAELens.

Fixtures
--------
test/fixtures/golden/<case>/      one directory per training case
    x.f32              n_steps*B x d_in     input batches, step order
    init_W_enc.f32     d_in x d_sae         parameters before step 0
    init_b_enc.f32     d_sae
    init_W_dec.f32     d_sae x d_in         (rows unit-norm for unit_norm_sae)
    init_b_dec.f32     d_in
    final_W_enc.f32    ...                  parameters after n_steps optimizer
    final_b_enc.f32                         steps (the decoder is NOT
    final_W_dec.f32                         renormalised after the last step;
    final_b_dec.f32                         that happens at the start of a step)
    losses.f32         n_steps x 6          per step: mse_loss, l1_loss (mean_b
                                            S_b, without lambda), ghost_grad_loss,
                                            overall_loss, l0, lr used at the step
    dead_features.txt  n_steps lines        #features in the dead mask used at
                                            that step (sparsity/dead_features)
    f64_check.txt      "key value" lines    informational: distance of this
                                            float32 golden from a float64 rerun
    noise_eps.f32      n_steps*B x d_sae    (noise cases only) the N(0,1) draws
                                            eps, before the noise_scale factor
    meta.txt           "key value" lines    shapes and the config (SAELens names)
test/fixtures/golden/lr_schedules.txt      LR of every step for several schedules
test/fixtures/golden/geomedian/            Weiszfeld geometric median
    points.f32 (n x d); median.f32 (d): Weiszfeld with SAELens's ftol early
    stop (float32 objectives stall, so it stops after a few iterations);
    median_full.f32 (d): all 100 iterations; meta.txt

All .f32 files are raw little-endian IEEE float32, row-major, no header.

Noise: eps for element (b, i) of the batch of 0-based step k is the engine's
sae_normal(seed, SAE_STREAM_NOISE + k, b*d_sae + i) from src/core/rng.h
(splitmix64 hash + float32 Box-Muller), reimplemented here with numpy uint64
arithmetic.  logf/sqrtf/cosf are taken from the C math library through ctypes
when it can be loaded, so the draws are bit-identical to the engine's CPU
build on glibc; otherwise numpy float32 log/sqrt/cos are used (they can
differ from libm by an ulp).

Regenerating on another machine (other BLAS, CPU, torch version) may change
the last bits of the outputs; the C tests compare with a tolerance.
"""

import ctypes
import ctypes.util
import math
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)  # fixed reduction order, repeatable output
torch.set_default_dtype(torch.float32)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "golden")

D_IN = 16
D_SAE = 64
BATCH = 32
N_STEPS = 25
ENGINE_SEED = 42

# --------------------------------------------------------------------------
# The engine's RNG (src/core/rng.h) in numpy
# --------------------------------------------------------------------------

U64 = np.uint64
SAE_STREAM_NOISE = 1 << 32


def _mix64(z):
    z = z + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def sae_hash3(seed, stream, index):
    """mix64(mix64(seed ^ mix64(stream)) + index), wrapping uint64."""
    with np.errstate(over="ignore"):
        s = _mix64(U64(stream))
        base = _mix64(U64(seed) ^ s)
        return _mix64(base + np.asarray(index, dtype=np.uint64))


def _load_libm():
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in ("logf", "sqrtf", "cosf"):
            f = getattr(lib, fn)
            f.restype = ctypes.c_float
            f.argtypes = [ctypes.c_float]
        return lib
    except (OSError, AttributeError):
        return None


_LIBM = _load_libm()


def _f32_map(fn, a):
    return np.array([fn(float(v)) for v in a.ravel()], dtype=np.float32).reshape(a.shape)


def sae_normal(seed, stream, index):
    """float32 Box-Muller exactly as rng.h's sae_normal."""
    h = sae_hash3(seed, stream, index)
    u1 = ((h >> U64(40)) + U64(1)).astype(np.float32) * np.float32(2.0 ** -24)
    u2 = (h & U64(0xFFFFFF)).astype(np.float32) * np.float32(2.0 ** -24)
    ang = np.float32(6.28318530717958647692) * u2
    if _LIBM is not None:
        lg = _f32_map(_LIBM.logf, u1)
        r = _f32_map(_LIBM.sqrtf, np.float32(-2.0) * lg)
        c = _f32_map(_LIBM.cosf, ang)
    else:
        r = np.sqrt(np.float32(-2.0) * np.log(u1))
        c = np.cos(ang)
    return (r * c).astype(np.float32)


def noise_eps(seed, n_steps, batch, d_sae):
    idx = np.arange(batch * d_sae, dtype=np.uint64)
    return np.stack(
        [sae_normal(seed, SAE_STREAM_NOISE + k, idx).reshape(batch, d_sae) for k in range(n_steps)]
    )


# --------------------------------------------------------------------------
# Learning-rate schedule: the real torch SequentialLR (saelens.md §1.4)
# --------------------------------------------------------------------------


def build_scheduler(opt, name, T, lr, W, D, lr_end, n_cycles):
    """SequentialLR: [LinearLR warm-up] + main + [LinearLR decay]."""
    sch = torch.optim.lr_scheduler
    t_main = T - W - D
    if name == "constant":
        main = sch.LambdaLR(opt, lr_lambda=lambda s: 1.0)
        decay_from = lr  # constant ignores lr_end: the decay starts at lr
    elif name == "cosineannealing":
        main = sch.CosineAnnealingLR(opt, T_max=t_main, eta_min=lr_end)
        decay_from = lr_end
    elif name == "cosineannealingwarmrestarts":
        main = sch.CosineAnnealingWarmRestarts(opt, T_0=t_main // n_cycles, eta_min=lr_end)
        decay_from = lr_end
    else:
        raise ValueError(name)
    scheds, milestones = [], []
    if W > 0:
        scheds.append(sch.LinearLR(opt, start_factor=1.0 / W, end_factor=1.0, total_iters=W - 1))
        milestones.append(W)
    scheds.append(main)
    if D > 0:
        assert decay_from != 0.0
        scheds.append(sch.LinearLR(opt, start_factor=decay_from / lr, end_factor=0.0, total_iters=D))
        milestones.append(T - D)
    return sch.SequentialLR(opt, schedulers=scheds, milestones=milestones)


def torch_lrs(name, T, lr, W, D, lr_end, n_cycles):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    s = build_scheduler(opt, name, T, lr, W, D, lr_end, n_cycles)
    out = []
    for _ in range(T):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


def formula_lr(name, T, lr, W, D, lr_end, n_cycles, k):
    """Closed forms of saelens.md §1.4, only to cross-check torch."""
    if k < W:
        return lr if W == 1 else lr * (1.0 / W + (1.0 - 1.0 / W) * k / (W - 1))
    if D > 0 and k >= T - D:
        end = lr if name == "constant" else lr_end
        return end * (1.0 - (k - (T - D)) / D)
    j = k - W
    t_main = T - W - D
    if name == "constant":
        return lr
    if name == "cosineannealing":
        return lr_end + (lr - lr_end) * (1 + math.cos(math.pi * j / t_main)) / 2
    t0 = t_main // n_cycles
    return lr_end + (lr - lr_end) * (1 + math.cos(math.pi * (j % t0) / t0)) / 2


def check_schedule(lrs, *args):
    for k, v in enumerate(lrs):
        f = formula_lr(*args, k)
        if abs(v - f) > 1e-9 * max(abs(f), 1e-12) + 1e-15:
            raise AssertionError(f"schedule {args} step {k}: torch {v!r} formula {f!r}")


# --------------------------------------------------------------------------
# The SAE and its training step (saelens.md §2.1-2.6, §1.5, §8)
# --------------------------------------------------------------------------


def per_item_mse(pred, target, normalization):
    """Element-wise squared error; dense_batch divides each row by the norm
    of the batch-centred TARGET row (+1e-6)."""
    e = (pred - target) ** 2
    if normalization == "dense_batch":
        centred = target - target.mean(dim=0, keepdim=True)
        e = e / (centred.norm(dim=-1, keepdim=True) + 1e-6)
    return e


def ghost_grad_loss(x, x_hat, E, h, W_dec, dead, normalization):
    r = x - x_hat
    rho = r.norm(dim=-1)
    g = torch.exp(h[:, dead])
    y = g @ W_dec[dead, :]
    c = rho / (1e-6 + 2.0 * y.norm(dim=-1))
    y = y * c[:, None].detach()
    Eg = per_item_mse(y, r.detach(), normalization)  # target = sg(r)
    R = (E / (Eg + 1e-6)).detach()
    return (R * Eg).mean()


def train_case(cfg, X, init, eps):
    """Run cfg['n_steps'] steps.  Returns final params, losses (n x 6),
    dead-feature counts."""
    unit_norm = cfg["sae_type"] == "unit_norm_sae"
    a = 1.0 if cfg["apply_b_dec_to_input"] else 0.0
    lam = cfg["l1_coefficient"]
    p = cfg["lp_norm"]
    mse_norm = cfg["mse_loss_normalization"]

    W_enc = torch.nn.Parameter(init["W_enc"].clone())
    b_enc = torch.nn.Parameter(init["b_enc"].clone())
    W_dec = torch.nn.Parameter(init["W_dec"].clone())
    b_dec = torch.nn.Parameter(init["b_dec"].clone())
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(
        params,
        lr=cfg["lr"],
        betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
        eps=1e-8,
        foreach=False,
    )
    sched = build_scheduler(
        opt,
        cfg["lr_scheduler_name"],
        cfg["total_steps"],
        cfg["lr"],
        cfg["lr_warm_up_steps"],
        cfg["lr_decay_steps"],
        cfg["lr_end"],
        cfg["n_restart_cycles"],
    )
    since_fired = torch.zeros(D_SAE)
    losses, dead_counts = [], []

    for k in range(cfg["n_steps"]):
        x = X[k]
        # (1) renormalise decoder rows before the forward
        if unit_norm:
            with torch.no_grad():
                W_dec.data /= W_dec.data.norm(dim=1, keepdim=True)
        # (2) dead mask from the counters before this step
        dead = since_fired > cfg["dead_feature_window"]
        dead_counts.append(int(dead.sum()))
        lr_used = opt.param_groups[0]["lr"]

        # (3) forward
        x_c = x - a * b_dec
        h = x_c @ W_enc + b_enc
        h_noisy = h
        if cfg["noise_scale"] > 0:
            h_noisy = h + cfg["noise_scale"] * eps[k]
        f = torch.relu(h_noisy)
        if cfg["sae_type"] == "tanh_sae":
            f = torch.tanh(f)
        x_hat = f @ W_dec + b_dec

        # (4) losses
        E = per_item_mse(x_hat, x, mse_norm)
        mse = E.mean()
        S = torch.norm(f, p=p, dim=1)
        if cfg["l1_loss_normalization"] == "l2_squared":
            S = S * x.norm(dim=-1) ** 2
        sparsity = S.mean()
        ghost = torch.zeros(())
        if cfg["use_ghost_grads"] and dead.sum() > 0:
            ghost = ghost_grad_loss(x, x_hat, E, h, W_dec, dead, mse_norm)
        loss = mse + lam * sparsity + ghost

        with torch.no_grad():
            fired = (f > 0).any(dim=0)
            since_fired += 1
            since_fired[fired] = 0
            l0 = (f > 0).float().sum(dim=1).mean()

        # (5) backward, (6) gradient projection, (7) Adam, (8) scheduler
        opt.zero_grad()
        loss.backward()
        if unit_norm:
            with torch.no_grad():
                G, Wd = W_dec.grad, W_dec.data
                alpha = (G * Wd).sum(dim=1, keepdim=True)
                G -= alpha * Wd
        opt.step()
        sched.step()

        losses.append(
            [mse.item(), sparsity.item(), float(ghost.item()), loss.item(), l0.item(), lr_used]
        )

    final = {
        "W_enc": W_enc.detach().clone(),
        "b_enc": b_enc.detach().clone(),
        "W_dec": W_dec.detach().clone(),
        "b_dec": b_dec.detach().clone(),
    }
    return final, np.array(losses, dtype=np.float32), dead_counts


# --------------------------------------------------------------------------
# Data and initialisation
# --------------------------------------------------------------------------


def make_data(n_rows, positive):
    """Sparse non-negative combinations of 32 directions plus an offset."""
    n_dirs = 32
    dirs = torch.randn(n_dirs, D_IN)
    if positive:
        dirs = dirs.abs()
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    active = (torch.rand(n_rows, n_dirs) < 0.12).float()
    mags = torch.rand(n_rows, n_dirs) * 2.0 + 0.5
    offset = torch.randn(D_IN)
    if positive:
        offset = offset.abs() * 0.5 + 0.5
    x = offset + (active * mags) @ dirs
    if not positive:
        x = x + 0.05 * torch.randn(n_rows, D_IN)
    return x.reshape(N_STEPS, BATCH, D_IN).contiguous()


def make_init(X, unit_norm, dead_half):
    W_enc = torch.nn.init.kaiming_uniform_(torch.empty(D_IN, D_SAE))
    b_enc = torch.zeros(D_SAE)
    W_dec = torch.nn.init.kaiming_uniform_(torch.empty(D_SAE, D_IN))
    if unit_norm:
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    if dead_half:
        # every other feature gets an all-negative encoder column: on the
        # all-positive data (and apply_b_dec_to_input = false) its
        # pre-activation is negative, so it never fires and goes dead
        cols = torch.arange(0, D_SAE, 2)
        W_enc[:, cols] = -2.0 * W_enc[:, cols].abs()
    b_dec = X[0].mean(dim=0)  # nonzero, so every b_dec path is exercised
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}


# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------


def write_f32(path, t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    a = np.ascontiguousarray(a, dtype="<f4")
    a.tofile(path)


def fmt(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)


META_KEYS = [
    "case", "d_in", "d_sae", "batch", "n_steps",
    "sae_type", "noise_scale", "mse_loss_normalization", "l1_coefficient",
    "lp_norm", "l1_loss_normalization", "apply_b_dec_to_input",
    "use_ghost_grads", "dead_feature_window", "lr", "lr_scheduler_name",
    "lr_warm_up_steps", "lr_decay_steps", "lr_end", "n_restart_cycles",
    "adam_beta1", "adam_beta2", "total_steps", "seed",
]


def base_cfg(case):
    return {
        "case": case,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "batch": BATCH,
        "n_steps": N_STEPS,
        "sae_type": "unit_norm_sae",
        "noise_scale": 0.0,
        "mse_loss_normalization": "none",
        "l1_coefficient": 0.01,
        "lp_norm": 1.0,
        "l1_loss_normalization": "none",
        "apply_b_dec_to_input": True,
        "use_ghost_grads": False,
        "dead_feature_window": 1000,
        "lr": 0.01,
        "lr_scheduler_name": "constant",
        "lr_warm_up_steps": 5,
        "lr_decay_steps": 0,
        "lr_end": 0.01 / 10,
        "n_restart_cycles": 1,
        "adam_beta1": 0.0,
        "adam_beta2": 0.999,
        "total_steps": N_STEPS,
        "seed": ENGINE_SEED,
    }


def cases():
    c1 = base_cfg("relu_basic")

    c2 = base_cfg("relu_dense_ghost")
    # lr is 0.0003, not relu_basic's 0.01: SAELens's ghost-grad loss is
    # ill-conditioned (R = E / (E_ghost + 1e-6) weights elements where the
    # ghost output nearly equals the residual by up to E * 1e6), so float32
    # rounding differences in the dead features' gradients grow through the
    # Adam dynamics; at lr 0.01 two float32 implementations (or float32 vs
    # float64) end up 1e-2 apart after 25 steps, at lr 0.0003 about 1e-6.
    c2.update(
        mse_loss_normalization="dense_batch",
        adam_beta1=0.9,
        use_ghost_grads=True,
        dead_feature_window=3,
        apply_b_dec_to_input=False,
        lr=0.0003,
        lr_end=0.0003 / 10,
    )

    c3 = base_cfg("tanh_noise")
    c3.update(
        sae_type="tanh_sae",
        noise_scale=0.5,
        l1_loss_normalization="l2_squared",
        lp_norm=2.0,
        l1_coefficient=0.001,
        lr=0.005,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=3,
        lr_decay_steps=4,
        lr_end=0.005 / 10,
    )
    return [(c1, 1), (c2, 2), (c3, 3)]


def write_f64_check(d, cfg, X, init, eps, final, losses, dead):
    """Rerun the case in float64 from the same inputs and record how far the
    float32 golden is from it: the float32 noise floor, a guide for the C
    tests' tolerances (another float32 implementation differs from this
    golden by about as much)."""
    torch.set_default_dtype(torch.float64)
    try:
        f64, l64, d64 = train_case(
            cfg,
            X.double(),
            {k: v.double() for k, v in init.items()},
            None if eps is None else eps.double(),
        )
    finally:
        torch.set_default_dtype(torch.float32)
    cols = ["mse_loss", "l1_loss", "ghost_grad_loss", "overall_loss", "l0", "lr"]
    with open(os.path.join(d, "f64_check.txt"), "w") as fh:
        fh.write("# float32 golden vs the same recipe run in float64 (informational)\n")
        for k in final:
            diff = float((final[k].double() - f64[k]).abs().max())
            change = float((f64[k] - init[k].double()).abs().max())
            fh.write(f"final_{k}_max_abs_diff {diff:.3e}\n")
            fh.write(f"final_{k}_max_abs_change_from_init {change:.3e}\n")
        rel = np.abs(losses.astype(np.float64) - l64.astype(np.float64))
        rel = rel / np.maximum(np.abs(l64.astype(np.float64)), 1e-30)
        for j, c in enumerate(cols):
            fh.write(f"losses_{c}_max_rel_diff {rel[:, j].max():.3e}\n")
        fh.write(f"dead_features_identical {1 if dead == d64 else 0}\n")


def gen_case(cfg, data_seed):
    torch.manual_seed(data_seed)
    ghost = cfg["use_ghost_grads"]
    X = make_data(N_STEPS * BATCH, positive=ghost)
    if ghost:
        assert float(X.min()) > 0.0
    init = make_init(X, cfg["sae_type"] == "unit_norm_sae", dead_half=ghost)
    eps = None
    eps_np = None
    if cfg["noise_scale"] > 0:
        eps_np = noise_eps(cfg["seed"], N_STEPS, BATCH, D_SAE)
        eps = torch.from_numpy(eps_np)

    final, losses, dead = train_case(cfg, X, init, eps)
    if ghost:
        w = cfg["dead_feature_window"]
        assert all(n > 0 for n in dead[w + 1:]), "ghost case needs dead features"

    d = os.path.join(OUT, cfg["case"])
    os.makedirs(d, exist_ok=True)
    write_f32(os.path.join(d, "x.f32"), X.reshape(-1, D_IN))
    for name, t in init.items():
        write_f32(os.path.join(d, f"init_{name}.f32"), t)
    for name, t in final.items():
        write_f32(os.path.join(d, f"final_{name}.f32"), t)
    write_f32(os.path.join(d, "losses.f32"), losses)
    with open(os.path.join(d, "dead_features.txt"), "w") as fh:
        fh.write("".join(f"{n}\n" for n in dead))
    if eps_np is not None:
        write_f32(os.path.join(d, "noise_eps.f32"), eps_np.reshape(-1, D_SAE))
    with open(os.path.join(d, "meta.txt"), "w") as fh:
        for key in META_KEYS:
            fh.write(f"{key} {fmt(cfg[key])}\n")
    write_f64_check(d, cfg, X, init, eps, final, losses, dead)

    print(f"== {cfg['case']}")
    print(" step      mse        l1     ghost   overall    l0        lr  dead")
    for k, row in enumerate(losses):
        print(
            f" {k:4d} {row[0]:9.5f} {row[1]:9.4f} {row[2]:9.5f} {row[3]:9.5f}"
            f" {row[4]:5.2f} {row[5]:9.6f} {dead[k]:5d}"
        )
    return dead


# --------------------------------------------------------------------------
# LR schedule fixture
# --------------------------------------------------------------------------

LR_SCHEDULES = [
    # name, T, lr, W, D, lr_end (None = lr/10), n_restart_cycles, scheduler
    ("constant_w10_d20", 100, 1e-3, 10, 20, None, 1, "constant"),
    ("constant_w0_d0", 100, 3e-4, 0, 0, None, 1, "constant"),
    ("constant_w1", 100, 1e-3, 1, 0, None, 1, "constant"),
    ("constant_w5_d10_lr_end_ignored", 100, 1e-3, 5, 10, 1e-5, 1, "constant"),
    ("cosine_w0", 100, 1e-3, 0, 0, None, 1, "cosineannealing"),
    ("cosine_w5", 100, 1e-3, 5, 0, None, 1, "cosineannealing"),
    ("cosine_w1_d10", 100, 1e-3, 1, 10, None, 1, "cosineannealing"),
    ("cosine_w10_d20_lr_end", 100, 2e-3, 10, 20, 2e-4, 1, "cosineannealing"),
    ("restarts_3", 100, 1e-3, 0, 0, None, 3, "cosineannealingwarmrestarts"),
    ("restarts_3_w4_d10", 100, 1e-3, 4, 10, None, 3, "cosineannealingwarmrestarts"),
    ("restarts_1_w5_d5_lr_end", 100, 1e-3, 5, 5, 5e-5, 1, "cosineannealingwarmrestarts"),
]


def gen_lr_schedules():
    lines = [
        "# LR-schedule golden values from torch.optim.lr_scheduler.SequentialLR,",
        "# built as SAELens v1.0 get_lr_scheduler does (reference/saelens.md 1.4).",
        "# Generated by test/golden/make_golden.py; do not edit by hand.",
        "#",
        "# Format: blocks, one per schedule.  A block is one header line",
        "#   name T lr lr_warm_up_steps lr_decay_steps lr_end n_restart_cycles scheduler",
        "# followed by exactly T lines, line k (k = 0..T-1) holding the learning",
        "# rate optimizer step k uses (optimizer.param_groups[0]['lr'] before the",
        "# step; scheduler.step() runs after every optimizer step).",
        "# lr_end is the config value after its default (lr/10) is applied; the",
        "# 'constant' scheduler ignores it and decays from lr instead.",
        "# T = total training steps.  Numbers are Python float repr (double).",
        "# Lines starting with '#' are comments.",
    ]
    for name, T, lr, W, D, lr_end, nc, sched in LR_SCHEDULES:
        if lr_end is None:
            lr_end = lr / 10
        lrs = torch_lrs(sched, T, lr, W, D, lr_end, nc)
        check_schedule(lrs, sched, T, lr, W, D, lr_end, nc)
        lines.append(f"{name} {T} {lr!r} {W} {D} {lr_end!r} {nc} {sched}")
        lines.extend(repr(float(v)) for v in lrs)
    with open(os.path.join(OUT, "lr_schedules.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"== lr_schedules: {len(LR_SCHEDULES)} schedules (torch agrees with the closed forms)")


# --------------------------------------------------------------------------
# Geometric median fixture (saelens.md §1.3)
# --------------------------------------------------------------------------


def geometric_median(points, eps=1e-6, maxiter=100, ftol=1e-20):
    """Weiszfeld in the points' dtype, starting at the mean; the objective
    uses the original (unit) weights; stop early only if the objective stops
    changing by more than ftol * objective."""
    w = torch.ones(points.shape[0], dtype=points.dtype)

    def wavg(wt):
        wt = wt / wt.sum()
        return (points * wt.view(-1, 1)).sum(dim=0)

    def objective(mu):
        return (torch.linalg.norm(points - mu.view(1, -1), dim=1) * w).sum()

    mu = wavg(w)
    obj = objective(mu)
    omega = w
    iters = 0
    for _ in range(maxiter):
        prev = obj
        dist = torch.linalg.norm(points - mu.view(1, -1), dim=1)
        omega = w / torch.clamp(dist, min=eps)
        mu = wavg(omega)
        obj = objective(mu)
        iters += 1
        if abs(prev - obj) <= ftol * obj:
            break
    return wavg(omega), float(obj), iters


def gen_geomedian():
    torch.manual_seed(7)
    n, d = 200, 8
    centre = torch.randn(d) * 2.0
    pts = centre + torch.randn(n, d)
    outliers = torch.randperm(n)[:10]
    pts[outliers] = centre + 40.0 + 20.0 * torch.randn(10, d)
    median, obj, iters = geometric_median(pts)
    # float32 objectives stall bit-exactly near the optimum, so SAELens's
    # ftol test (|F_prev - F| <= 1e-20 F) usually ends the loop early; an
    # implementation that always runs maxiter iterations (or sums in another
    # order) lands on the full-run value instead.  Both are written.
    median_full, obj_full, iters_full = geometric_median(pts, ftol=-1.0)
    d_out = os.path.join(OUT, "geomedian")
    os.makedirs(d_out, exist_ok=True)
    write_f32(os.path.join(d_out, "points.f32"), pts)
    write_f32(os.path.join(d_out, "median.f32"), median)
    write_f32(os.path.join(d_out, "median_full.f32"), median_full)
    diff = float((median - median_full).abs().max())
    with open(os.path.join(d_out, "meta.txt"), "w") as fh:
        fh.write(f"n {n}\nd {d}\nmaxiter 100\neps 1e-06\nftol 1e-20\n")
        fh.write(f"iterations_run {iters}\nobjective {obj!r}\n")
        fh.write(f"iterations_run_full {iters_full}\nobjective_full {obj_full!r}\n")
        fh.write(f"max_abs_diff_median_vs_full {diff!r}\n")
    print(
        f"== geomedian: n={n} d={d} ftol stop after {iters} iterations, objective {obj:.6f};"
        f" full {iters_full} iterations, objective {obj_full:.6f}; max |diff| {diff:.3g}\n"
        f"   mean   {pts.mean(0).numpy()}\n   median {median.numpy()}\n"
        f"   centre {centre.numpy()}"
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    print(f"noise math: {'libm via ctypes' if _LIBM is not None else 'numpy float32'}")
    for cfg, seed in cases():
        gen_case(cfg, data_seed=seed)
    gen_lr_schedules()
    gen_geomedian()
    return 0


if __name__ == "__main__":
    sys.exit(main())
