#!/usr/bin/env python3
"""
make_seed_fixtures.py -- two more tiny random checkpoints, shaped like the
models of the seed tutorials, for tests that need their layer counts and
context lengths rather than make_lm_fixtures.py's 2-layer, 64-position pair.

Run from the repository root, AFTER make_lm_fixtures.py (which deletes and
rewrites all of test/fixtures/lm/, these folders included):

    python3 test/golden/make_seed_fixtures.py

It (re)writes only these two folders:

  test/fixtures/lm/gpt2-12l/  GPT2LMHeadModel, 12 layers (the GPT-2
                              all-layers tutorial trains on 12), n_embd 32,
                              n_head 4 (d_head 8), d_mlp 128, n_positions 256
  test/fixtures/lm/neo-1l/    GPTNeoForCausalLM with one global layer (the
                              architecture of TinyStories-1Layer-21M), hidden
                              32, 4 heads, d_mlp 128, max_position_embeddings
                              512, window_size 256 (unused: no local layer)

Both: vocab 1000 (test/fixtures/tokenizer/small, "<|endoftext|>" = 0 = bos
= eos), gelu_new, LayerNorm eps 1e-5, tied unembedding; save_pretrained
(config.json, generation_config.json, model.safetensors) plus vocab.json and
merges.txt.  Weights exactly as make_lm_fixtures.py draws them (its
randomize(): matrices ~ N(0, 1/fan_in), wte 0.2 N, wpe 0.3 N, LayerNorm
weights 1 + 0.2 N, every bias 0.1 N) from seeded torch.Generators, so a rerun
with the same torch gives the same values.

Checks made: the folders reload in transformers with bit-identical weights
and logits, and a TransformerLens HookedTransformer built from them without
weight processing (as make_lm_fixtures.py builds its references) gives HF's
logits within atol 1e-5 + rtol 1e-5.  No reference activations are written.
"""
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_lm_fixtures as lmf  # noqa: E402  (sets the seed, 1 thread, deterministic algorithms)

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
)
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

GPT2_12L_SEED = lmf.SEED + 101
NEO_1L_SEED = lmf.SEED + 102
D_MODEL = 32
N_HEADS = 4
MAX_BYTES = 1_100_000  # "about 1 MB" per folder


def gpt2_12l_config():
    return GPT2Config(
        vocab_size=lmf.VOCAB,
        n_positions=256,
        n_embd=D_MODEL,
        n_layer=12,
        n_head=N_HEADS,
        activation_function="gelu_new",
        layer_norm_epsilon=lmf.EPS,
        bos_token_id=0,
        eos_token_id=0,
    )


def neo_1l_config():
    return GPTNeoConfig(
        vocab_size=lmf.VOCAB,
        max_position_embeddings=512,
        hidden_size=D_MODEL,
        num_layers=1,
        num_heads=N_HEADS,
        attention_types=[[["global"], 1]],
        window_size=256,
        intermediate_size=None,
        activation_function="gelu_new",
        layer_norm_epsilon=lmf.EPS,
        bos_token_id=0,
        eos_token_id=0,
    )


def tl_raw(hf, arch):
    """TL without weight processing, as make_lm_fixtures.tl_model(processed=False),
    for any layer count / context."""
    c = hf.config
    n_layers = c.n_layer if arch == "GPT2LMHeadModel" else c.num_layers
    n_ctx = c.n_positions if arch == "GPT2LMHeadModel" else c.max_position_embeddings
    common = dict(
        n_layers=n_layers, d_model=D_MODEL, d_head=D_MODEL // N_HEADS, n_heads=N_HEADS,
        d_mlp=4 * D_MODEL, d_vocab=lmf.VOCAB, n_ctx=n_ctx, eps=lmf.EPS, act_fn="gelu_new",
        normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=True,
        original_architecture=arch, init_weights=False, device="cpu", dtype=torch.float32,
    )
    if arch == "GPT2LMHeadModel":
        common.update(model_name="tiny-random-gpt2-12l", use_attn_scale=True, use_local_attn=False,
                      scale_attn_by_inverse_layer_idx=False)
        conv = lmf.convert_gpt2_weights
    else:
        common.update(model_name="tiny-random-gpt-neo-1l", use_attn_scale=False, use_local_attn=True,
                      attn_types=list(c.attention_layers), window_size=c.window_size,
                      scale_attn_by_inverse_layer_idx=False)
        conv = lmf.convert_neo_weights
    cfg = HookedTransformerConfig(**common)
    sd = {k: v.detach().clone() for k, v in conv(hf, cfg).items()}
    m = HookedTransformer(cfg, move_to_device=False)
    m.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False,
                                  center_unembed=False, fold_value_biases=False,
                                  refactor_factored_attn_matrices=False)
    m.eval()
    return m


def build(name, cls, config, seed, conv1d, arch, toks):
    d = os.path.join(lmf.OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    hf = cls._from_config(config, attn_implementation="eager")
    lmf.randomize(hf, seed, conv1d=conv1d)
    hf.eval()
    hf.save_pretrained(d)
    lmf.copy_tok(d, ["vocab.json", "merges.txt"])

    with torch.no_grad():
        logits = hf(toks).logits
        back = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
        assert type(back) is cls, (name, type(back))
        a, b = back.state_dict(), hf.state_dict()
        for k in b:
            assert torch.equal(a[k], b[k]), (name, k)
        assert torch.equal(back(toks).logits, logits), name
        tl_logits = tl_raw(hf, arch)(toks)
    diff = (tl_logits - logits).abs().max().item()
    assert torch.allclose(tl_logits, logits, atol=1e-5, rtol=1e-5), (name, diff)
    size = lmf.folder_size(d)
    assert size <= MAX_BYTES, (name, size)
    files = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    return dict(params=sum(p.numel() for p in hf.parameters()), bytes=size, files=files,
                tl_vs_hf_max_abs=diff)


def main():
    assert os.path.isdir(os.path.join(lmf.OUT, "gpt2")), "run make_lm_fixtures.py first"
    toks = lmf.make_tokens()
    res = {
        "gpt2-12l": build("gpt2-12l", GPT2LMHeadModel, gpt2_12l_config(), GPT2_12L_SEED, True,
                          "GPT2LMHeadModel", toks),
        "neo-1l": build("neo-1l", GPTNeoForCausalLM, neo_1l_config(), NEO_1L_SEED, False,
                        "GPTNeoForCausalLM", toks),
    }
    print("versions:", lmf.versions())
    for k, r in res.items():
        print(k, r)


if __name__ == "__main__":
    main()
