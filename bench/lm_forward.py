#!/usr/bin/env python3
"""HF transformers (PyTorch) peer of the engine's forward pass, and the model it runs on.

  lm_forward.py make DIR [--arch gpt_neo|gpt2] [--seed S]
      A random model shaped like TinyStories-1L-21M (d_model 1024, 16 heads, d_mlp 4096, 1 layer,
      vocab 50257, 2048 positions, gelu_new; GPT-Neo with attention_types [[["global"], 1]]),
      saved with save_pretrained as model.safetensors, plus vocab.json and merges.txt from
      test/fixtures/tokenizer/gpt2/ so that the engine's loader finds a tokenizer.
      --arch gpt2 makes a GPT-2 model of the same shapes instead (HF's GPT-Neo has no SDPA
      attention; GPT-2 has).

  lm_forward.py time DIR [--batch 16] [--seq 512] [--warmup 1] [--repeats 3] [--threads N]
                         [--attn eager|sdpa] [--seed S]
      Times model.transformer(input_ids, use_cache=False) under torch.inference_mode(): the
      embeddings, every block (here the one block) and ln_f; no lm_head.  HF has no
      stop_at_layer, so this is the closest to the engine's pass up to blocks.0.hook_mlp_out (the
      engine also does block 0's last residual add; HF's ln_f is the extra).  Prints one JSON
      object; "error" instead of a time when HF refuses the attention implementation.  "others" is
      the share of the machine's CPUs that other processes (and hypervisor steal) used during the
      timed passes (/proc/stat, less this process's CPU time).

  lm_forward.py profile DIR [--batch 16] [--seq 512] [--threads N] [--attn eager|sdpa]
      One warm-up pass, then one pass of the same call under torch.profiler: HF's time per op.

  lm_forward.py check DIR --driver BIN [--batch 2] [--seq 512] [--threads N]
      Runs the engine's driver (bench/lm_forward.c) with the same random tokens and compares its
      blocks.0.hook_mlp_out with the output of HF's transformer.h[0].mlp (a forward hook):
      prints the max abs difference relative to max |HF| and the relative Frobenius error, and
      exits 1 if either is above --tol (1e-4).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKENIZER = os.path.join(ROOT, "test", "fixtures", "tokenizer", "gpt2")

SHAPE = dict(d_model=1024, n_heads=16, d_mlp=4096, n_layers=1, vocab=50257, n_positions=2048)


def make(args):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(args.seed)
    s = SHAPE
    if args.arch == "gpt_neo":
        cfg = GPTNeoConfig(vocab_size=s["vocab"], max_position_embeddings=s["n_positions"],
                           hidden_size=s["d_model"], num_layers=s["n_layers"],
                           attention_types=[[["global"], s["n_layers"]]], num_heads=s["n_heads"],
                           intermediate_size=s["d_mlp"], activation_function="gelu_new",
                           bos_token_id=50256, eos_token_id=50256)
        model = GPTNeoForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=s["vocab"], n_positions=s["n_positions"], n_embd=s["d_model"],
                         n_layer=s["n_layers"], n_head=s["n_heads"], n_inner=s["d_mlp"],
                         activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256)
        model = GPT2LMHeadModel(cfg)
    model.eval()
    os.makedirs(args.dir, exist_ok=True)
    model.save_pretrained(args.dir, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKENIZER, f), os.path.join(args.dir, f))
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"dir": args.dir, "arch": args.arch, "parameters": n,
                      "files": sorted(os.listdir(args.dir))}))


def load(dir, attn):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(dir, attn_implementation=attn, dtype=torch.float32)
    model.eval()
    return model


def tokens(B, T, vocab, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, T), generator=g, dtype=torch.int64)


def stat_snap():
    """All CPUs' busy and total jiffies from /proc/stat (busy counts steal)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, busy + v[3] + v[4]


def time_hf(args):
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    out = {"attn": args.attn, "threads": torch.get_num_threads(), "batch": args.batch,
           "seq": args.seq, "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        model = load(args.dir, args.attn)
    except Exception as e:  # GPT-Neo has no SDPA attention in HF
        out["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(json.dumps(out))
        return
    out["attn_used"] = model.config._attn_implementation
    out["arch"] = model.config.model_type
    ids = tokens(args.batch, args.seq, model.config.vocab_size, args.seed)
    secs, cpu = [], 0.0
    with torch.inference_mode():
        for i in range(args.warmup + args.repeats):
            if i == args.warmup:
                snap0 = stat_snap()
            t0 = time.perf_counter()
            c0 = time.process_time()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            h = model.transformer(input_ids=ids, use_cache=False).last_hidden_state
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            print(f"{'pass' if i >= args.warmup else 'warmup'} {i}: {dt:.3f} s, "
                  f"{args.batch * args.seq / dt:.1f} tokens/s, cpu {dc / dt:.2f} cores, "
                  f"{faults * resource.getpagesize() / 1e9:.2f} GB of page faults", file=sys.stderr)
            if i >= args.warmup:
                secs.append(dt)
                cpu += dc
    snap1 = stat_snap()
    hz = os.sysconf("SC_CLK_TCK")
    others = max(0.0, (snap1[0] - snap0[0]) - cpu * hz) / max(1, snap1[1] - snap0[1])
    assert h.shape == (args.batch, args.seq, model.config.hidden_size)
    med = statistics.median(secs)
    out.update({"seconds": secs, "median_s": med, "tokens_per_second": args.batch * args.seq / med,
                "others": others, "cpu_cores": cpu / sum(secs)})
    print(json.dumps(out))


def profile_hf(args):
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    model = load(args.dir, args.attn)
    ids = tokens(args.batch, args.seq, model.config.vocab_size, args.seed)
    with torch.inference_mode():
        model.transformer(input_ids=ids, use_cache=False)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            model.transformer(input_ids=ids, use_cache=False)
            dt = time.perf_counter() - t0
    print(f"HF {args.attn}, {args.batch} x {args.seq}, {torch.get_num_threads()} threads: one pass {dt:.3f} s "
          f"(under the profiler)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


def check(args):
    import torch

    torch.set_num_threads(args.threads)
    model = load(args.dir, "eager")
    ids = tokens(args.batch, args.seq, model.config.vocab_size, args.seed)
    got = {}
    handle = model.transformer.h[0].mlp.register_forward_hook(
        lambda mod, inp, out: got.__setitem__("mlp_out", out.detach().clone()))
    with torch.inference_mode():
        model.transformer(input_ids=ids, use_cache=False)
    handle.remove()
    ref = got["mlp_out"].reshape(args.batch * args.seq, -1).numpy().astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        tok_file, act_file = os.path.join(tmp, "tokens.i32"), os.path.join(tmp, "acts.f32")
        ids.numpy().astype(np.int32).tofile(tok_file)
        cmd = [args.driver, args.dir, "--batch", str(args.batch), "--seq", str(args.seq),
               "--warmup", "0", "--repeats", "1", "--threads", str(args.threads),
               "--hook", "blocks.0.hook_mlp_out", "--tokens", tok_file, "--dump", act_file]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours = np.fromfile(act_file, dtype=np.float32).reshape(ref.shape).astype(np.float64)
    max_rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
    fro_rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    ok = max_rel <= args.tol and fro_rel <= args.tol
    print(json.dumps({"check": "blocks.0.hook_mlp_out vs HF transformer.h[0].mlp output",
                      "batch": args.batch, "seq": args.seq, "max_abs_hf": float(np.abs(ref).max()),
                      "max_abs_diff_rel": max_rel, "frobenius_rel": fro_rel, "tol": args.tol,
                      "ok": ok}))
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--arch", choices=["gpt_neo", "gpt2"], default="gpt_neo")
    m.add_argument("--seed", type=int, default=0)
    for name in ("time", "check", "profile"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("--threads", type=int, default=os.cpu_count())
        p.add_argument("--seq", type=int, default=512)
        p.add_argument("--seed", type=int, default=1)
    t = sub.choices["time"]
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    pr = sub.choices["profile"]
    pr.add_argument("--batch", type=int, default=16)
    pr.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    pr.add_argument("--rows", type=int, default=20)
    c = sub.choices["check"]
    c.add_argument("--driver", required=True)
    c.add_argument("--batch", type=int, default=2)
    c.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    {"make": make, "time": time_hf, "check": check, "profile": profile_hf}[args.cmd](args)


if __name__ == "__main__":
    main()
