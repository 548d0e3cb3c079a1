#!/usr/bin/env python3
"""
make_lm_fixtures.py -- tiny random GPT-2 and GPT-Neo checkpoints, and the
activations TransformerLens (TL) and Hugging Face transformers (HF) compute
for them, as reference data for the engine's C forward pass.

Run from the repository root:

    python3 test/golden/make_lm_fixtures.py

It deletes and rewrites test/fixtures/lm/ (about 3 MB), including
test/fixtures/lm/README.md, which records the package versions that made
the files and a table of what each folder holds.  It needs torch,
transformers (>= 5: save_pretrained has no pytorch_model.bin writer any
more, so the .bin files are written with torch.save here), tokenizers,
numpy and transformer-lens (PyPI); CPU only.  It is meant for developer
machines only: neither the build nor the tests run Python, they only read
the files written here.

Determinism: every random value comes from torch.Generator(seed) objects
created here (the weights are overwritten after construction, so HF's own
init code plays no part), torch runs single-threaded with deterministic
algorithms.  A rerun with the same versions gives the same values; other
versions of torch may round differently (~1e-7 relative), and torch/safetensors
may put different bytes in the containers (zip padding, header order).

Models (identical dims for both): vocab 1000 (the 1000-token byte-level BPE
of test/fixtures/tokenizer/small/, where "<|endoftext|>" is id 0, so
bos = eos = 0), 64 positions, d_model 32, 2 layers, 4 heads (d_head 8),
d_mlp 128, gelu_new, LayerNorm eps 1e-5, tied unembedding.  GPT-Neo's layers
are ["global", "local"] with window_size 8 (local: i-8 < j <= i), so the
sequences (T = 20) exercise the window.

Weights: matrices ~ N(0, 1/fan_in), wte ~ N(0, 0.2^2), wpe ~ N(0, 0.3^2),
LayerNorm weights 1 + 0.2*N(0,1), every bias (LayerNorm and linear) 0.1*N(0,1)
-- nothing is left at its default 1/0, which would hide bugs.  The two
models' seeds (GPT2_SEED, NEO_SEED) were picked so that greedy decoding does
not just repeat one token (a random model easily falls into that); the
script asserts every greedy step wins by a logit margin >= 1e-3, far above
float32 rounding, so a correct C implementation must reproduce it exactly.

Checkpoint folders (test/fixtures/lm/):
  gpt2/          save_pretrained: config.json, generation_config.json,
                 model.safetensors ("transformer." names, no lm_head.weight),
                 vocab.json + merges.txt
  gpt2-sharded/  save_pretrained(max_shard_size="100KB"):
                 model-0000K-of-0000N.safetensors + model.safetensors.index.json,
                 vocab.json + merges.txt
  gpt2-bin/      pytorch_model.bin written by torch.save (zip format) in the
                 layout of OpenAI's original gpt2 checkpoint: names WITHOUT
                 the "transformer." prefix, no lm_head.weight, and the legacy
                 non-parameter buffers h.N.attn.bias (float32 [1,1,64,64]
                 causal mask) and h.N.attn.masked_bias (float32 scalar -1e4);
                 config.json, tokenizer.json
  neo/           save_pretrained: model.safetensors, vocab.json + merges.txt
  neo-bin/       pytorch_model.bin by torch.save (zip format) of the model's
                 state_dict as a 2023-era transformers wrote it (TinyStories):
                 "transformer." names, lm_head.weight sharing wte's storage,
                 plus the legacy buffers transformer.h.N.attn.attention.bias
                 (bool [1,1,64,64]; the local layer's is the windowed mask)
                 and ...attention.masked_bias (float32 scalar -1e9);
                 config.json, tokenizer.json
transformers loads every folder (checked below: identical logits).

Reference data (test/fixtures/lm/ref/):
  tokens.txt               2 lines, 20 space-separated ids each: BOS (0) +
                           the tokenizer's ids of an English sentence
  <model>/hf_logits.f32    HF model(input_ids).logits, [2,20,1000] (eager attention),
                           listed in <model>/manifest.txt
  <model>/raw/             TL HookedTransformer without weight processing
                           (what SAELens >= 3.19.2 trains on): every hook of
                           run_with_cache(tokens) and logits.f32
  <model>/processed/       the same with from_pretrained's default processing
                           (fold_ln, center_writing_weights, center_unembed,
                           fold_value_biases)
  <model>/greedy.txt       line 1: the 6 prompt ids (first 6 tokens of
                           sequence 0); line 2: prompt + 10 greedy tokens
                           from HF generate(do_sample=False,
                           max_new_tokens=10, pad_token_id=0,
                           eos_token_id=None).  eos_token_id=None is passed
                           so that generating id 0 does not stop early;
                           the script checks exactly 10 tokens came out and
                           that they equal an argmax loop over full
                           (cache-free) forward passes.
Each <x>.f32 file is raw little-endian float32, C order, batch first, in
exactly the shape TL gives (e.g. blocks.0.attn.hook_pattern [2,4,20,20]);
hook_attn_scores keeps TL's -inf at masked positions.  Each folder's
manifest.txt has one line per file: "<name> <ndim> <dim0> <dim1> ...".
TL 3.x's unembed.hook_out is bit-identical to the logits and not written.
TL's *.hook_normalized is (x - mean) / scale, before the LayerNorm's weight
and bias, in both raw/ and processed/ (check_processing() asserts how every
processed hook relates to the raw one).

The TL models are built by hand (HookedTransformerConfig + TL's own
convert_gpt2_weights / convert_neo_weights + load_and_process_state_dict),
because from_pretrained only accepts official model names; the script
asserts TL's logits match HF's (raw: equal within atol 1e-5 + rtol 1e-5;
processed: equal to HF's minus their mean over the vocabulary, same tolerance).
"""
import json
import math
import os
import shutil
import sys
import warnings
import zipfile

import numpy as np
import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
)
import tokenizers  # noqa: E402
import transformer_lens  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

try:
    from transformer_lens.pretrained.weight_conversions import (
        convert_gpt2_weights,
        convert_neo_weights,
    )
except ImportError:  # TL 2.x before the weight_conversions package
    from transformer_lens.loading_from_pretrained import (  # type: ignore
        convert_gpt2_weights,
        convert_neo_weights,
    )

from importlib.metadata import version as pkg_version  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK_DIR = os.path.join(ROOT, "test", "fixtures", "tokenizer", "small")
OUT = os.path.join(ROOT, "test", "fixtures", "lm")

SEED = 20240601
GPT2_SEED = SEED + 1
NEO_SEED = SEED + 12
MIN_GREEDY_MARGIN = 1e-3
T = 20
VOCAB = 1000
N_POS = 64
D_MODEL = 32
N_LAYERS = 2
N_HEADS = 4
WINDOW = 8
EPS = 1e-5
PROMPT_LEN = 6
NEW_TOKENS = 10

SENTENCES = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
    "The quick brown fox jumps over the lazy dog, and then it runs back home to sleep.",
]
MORE_TEXT = " It was a happy day for everyone in the little town by the sea."

torch.manual_seed(SEED)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def versions():
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": pkg_version("transformer-lens"),
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "safetensors": pkg_version("safetensors"),
    }


# ---------------------------------------------------------------------------
# models


def gpt2_config():
    return GPT2Config(
        vocab_size=VOCAB,
        n_positions=N_POS,
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        activation_function="gelu_new",
        layer_norm_epsilon=EPS,
        bos_token_id=0,
        eos_token_id=0,
    )


def neo_config():
    return GPTNeoConfig(
        vocab_size=VOCAB,
        max_position_embeddings=N_POS,
        hidden_size=D_MODEL,
        num_layers=N_LAYERS,
        num_heads=N_HEADS,
        attention_types=[[["global", "local"], 1]],
        window_size=WINDOW,
        intermediate_size=None,
        activation_function="gelu_new",
        layer_norm_epsilon=EPS,
        bos_token_id=0,
        eos_token_id=0,
    )


def randomize(model, seed, conv1d):
    """Overwrite every parameter with seeded values (see the docstring).
    conv1d: weights are [in, out] (GPT-2) rather than nn.Linear's [out, in]."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape = tuple(p.shape)
            n = torch.randn(shape, generator=g, dtype=torch.float32)
            if name.endswith("wte.weight"):
                v = 0.2 * n
            elif name.endswith("wpe.weight"):
                v = 0.3 * n
            elif ".ln_" in name and name.endswith(".weight"):
                v = 1.0 + 0.2 * n
            elif name.endswith(".bias"):
                v = 0.1 * n
            elif name.endswith(".weight") and len(shape) == 2:
                fan_in = shape[0] if conv1d else shape[1]
                v = n / math.sqrt(fan_in)
            else:
                raise AssertionError(f"unexpected parameter {name} {shape}")
            p.copy_(v)
    # the tied unembedding must still be wte
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def make_models():
    gpt2 = GPT2LMHeadModel._from_config(gpt2_config(), attn_implementation="eager")
    randomize(gpt2, GPT2_SEED, conv1d=True)
    neo = GPTNeoForCausalLM._from_config(neo_config(), attn_implementation="eager")
    randomize(neo, NEO_SEED, conv1d=False)
    gpt2.eval()
    neo.eval()
    return gpt2, neo


# ---------------------------------------------------------------------------
# saving checkpoints


def copy_tok(folder, files):
    for f in files:
        shutil.copyfile(os.path.join(TOK_DIR, f), os.path.join(folder, f))


def save_gpt2_openai_bin(model, folder):
    """pytorch_model.bin in the layout of openai-community/gpt2's legacy file."""
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        assert k.startswith("transformer.")
        sd[k[len("transformer."):]] = v.detach().clone()
    mask = torch.tril(torch.ones(N_POS, N_POS, dtype=torch.float32)).view(1, 1, N_POS, N_POS)
    out = {}
    for k, v in sd.items():  # insert buffers after each layer's attn params, like the old module order
        out[k] = v
        for i in range(N_LAYERS):
            if k == f"h.{i}.attn.c_proj.bias":
                out[f"h.{i}.attn.bias"] = mask.clone()
                out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(out, os.path.join(folder, "pytorch_model.bin"))


def save_neo_legacy_bin(model, folder):
    """pytorch_model.bin as transformers 4.2x wrote it for GPTNeoForCausalLM."""
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    sd = model.state_dict()  # includes lm_head.weight, which shares wte's storage
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    causal = torch.tril(torch.ones(N_POS, N_POS, dtype=torch.bool))
    out = {}
    for k, v in sd.items():
        out[k] = v
        for i, kind in enumerate(model.config.attention_layers):
            if k == f"transformer.h.{i}.attn.attention.out_proj.bias":
                m = causal
                if kind == "local":
                    m = torch.bitwise_xor(causal, torch.tril(causal, -WINDOW))
                out[f"transformer.h.{i}.attn.attention.bias"] = m.view(1, 1, N_POS, N_POS).clone()
                out[f"transformer.h.{i}.attn.attention.masked_bias"] = torch.tensor(-1e9)
    torch.save(out, os.path.join(folder, "pytorch_model.bin"))


def save_all(gpt2, neo):
    d = os.path.join(OUT, "gpt2")
    gpt2.save_pretrained(d)
    copy_tok(d, ["vocab.json", "merges.txt"])

    d = os.path.join(OUT, "gpt2-sharded")
    gpt2.save_pretrained(d, max_shard_size="100KB")
    copy_tok(d, ["vocab.json", "merges.txt"])
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    nshards = len(set(idx["weight_map"].values()))
    assert nshards >= 2, nshards

    d = os.path.join(OUT, "gpt2-bin")
    save_gpt2_openai_bin(gpt2, d)
    copy_tok(d, ["tokenizer.json"])

    d = os.path.join(OUT, "neo")
    neo.save_pretrained(d)
    copy_tok(d, ["vocab.json", "merges.txt"])

    d = os.path.join(OUT, "neo-bin")
    save_neo_legacy_bin(neo, d)
    copy_tok(d, ["tokenizer.json"])

    for d in ("gpt2-bin", "neo-bin"):
        p = os.path.join(OUT, d, "pytorch_model.bin")
        assert zipfile.is_zipfile(p), p
        with zipfile.ZipFile(p) as z:
            assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    return nshards


# ---------------------------------------------------------------------------
# tokens


def make_tokens():
    tok = tokenizers.Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
    assert tok.token_to_id("<|endoftext|>") == 0
    rows = []
    for s in SENTENCES:
        ids = tok.encode(s, add_special_tokens=False).ids
        while len(ids) < T - 1:
            s += MORE_TEXT
            ids = tok.encode(s, add_special_tokens=False).ids
        rows.append([0] + ids[: T - 1])
    toks = torch.tensor(rows, dtype=torch.long)
    assert toks.shape == (2, T)
    assert (toks[:, 1:] != 0).all()
    return toks


def check_folder_tokenizers(toks):
    """Every folder's tokenizer files load in transformers and encode the sentences as tokens.txt."""
    res = {}
    for d in ("gpt2", "gpt2-sharded", "gpt2-bin", "neo", "neo-bin"):
        t = AutoTokenizer.from_pretrained(os.path.join(OUT, d))
        assert t.bos_token_id == 0 and t.eos_token_id == 0, (d, t.bos_token_id, t.eos_token_id)
        for i, s in enumerate(SENTENCES):
            ids = t(s, add_special_tokens=False)["input_ids"]
            n = min(len(ids), T - 1)
            assert ids[:n] == toks[i, 1:1 + n].tolist(), d
        res[d] = type(t).__name__
    return res


# ---------------------------------------------------------------------------
# TransformerLens


def tl_config(hf, arch, processed):
    c = hf.config
    common = dict(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        d_head=D_MODEL // N_HEADS,
        n_heads=N_HEADS,
        d_mlp=4 * D_MODEL,
        d_vocab=VOCAB,
        n_ctx=N_POS,
        eps=EPS,
        act_fn="gelu_new",
        normalization_type="LNPre" if processed else "LN",  # as from_pretrained sets it with fold_ln
        positional_embedding_type="standard",
        default_prepend_bos=True,
        original_architecture=arch,
        init_weights=False,
        device="cpu",
        dtype=torch.float32,
    )
    if arch == "GPT2LMHeadModel":
        common.update(
            model_name="tiny-random-gpt2",
            use_attn_scale=True,
            use_local_attn=False,
            scale_attn_by_inverse_layer_idx=False,
        )
    else:
        common.update(
            model_name="tiny-random-gpt-neo",
            use_attn_scale=False,
            use_local_attn=True,
            attn_types=list(c.attention_layers),
            window_size=c.window_size,
            scale_attn_by_inverse_layer_idx=False,
        )
    return HookedTransformerConfig(**common)


def tl_model(hf, arch, processed):
    cfg = tl_config(hf, arch, processed)
    conv = convert_gpt2_weights if arch == "GPT2LMHeadModel" else convert_neo_weights
    sd = {k: v.detach().clone() for k, v in conv(hf, cfg).items()}  # never touch the HF weights
    m = HookedTransformer(cfg, move_to_device=False)
    flags = dict(
        fold_ln=processed,
        center_writing_weights=processed,
        center_unembed=processed,
        fold_value_biases=processed,
        refactor_factored_attn_matrices=False,
    )
    m.load_and_process_state_dict(sd, **flags)
    m.eval()
    return m


def write_f32(folder, name, t):
    a = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4", copy=False)
    a.tofile(os.path.join(folder, name + ".f32"))
    return f"{name} {a.ndim} " + " ".join(str(s) for s in a.shape)


def dump_cache(folder, logits, cache):
    """Every hook of the cache, in TL's (forward) order, then logits.  TL 3.x's
    unembed.hook_out is bit-identical to the logits: it is listed in no
    manifest and not written, to save 160 KB per cache."""
    os.makedirs(folder, exist_ok=True)
    lines = []
    for name, t in cache.items():
        assert t.shape[0] == 2, name
        if name == "unembed.hook_out":
            assert torch.equal(t, logits)
            continue
        lines.append(write_f32(folder, name, t))
    lines.append(write_f32(folder, "logits", logits))
    with open(os.path.join(folder, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


# ---------------------------------------------------------------------------
# per model


def greedy(hf, toks):
    prompt = toks[0:1, :PROMPT_LEN]
    with torch.no_grad():
        out = hf.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            pad_token_id=0,
            eos_token_id=None,
        )
    assert out.shape == (1, PROMPT_LEN + NEW_TOKENS), out.shape
    # cross-check: argmax over full forward passes without a KV cache
    seq = prompt.clone()
    margins = []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            lg = hf(seq, use_cache=False).logits[0, -1]
            top2 = lg.topk(2).values
            margins.append((top2[0] - top2[1]).item())
            seq = torch.cat([seq, lg.argmax().view(1, 1)], dim=1)
    assert torch.equal(seq, out), (seq, out)
    assert min(margins) >= MIN_GREEDY_MARGIN, margins
    return prompt[0].tolist(), out[0].tolist(), min(margins)


def do_model(key, hf, arch, toks, report):
    ref = os.path.join(OUT, "ref", key)
    os.makedirs(ref, exist_ok=True)
    with torch.no_grad():
        hf_out = hf(toks, output_hidden_states=True)
    hf_logits = hf_out.logits
    line = write_f32(ref, "hf_logits", hf_logits)
    with open(os.path.join(ref, "manifest.txt"), "w") as f:
        f.write(line + "\n")

    r = {"hf_logits_shape": list(hf_logits.shape)}
    caches = {}
    for processed in (False, True):
        tl = tl_model(hf, arch, processed)
        with torch.no_grad():
            logits, cache = tl.run_with_cache(toks)
        sub = "processed" if processed else "raw"
        caches[sub] = cache
        lines = dump_cache(os.path.join(ref, sub), logits, cache)
        r[sub + "_manifest"] = lines
        diff = (logits - hf_logits).abs().max().item()
        centred = hf_logits - hf_logits.mean(dim=-1, keepdim=True)
        cdiff = (logits - centred).abs().max().item()
        # is (TL - HF) constant along the vocabulary at each position?
        dlt = logits - hf_logits
        spread = (dlt.max(dim=-1).values - dlt.min(dim=-1).values).max().item()
        r[sub] = dict(max_abs_vs_hf=diff, max_abs_vs_hf_centred=cdiff,
                      per_position_spread_of_tl_minus_hf=spread)
        if not processed:
            assert torch.allclose(logits, hf_logits, atol=1e-5, rtol=1e-5), (key, diff)
            # the residual stream equals HF's hidden_states (before the last block)
            hs = hf_out.hidden_states
            for L in range(N_LAYERS):
                d = (cache[f"blocks.{L}.hook_resid_pre"] - hs[L]).abs().max().item()
                assert d < 1e-5, (key, L, d)
            # TL's hook_normalized is (x - mean) / scale, BEFORE the LayerNorm's
            # weight and bias; HF's last hidden state is after them
            lnf = hf.transformer.ln_f
            d = (cache["ln_final.hook_normalized"] * lnf.weight + lnf.bias - hs[-1]).abs().max().item()
            assert d < 1e-5, (key, "ln_final", d)
            x = cache["blocks.0.hook_resid_pre"]
            xc = x - x.mean(-1, keepdim=True)
            d = (cache["blocks.0.ln1.hook_normalized"] - xc / cache["blocks.0.ln1.hook_scale"]).abs().max().item()
            assert d < 1e-5, (key, "ln1", d)
        else:
            assert torch.allclose(logits, centred, atol=1e-5, rtol=1e-5), (key, cdiff)
            assert spread < 5e-5, (key, spread)
        sc = cache["blocks.0.attn.hook_attn_scores"]
        r[sub + "_attn_scores_masked"] = sorted({str(x) for x in sc[0, 0, 0, 1:].tolist()})
        r[sub + "_neginf_count_per_layer"] = [
            int(torch.isneginf(cache[f"blocks.{L}.attn.hook_attn_scores"]).sum()) for L in range(N_LAYERS)
        ]

    check_processing(key, hf, caches["raw"], caches["processed"])

    prompt, out, margin = greedy(hf, toks)
    r["greedy_min_margin"] = margin
    with open(os.path.join(ref, "greedy.txt"), "w") as f:
        f.write(" ".join(map(str, prompt)) + "\n" + " ".join(map(str, out)) + "\n")
    r["greedy"] = out
    report[key] = r
    return hf_logits


def check_processing(key, hf, raw, proc):
    """How TL's weight processing shows in each hook (models.md section 5.2),
    checked hook by hook: processed == f(raw) within float32 rounding."""
    close = dict(atol=2e-5, rtol=1e-5)

    def c(x):
        return x - x.mean(-1, keepdim=True)

    centred = {"hook_embed", "hook_pos_embed"}
    for L in range(N_LAYERS):
        centred |= {f"blocks.{L}.{h}" for h in (
            "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")}
    unchanged = {"ln_final.hook_scale", "ln_final.hook_normalized"}
    for L in range(N_LAYERS):
        unchanged |= {f"blocks.{L}.{h}" for h in (
            "ln1.hook_scale", "ln1.hook_normalized", "ln2.hook_scale", "ln2.hook_normalized",
            "attn.hook_q", "attn.hook_k", "attn.hook_attn_scores", "attn.hook_pattern",
            "mlp.hook_pre", "mlp.hook_post")}
    seen = set()
    for n in centred:
        assert torch.allclose(proc[n], c(raw[n]), **close), (key, n)
        seen.add(n)
    for n in unchanged:
        assert torch.equal(torch.isinf(proc[n]), torch.isinf(raw[n])), (key, n)
        assert torch.allclose(proc[n], raw[n], **close), (key, n)
        seen.add(n)
    # value hooks: shifted by b_V_eff[h] = b_V[h] + ln1.b @ W_V[h]
    for L in range(N_LAYERS):
        blk = hf.transformer.h[L]
        if hasattr(blk.attn, "c_attn"):  # GPT-2 Conv1D [in, 3C]
            W_V = blk.attn.c_attn.weight[:, 2 * D_MODEL:]
            b_V = blk.attn.c_attn.bias[2 * D_MODEL:]
        else:  # GPT-Neo nn.Linear [out, in], no bias
            W_V = blk.attn.attention.v_proj.weight.T
            b_V = torch.zeros(D_MODEL)
        b_eff = (b_V + blk.ln_1.bias @ W_V).view(N_HEADS, D_MODEL // N_HEADS).detach()
        for h in ("attn.hook_v", "attn.hook_z"):
            n = f"blocks.{L}.{h}"
            assert torch.allclose(proc[n], raw[n] - b_eff, **close), (key, n)
            seen.add(n)
    # unembed.hook_in (TL 3.x) is ln_final's output: after w, b when unprocessed,
    # (x - mean) / scale when processed (ln_final folded into W_U)
    assert torch.allclose(proc["unembed.hook_in"], raw["ln_final.hook_normalized"], **close)
    lnf = hf.transformer.ln_f
    assert torch.allclose(raw["unembed.hook_in"],
                          raw["ln_final.hook_normalized"] * lnf.weight + lnf.bias, **close)
    seen |= {"unembed.hook_in", "unembed.hook_out"}
    assert seen == set(raw.keys()) == set(proc.keys()), set(raw.keys()) ^ seen


def verify_reload(key_models, toks):
    res = {}
    for folder, (hf, ref_logits) in key_models.items():
        m = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, folder), attn_implementation="eager")
        m.eval()
        assert type(m) is type(hf), (folder, type(m))
        with torch.no_grad():
            lg = m(toks).logits
        same = torch.equal(lg, ref_logits)
        d = (lg - ref_logits).abs().max().item()
        assert d < 1e-6, (folder, d)
        # and the weights themselves are bit-identical
        a, b = m.state_dict(), hf.state_dict()
        for k in b:
            assert torch.equal(a[k], b[k]), (folder, k)
        res[folder] = dict(equal=same, max_abs=d)
    return res


# ---------------------------------------------------------------------------
# README


def human(n):
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} B"


def folder_size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def write_readme(vers, nshards, report, hooks):
    rows = [
        ("gpt2/", "GPT-2 (GPT2LMHeadModel), `model.safetensors` from `save_pretrained` "
                  "(\"transformer.\" names, no `lm_head.weight`), `vocab.json` + `merges.txt`"),
        ("gpt2-sharded/", f"same weights, {nshards} safetensors shards + `model.safetensors.index.json` "
                          "(`save_pretrained(max_shard_size=\"100KB\")`), `vocab.json` + `merges.txt`"),
        ("gpt2-bin/", "same weights, `pytorch_model.bin` (torch.save zip) in OpenAI's legacy layout: "
                      "no \"transformer.\" prefix, no `lm_head.weight`, buffers `h.N.attn.bias` "
                      "(f32 [1,1,64,64]) and `h.N.attn.masked_bias` (f32 scalar); `tokenizer.json`"),
        ("neo/", "GPT-Neo (GPTNeoForCausalLM, layers global/local, window 8), `model.safetensors`, "
                 "`vocab.json` + `merges.txt`"),
        ("neo-bin/", "same weights, `pytorch_model.bin` (torch.save zip) as 2023 transformers wrote it: "
                     "\"transformer.\" names, `lm_head.weight` sharing `wte`'s storage, buffers "
                     "`transformer.h.N.attn.attention.bias` (bool [1,1,64,64]) and `...masked_bias` "
                     "(f32 scalar); `tokenizer.json`"),
        ("ref/tokens.txt", "the input: 2 lines of 20 ids (BOS 0 + sentence)"),
        ("ref/<m>/hf_logits.f32", "HF `model(tokens).logits`, [2,20,1000], eager attention (listed in `ref/<m>/manifest.txt`)"),
        ("ref/<m>/raw/", "TL without weight processing (`fold_ln` etc. all False): every hook of "
                         "`run_with_cache` + `logits.f32`; `manifest.txt`"),
        ("ref/<m>/processed/", "TL with from_pretrained's defaults (fold_ln, center_writing_weights, "
                               "center_unembed, fold_value_biases): same files"),
        ("ref/<m>/greedy.txt", "line 1: prompt (first 6 ids of sequence 0); line 2: prompt + 10 greedy ids "
                               "(HF generate, do_sample=False, eos_token_id=None so id 0 does not stop it)"),
    ]
    L = []
    L.append("# Tiny GPT-2 / GPT-Neo fixtures for the C forward pass\n")
    L.append("Written by `test/golden/make_lm_fixtures.py` (run from the repository root: "
             "`python3 test/golden/make_lm_fixtures.py`). The tests never run Python; "
             "they only read these files. See the script's docstring for every detail.\n")
    L.append("Models: vocab 1000 (tokenizer `test/fixtures/tokenizer/small/`, `<|endoftext|>` = 0 = bos = eos), "
             "64 positions, d_model 32, 2 layers, 4 heads, d_mlp 128, gelu_new, eps 1e-5, tied unembedding; "
             "random seeded weights with no LayerNorm weight or bias left at 1/0. <m> is `gpt2` or `neo`.\n")
    L.append("| path | holds |\n|---|---|")
    for p, h in rows:
        L.append(f"| `{p}` | {h} |")
    L.append("")
    L.append("`.f32` files: raw little-endian float32, C order, batch first, exactly TL's shape; "
             "`manifest.txt`: `<name> <ndim> <dim0> ...` per file. `hook_attn_scores` holds `-inf` at masked "
             "(future, and for GPT-Neo's local layer out-of-window) positions, as TL computes them.\n")
    L.append("Hooks in each cache (per layer L = 0, 1): " + ", ".join(f"`{h}`" for h in hooks) + ", plus `logits`.\n")
    L.append("Notes on TL's hooks (TransformerLens " + vers["transformer_lens"] + "):\n\n"
             "* `*.hook_normalized` is `(x - mean) / hook_scale`, taken BEFORE the LayerNorm's weight and bias, "
             "in the raw model as well as the processed one (so it is the same in both).\n"
             "* `unembed.hook_in` (new in TL 3.x) is ln_final's output: after weight and bias in `raw/`, "
             "`(x - mean) / scale` in `processed/` (ln_final is folded into W_U there).\n"
             "* `unembed.hook_out` (TL 3.x) is bit-identical to the logits; it is not written (no file, "
             "no manifest line): use `logits.f32`.\n"
             "* processed vs raw (checked by the script within 2e-5): embed, pos_embed, resid_pre/mid/post, "
             "attn_out, mlp_out are centred over d_model; hook_v and hook_z are shifted by "
             "`-(b_V[h] + ln1.b @ W_V[h])`; logits are centred over the vocabulary; every other hook is unchanged.\n"
             "* greedy: every step's winning logit leads the runner-up by >= 1e-3 (GPT-2: "
             f"{report['gpt2']['greedy_min_margin']:.3f}, GPT-Neo: {report['neo']['greedy_min_margin']:.3f}).\n")
    L.append("Tokenizer files: the safetensors folders hold `vocab.json` + `merges.txt`, the .bin folders "
             "`tokenizer.json`; transformers' AutoTokenizer loads each (GPT2Tokenizer, bos = eos = id 0) without "
             "`tokenizer_config.json` / `special_tokens_map.json`, so those are not written.\n")
    L.append("Checks the script made: TL raw logits = HF logits (atol 1e-5 + rtol 1e-5); TL processed logits = "
             "HF logits minus their per-position mean over the vocabulary (same tolerance); TL resid_pre / ln_final = HF hidden_states; "
             "generate = an argmax loop without KV cache; every folder reloads in transformers with "
             "bit-identical weights and logits.\n")
    L.append("Sizes: " + ", ".join(f"`{d}` {human(folder_size(os.path.join(OUT, d)))}"
                                   for d in ("gpt2", "gpt2-sharded", "gpt2-bin", "neo", "neo-bin", "ref"))
             + ".\n")
    L.append("Made with:\n")
    L.append("| package | version |\n|---|---|")
    for k, v in vers.items():
        L.append(f"| {k} | {v} |")
    L.append("")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------------------


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    vers = versions()
    gpt2, neo = make_models()
    nshards = save_all(gpt2, neo)

    toks = make_tokens()
    os.makedirs(os.path.join(OUT, "ref"), exist_ok=True)
    with open(os.path.join(OUT, "ref", "tokens.txt"), "w") as f:
        for row in toks.tolist():
            f.write(" ".join(map(str, row)) + "\n")
    tok_classes = check_folder_tokenizers(toks)

    report = {}
    g_logits = do_model("gpt2", gpt2, "GPT2LMHeadModel", toks, report)
    n_logits = do_model("neo", neo, "GPTNeoForCausalLM", toks, report)
    reload = verify_reload({
        "gpt2": (gpt2, g_logits), "gpt2-sharded": (gpt2, g_logits), "gpt2-bin": (gpt2, g_logits),
        "neo": (neo, n_logits), "neo-bin": (neo, n_logits),
    }, toks)

    hooks = []
    for ln in report["gpt2"]["raw_manifest"]:
        name = ln.split()[0]
        if name.startswith("blocks.1.") or name == "logits":
            continue
        hooks.append(name.replace("blocks.0.", "blocks.L."))
    write_readme(vers, nshards, report, hooks)

    print("versions:", json.dumps(vers))
    print("tokens:", toks.tolist())
    print("tokenizer classes:", tok_classes)
    print("shards:", nshards)
    for k, r in report.items():
        print(f"== {k}")
        for kk, vv in r.items():
            if kk.endswith("_manifest"):
                continue
            print(f"  {kk}: {vv}")
        diff = [a for a, b in zip(r["raw_manifest"], r["processed_manifest"]) if a != b]
        print("  raw vs processed manifest differences:", diff)
    print("reload:", reload)
    print("manifest (gpt2/raw):")
    print("\n".join("  " + l for l in report["gpt2"]["raw_manifest"]))


if __name__ == "__main__":
    main()
