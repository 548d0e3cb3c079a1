#!/usr/bin/env python3
"""PyTorch peer of sae_train: SAELens v1.0's classic training step, written as SAELens writes it.

The model is SAELens v1.0's SparseAutoencoder (sae_lens/training/sparse_autoencoder.py @ 6a3f447d)
and the loop body is its _train_step (train_sae_on_language_model.py), reference/saelens.md
§2.1-2.5:

  * parameters W_enc (d_in x d_sae, kaiming_uniform_), b_enc, W_dec (d_sae x d_in, kaiming_uniform_
    then unit rows), b_dec (mean of the first half-buffer), scaling_factor (ones, no grad);
  * forward: x - b_dec -> einsum with W_enc + b_enc -> ReLU -> (f * scaling_factor) einsum W_dec + b_dec
    (einops.einsum in SAELens, which is torch.einsum underneath; --matmul uses addmm instead);
  * loss = mse_loss(reduction="none").mean() + l1_coefficient * f.norm(p=1, dim=1).mean();
  * the step: renormalise W_dec rows, forward, dead-feature / firing counters, zero_grad,
    loss.backward(), remove the gradient parallel to each decoder row, Adam(betas=(0, 0.999)).step(),
    constant-LR scheduler.step(); W&B-style metrics every wandb_log_frequency steps.

Timing: `--warmup` steps, then `--steps` timed steps; tokens/s = steps * batch / seconds.
Prints one JSON object on stdout.

Activations come from --data (a .npy of float32 rows, or a binary COPY of the benchmark's real[]
column, so both sides train on the same rows) or are Gaussian if no file is given.  Batches are drawn like SAELens's store serves them: a shuffled
buffer cut into train_batch_size slices (the slicing is inside the timed loop; it is negligible).

--device cuda runs it on the GPU (the peer of bench/gpu_bench.c): every timed step ends with
torch.cuda.synchronize(), and --tf32 lets matmuls use TF32 (torch.backends.cuda.matmul.allow_tf32).

--sparse-l0 N shifts b_enc down so that about N features fire per token from the start: a
stand-in for the late, sparse phase of a real run (the L1 penalty has done its work), which a
20-step benchmark never reaches.  Off by default.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SparseAutoencoder(nn.Module):
    """SAELens v1.0 SparseAutoencoder, ReLU, unit-norm decoder, no ghost grads."""

    def __init__(self, d_in, d_sae, l1_coefficient, lp_norm=1.0, apply_b_dec_to_input=True, matmul=False):
        super().__init__()
        self.matmul = matmul
        self.d_in, self.d_sae = d_in, d_sae
        self.l1_coefficient = l1_coefficient
        self.lp_norm = lp_norm
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.W_enc = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(d_in, d_sae)))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(d_sae, d_in)))
        with torch.no_grad():
            self.set_decoder_norm_to_unit_norm()
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.scaling_factor = nn.Parameter(torch.ones(d_sae), requires_grad=False)

    def forward(self, x):
        sae_in = x - self.b_dec * self.apply_b_dec_to_input
        if self.matmul:  # plain matrix products (mm / addmm), not SAELens's einsum (which runs as bmm)
            hidden_pre = torch.addmm(self.b_enc, sae_in, self.W_enc)
            feature_acts = F.relu(hidden_pre)
            sae_out = torch.addmm(self.b_dec, feature_acts * self.scaling_factor, self.W_dec)
        else:
            hidden_pre = torch.einsum("...i,is->...s", sae_in, self.W_enc) + self.b_enc
            feature_acts = F.relu(hidden_pre)
            sae_out = torch.einsum("...s,si->...i", feature_acts * self.scaling_factor, self.W_dec) + self.b_dec
        per_item_mse_loss = F.mse_loss(sae_out, x.float(), reduction="none")
        mse_loss = per_item_mse_loss.mean()
        sparsity = feature_acts.norm(p=self.lp_norm, dim=1).mean(dim=(0,))
        l1_loss = self.l1_coefficient * sparsity
        loss = mse_loss + l1_loss
        return sae_out, feature_acts, loss, mse_loss, l1_loss

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        self.W_dec.data /= torch.norm(self.W_dec.data, dim=1, keepdim=True)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        parallel_component = torch.einsum("si,si->s", self.W_dec.grad, self.W_dec.data)
        self.W_dec.grad -= torch.einsum("s,si->si", parallel_component, self.W_dec.data)


def read_pgcopy(path, d):
    """Rows of a real[] column from `COPY (SELECT col FROM t) TO STDOUT (FORMAT binary)`."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw[:11].tobytes() != b"PGCOPY\n\xff\r\n\x00":
        sys.exit(f"torch_step.py: {path} is not a binary COPY file")
    ext = int.from_bytes(raw[15:19].tobytes(), "big")
    body = raw[19 + ext:]
    rec = 26 + 8 * d  # int16 nfields, int32 len, 5 x int32 array header, d x (int32 len, float4)
    n = (len(body) - 2) // rec
    recs = body[: n * rec].reshape(n, rec)
    ok = (body[n * rec: n * rec + 2].tobytes() == b"\xff\xff"
          and (recs[:, 0:2].view(">i2") == 1).all()
          and (recs[:, 10:14].view(">i4") == 0).all()              # no NULL elements
          and (recs[:, 14:18].view(">i4") == 700).all()            # float4
          and (recs[:, 18:22].view(">i4") == d).all()
          and (recs[:, 26:].reshape(n, d, 8)[:, :, 0:4].reshape(n, d * 4).view(">i4") == 4).all())
    if not ok:
        sys.exit(f"torch_step.py: {path} does not hold one real[{d}] column without NULLs")
    vals = np.ascontiguousarray(recs[:, 26:].reshape(n, d, 8)[:, :, 4:8]).reshape(n, d * 4)
    return vals.view(">f4").astype(np.float32)


def load_data(args):
    if args.data and args.data.endswith(".pgcopy"):
        return torch.from_numpy(read_pgcopy(args.data, args.d_in))
    if args.data:
        x = np.load(args.data, mmap_mode="r")
        if x.ndim != 2 or x.shape[1] != args.d_in:
            sys.exit(f"torch_step.py: {args.data} has shape {x.shape}, want (*, {args.d_in})")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    g = torch.Generator().manual_seed(args.seed)
    return torch.randn(args.rows, args.d_in, generator=g)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-in", type=int, required=True)
    p.add_argument("--d-sae", type=int, required=True)
    p.add_argument("--batch", type=int, required=True, help="train_batch_size (tokens per step)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", help=".npy of float32 rows, or a .pgcopy binary COPY of a real[] column (else Gaussian)")
    p.add_argument("--rows", type=int, default=32768, help="Gaussian rows if no --data")
    p.add_argument("--half-buffer", type=int, default=16384, help="rows used for the b_dec mean")
    p.add_argument("--l1", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--wandb-log-frequency", type=int, default=10)
    p.add_argument("--sparse-l0", type=float, default=0, help="start with about this L0 (see above)")
    p.add_argument("--matmul", action="store_true",
                   help="addmm instead of SAELens's einsum (torch runs einsum as bmm); a variant, not SAELens")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--tf32", action="store_true", help="with --device cuda: TF32 matmuls")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    data = load_data(args).to(dev)
    n = data.shape[0]

    sae = SparseAutoencoder(args.d_in, args.d_sae, args.l1, matmul=args.matmul).to(dev)
    with torch.no_grad():  # b_dec_init_method "mean", over the first (storage) half-buffer
        sae.b_dec.data = data[: min(n, args.half_buffer)].mean(dim=0).clone()
        if args.sparse_l0 > 0:
            # a global threshold at the (1 - L0/d_sae) quantile of the first batch's pre-activations
            xb = data[: args.batch] - sae.b_dec
            h = xb @ sae.W_enc
            idx = torch.randint(0, h.numel(), (min(h.numel(), 1 << 22),),
                                generator=torch.Generator().manual_seed(1)).to(dev)
            q = torch.quantile(h.reshape(-1)[idx], 1 - args.sparse_l0 / args.d_sae).item()
            sae.b_enc.data.fill_(-q)
            del h, xb

    optimizer = torch.optim.Adam(sae.parameters(), lr=args.lr, betas=(0.0, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # "constant", no warm-up
    act_freq_scores = torch.zeros(args.d_sae, device=dev)
    n_forward_passes_since_fired = torch.zeros(args.d_sae, device=dev)
    n_frac_active_tokens = 0
    dead_feature_window = 1000

    perm = torch.randperm(n, device=dev)
    pos = 0
    metrics = {}

    def next_batch():
        nonlocal pos, perm
        if pos + args.batch > n:
            perm = torch.randperm(n, device=dev)
            pos = 0
        b = data[perm[pos : pos + args.batch]]
        pos += args.batch
        return b

    def train_step(step, x):
        nonlocal n_frac_active_tokens
        sae.train()
        sae.set_decoder_norm_to_unit_norm()
        _dead_mask = n_forward_passes_since_fired > dead_feature_window
        sae_out, feature_acts, loss, mse_loss, l1_loss = sae(x)
        did_fire = (feature_acts > 0).float().sum(-2) > 0
        n_forward_passes_since_fired.add_(1)
        n_forward_passes_since_fired[did_fire] = 0
        with torch.no_grad():
            act_freq_scores.add_((feature_acts.abs() > 0).float().sum(0))
            n_frac_active_tokens += args.batch
        optimizer.zero_grad()
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        scheduler.step()
        if (step + 1) % args.wandb_log_frequency == 0:
            with torch.no_grad():  # SAELens's W&B train-step dict (the parts that touch tensors)
                l0 = (feature_acts > 0).float().sum(-1).mean()
                per_token_l2_loss = (sae_out - x).pow(2).sum(dim=-1).squeeze()
                total_variance = (x - x.mean(0)).pow(2).sum(-1)
                explained_variance = 1 - per_token_l2_loss / total_variance
                metrics.update(mse_loss=mse_loss.item(), l1_loss=l1_loss.item(), l0=l0.item(),
                               explained_variance=explained_variance.mean().item())
        return feature_acts

    step = 0
    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        train_step(step, next_batch())
        step += 1
    sync()
    warm_s = time.perf_counter() - t_warm
    times = []
    l0_sum = last_l0 = 0.0
    cpu0 = os.times()
    for _ in range(args.steps):
        ts = time.perf_counter()
        f = train_step(step, next_batch())
        sync()
        times.append(time.perf_counter() - ts)
        step += 1
        last_l0 = (f > 0).sum().item() / args.batch  # not SAELens's, so outside the timing
        l0_sum += last_l0
        del f
    cpu1 = os.times()
    total = sum(times)
    wall_all = time.perf_counter() - t_warm - warm_s
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    out = {
        "impl": "torch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "tf32": args.tf32,
        "threads": torch.get_num_threads(),
        "d_in": args.d_in, "d_sae": args.d_sae, "batch": args.batch,
        "steps": args.steps, "warmup": args.warmup,
        "seconds": total,
        "tokens_per_second": args.steps * args.batch / total,
        "step_seconds_median": sorted(times)[len(times) // 2],
        "step_seconds_min": min(times),
        "warmup_seconds": warm_s,
        "cpu_cores": cpu / wall_all if wall_all > 0 else 0,  # CPU time / wall time over the timed steps
        "mean_l0": l0_sum / max(1, args.steps),
        "last_l0": last_l0,
        "sparse_l0_target": args.sparse_l0,
        "variant": "addmm" if args.matmul else "einsum (SAELens)",
        "metrics": metrics,
        "rows": n,
        "process_cpu_seconds": (lambda c: c.user + c.system)(os.times()),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
