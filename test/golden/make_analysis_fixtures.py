#!/usr/bin/env python3
"""Fixtures for sae_top_logits (test/unit/test_analysis.c): W_dec @ W_U and its top/bottom k,
computed by PyTorch and HF transformers on the tiny GPT-2 of test/fixtures/lm/gpt2.

    python3 test/golden/make_analysis_fixtures.py

Writes test/fixtures/golden/top_logits/: w_dec.f32 (M x d_model, seeded normal rows), and for
K = 7 top_ids.i32 / top_values.f32 (torch.topk of W_dec @ W_U, largest) and bottom_ids.i32 /
bottom_values.f32 (smallest), raw little-endian, row-major M x K.  W_U is the unembedding
without bias, as TransformerLens's model.W_U of the unprocessed model (lm_head.weight.T).
"""
import json
import os

import numpy as np
import torch
from transformers import GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "fixtures", "lm", "gpt2")
OUT = os.path.join(HERE, "..", "fixtures", "golden", "top_logits")
M, K = 48, 7


def main():
    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_pretrained(MODEL).eval()
    w_u = model.lm_head.weight.detach().T.contiguous()          # d_model x vocab
    w_dec = torch.randn(M, w_u.shape[0], generator=torch.Generator().manual_seed(1))
    logits = (w_dec.double() @ w_u.double())                     # float64: no near-ties reordered
    top = torch.topk(logits, K, dim=1, largest=True, sorted=True)
    bottom = torch.topk(logits, K, dim=1, largest=False, sorted=True)
    os.makedirs(OUT, exist_ok=True)
    w_dec.numpy().astype("<f4").tofile(os.path.join(OUT, "w_dec.f32"))
    top.indices.numpy().astype("<i4").tofile(os.path.join(OUT, "top_ids.i32"))
    top.values.numpy().astype("<f4").tofile(os.path.join(OUT, "top_values.f32"))
    bottom.indices.numpy().astype("<i4").tofile(os.path.join(OUT, "bottom_ids.i32"))
    bottom.values.numpy().astype("<f4").tofile(os.path.join(OUT, "bottom_values.f32"))
    with open(os.path.join(OUT, "shape.json"), "w") as f:
        json.dump({"m": M, "k": K, "d_model": w_u.shape[0], "d_vocab": w_u.shape[1]}, f)
        f.write("\n")
    # the gap between the K-th and (K+1)-th value: our float32 product must not swap them
    gaps = torch.topk(logits, K + 1, dim=1).values
    print("smallest top-k gap:", float((gaps[:, K - 1] - gaps[:, K]).min()))


if __name__ == "__main__":
    main()
