#!/usr/bin/env python3
"""The PyTorch side of bench/top_logits.sh, and the SAE it runs on.

    top_logits.py make-sae MODEL_DIR OUT_DIR [--d-sae N] [--seed S]
        a random standard SAE for the model's residual stream, saved by SAELens 6
        (SAE.save_model) so that sae_import reads it
    top_logits.py time MODEL_DIR SAE_DIR [--k K] [--threads T] [--repeats R]
        the seed's cell in PyTorch: W_dec @ W_U (HF's lm_head.weight.T) and torch.topk of the
        k largest and k smallest per feature; prints JSON with each repeat's seconds
"""
import argparse
import json
import time

import torch


def make_sae(model_dir, out_dir, d_sae, seed):
    from sae_lens import SAE, StandardSAEConfig

    d_in = json.load(open(f"{model_dir}/config.json"))["hidden_size"]
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu")
    cfg.metadata.model_name = "bench-model"
    cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    cfg.metadata.context_size = 128
    sae = SAE.from_dict(cfg.to_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            p = getattr(sae, name)
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    sae.save_model(out_dir)


def time_torch(model_dir, sae_dir, k, threads, repeats):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    w_u = AutoModelForCausalLM.from_pretrained(model_dir).lm_head.weight.detach().T.contiguous()
    w_dec = load_file(f"{sae_dir}/sae_weights.safetensors")["W_dec"]
    seconds = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            logits = w_dec @ w_u
            top = torch.topk(logits, k, dim=1, largest=True)
            bottom = torch.topk(logits, k, dim=1, largest=False)
            seconds.append(time.perf_counter() - t0)
            del logits
    print(json.dumps({"seconds": seconds, "d_sae": w_dec.shape[0], "d_model": w_dec.shape[1],
                      "d_vocab": w_u.shape[1], "first_top": int(top.indices[0, 0]),
                      "first_bottom": int(bottom.indices[0, 0])}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-sae")
    m.add_argument("model_dir")
    m.add_argument("out_dir")
    m.add_argument("--d-sae", type=int, default=16384)
    m.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time")
    t.add_argument("model_dir")
    t.add_argument("sae_dir")
    t.add_argument("--k", type=int, default=10)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "make-sae":
        make_sae(a.model_dir, a.out_dir, a.d_sae, a.seed)
    else:
        time_torch(a.model_dir, a.sae_dir, a.k, a.threads, a.repeats)


if __name__ == "__main__":
    main()
