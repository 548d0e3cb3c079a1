#!/usr/bin/env python3
"""
make_eval_fixtures.py -- a golden reference for the engine's SAE evaluation
(src/core/eval.c): SAELens 6's get_recons_loss-style metrics of a seeded
random SAE spliced into the tiny GPT-2 fixture.

Run from the repository root, AFTER make_lm_fixtures.py (which deletes and
rewrites all of test/fixtures/lm/, this folder included):

    python3 test/golden/make_eval_fixtures.py

It (re)writes test/fixtures/lm/ref/eval/, one case per folder:

  .        hook blocks.0.hook_mlp_out, SAE d_in 32, d_sae 64
  head_z/  hook blocks.0.attn.hook_z, head index 1 (the SAE reads and
           replaces that head's 8 columns only; the ablation zeroes that
           head only, as SAELens's single-head hooks do), d_in 8, d_sae 16

each holding
  w_enc.f32 [d_in, d_sae]  b_enc.f32 [d_sae]  w_dec.f32 [d_sae, d_in]  b_dec.f32 [d_in]
             raw little-endian float32, C order (SAELens's layout)
  expected.txt          "<metric> <value>" (%.9g), OUR definitions (below)
  saelens.txt           SAELens's own numbers, for information only
and README.md (what the files are, and where SAELens differs).

Inputs: the model test/fixtures/lm/gpt2 (loaded with transformers, then a
TransformerLens HookedTransformer without weight processing, built exactly
as make_lm_fixtures.py's tl_model does), the 2 x 20 tokens of
test/fixtures/lm/ref/tokens.txt (each line one context, BOS first), and per
case an SAE drawn from torch.Generator(seed) in this order: W_enc = 0.3 N
[d_in, d_sae], b_enc = 0.05 N [d_sae], W_dec = N [d_sae, d_in] with each row
scaled to unit norm, b_dec = 0.1 N [d_in];
f = relu((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec.

Our definitions (eval.h), N = 40 tokens, d = d_in:
  ce_loss_*           mean over the 2 x 19 predicted positions of
                      -log p(token[t+1] | ..t) (clean / SAE spliced / zeroed)
  kl_div_with_*       mean over all 2 x 20 positions of KL(clean || edited)
  ce_loss_score       (CE_zero - CE_sae) / (CE_zero - CE_clean)
  kl_div_score        (KL_zero - KL_sae) / KL_zero
  l2_norm_in/out      mean over tokens of ||x||, ||x_hat||
  l2_ratio            mean of ||x_hat|| / ||x|| (1 where ||x|| < 1e-4)
  l0                  mean count of f > 0
  mse                 SSE / (N d)
  explained_variance  1 - SSE / SST, SST = sum ||x - mean_tokens(x)||^2

expected.txt is computed in float64 (the HF model and the TL model cast to
float64) with these formulas, so it carries no float32 rounding; the script
asserts it agrees with SAELens's own float32 functions (see below) within
1e-5 relative (1e-4 for ce_loss_score, whose denominator CE_zero - CE_clean
is only 0.6% of CE here), after SAELens's mse is divided by d.  With these
weights the SAEs reconstruct badly (negative explained variance, and
negative scores where splicing the SAE in hurts more than zeroing the hook);
the formulas do not care, and negative values are worth testing too.

SAELens (sae_lens 6.x) functions used, on a StandardSAE built from
StandardSAEConfig(d_in, d_sae, metadata=SAEMetadata(hook_name=...,
hook_head_index=...))
and the weights above: sae_lens.evals.get_recons_loss (per-token CE and KL
tensors), and run_evals(..., exclude_special_tokens=False) with a minimal
stand-in for ActivationsStore (get_batch_tokens returns the 2 contexts),
which calls get_downstream_reconstruction_metrics and
get_sparsity_and_variance_metrics.  Also printed: run_evals with the
special tokens (id 0) excluded, as SAELens's training runner does when its
activation store excludes them.
"""
import copy
import os
import shutil
import sys
from importlib.metadata import version as pkg_version

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_lm_fixtures as lmf  # noqa: E402  (sets the seed, 1 thread, deterministic algorithms)

from transformers import AutoModelForCausalLM  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402

import sae_lens  # noqa: E402
from sae_lens import StandardSAE, StandardSAEConfig  # noqa: E402
from sae_lens.evals import EvalConfig, get_recons_loss, run_evals  # noqa: E402
from sae_lens.saes.sae import SAEMetadata  # noqa: E402
from sae_lens.training.activation_scaler import ActivationScaler  # noqa: E402

OUT = os.path.join(lmf.OUT, "ref", "eval")
# (folder under OUT, hook, head index or None, d_in, d_sae, seed)
CASES = [
    ("", "blocks.0.hook_mlp_out", None, 32, 64, lmf.SEED + 201),
    ("head_z", "blocks.0.attn.hook_z", 1, 8, 16, lmf.SEED + 208),
]
METRICS = [
    "ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation", "ce_loss_score",
    "kl_div_with_sae", "kl_div_with_ablation", "kl_div_score",
    "l2_norm_in", "l2_norm_out", "l2_ratio", "l0", "mse", "explained_variance",
]


def read_tokens():
    with open(os.path.join(lmf.OUT, "ref", "tokens.txt")) as f:
        rows = [[int(x) for x in ln.split()] for ln in f if ln.strip()]
    t = torch.tensor(rows, dtype=torch.long)
    assert t.shape == (2, lmf.T), t.shape
    return t


def sae_weights(d_in, d_sae, seed):
    g = torch.Generator().manual_seed(seed)
    w_enc = 0.3 * torch.randn(d_in, d_sae, generator=g)
    b_enc = 0.05 * torch.randn(d_sae, generator=g)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    b_dec = 0.1 * torch.randn(d_in, generator=g)
    return dict(W_enc=w_enc, b_enc=b_enc, W_dec=w_dec, b_dec=b_dec)


def tl_model(hf, dtype):
    """make_lm_fixtures.tl_model(hf, "GPT2LMHeadModel", processed=False), in dtype."""
    if dtype == torch.float32:
        return lmf.tl_model(hf, "GPT2LMHeadModel", False)
    hf = copy.deepcopy(hf).to(dtype)
    cfg = lmf.tl_config(hf, "GPT2LMHeadModel", False)
    cfg.dtype = dtype
    sd = {k: v.detach().clone() for k, v in lmf.convert_gpt2_weights(hf, cfg).items()}
    m = HookedTransformer(cfg, move_to_device=False)
    m.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False,
                                  center_unembed=False, fold_value_biases=False,
                                  refactor_factored_attn_matrices=False)
    m.eval()
    return m


# ---------------------------------------------------------------------------
# our definitions, in plain torch


def ours(model, w, toks, hook_name, head):
    """eval.h's metrics, computed in the dtype of model and w.  With a head
    index the SAE reads and replaces only that head of hook_z ([B, T, H, d_head])
    and the ablation zeroes only that head, as SAELens's single-head hooks do."""
    dt = w["W_enc"].dtype
    d_in, d_sae = w["W_enc"].shape
    rec = {}

    def sae_fwd(x):
        f = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
        return f, f @ w["W_dec"] + w["b_dec"]

    def splice(act, hook):
        x = act if head is None else act[:, :, head]
        f, xh = sae_fwd(x)
        rec["x"], rec["f"], rec["xhat"], rec["pre"] = x.clone(), f, xh, \
            (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        if head is None:
            return xh
        out = act.clone()
        out[:, :, head] = xh
        return out

    def zero(act, hook):
        if head is None:
            return torch.zeros_like(act)
        out = act.clone()
        out[:, :, head] = 0
        return out

    with torch.no_grad():
        clean = model(toks).to(dt)
        sae = model.run_with_hooks(toks, fwd_hooks=[(hook_name, splice)]).to(dt)
        abl = model.run_with_hooks(toks, fwd_hooks=[(hook_name, zero)]).to(dt)
    lp = {k: torch.log_softmax(v, dim=-1) for k, v in (("clean", clean), ("sae", sae), ("zero", abl))}
    nxt = toks[:, 1:]

    def ce(l):
        return -l[:, :-1].gather(-1, nxt[..., None])[..., 0]  # [B, T-1]

    def kl(l):
        p = lp["clean"].exp()
        return (p * (lp["clean"] - l)).sum(-1)  # [B, T]

    r = {}
    r["ce_loss_without_sae"] = ce(lp["clean"]).mean().item()
    r["ce_loss_with_sae"] = ce(lp["sae"]).mean().item()
    r["ce_loss_with_ablation"] = ce(lp["zero"]).mean().item()
    r["ce_loss_score"] = (r["ce_loss_with_ablation"] - r["ce_loss_with_sae"]) / (
        r["ce_loss_with_ablation"] - r["ce_loss_without_sae"])
    r["kl_div_with_sae"] = kl(lp["sae"]).mean().item()
    r["kl_div_with_ablation"] = kl(lp["zero"]).mean().item()
    r["kl_div_score"] = (r["kl_div_with_ablation"] - r["kl_div_with_sae"]) / r["kl_div_with_ablation"]

    x = rec["x"].reshape(-1, d_in)
    xh = rec["xhat"].reshape(-1, d_in)
    f = rec["f"].reshape(-1, d_sae)
    n_in = x.norm(dim=-1)
    n_out = xh.norm(dim=-1)
    ratio = torch.where(n_in < 1e-4, torch.ones_like(n_in), n_out / n_in)
    sse = (x - xh).pow(2).sum()
    sst = (x - x.mean(0)).pow(2).sum()
    r["l2_norm_in"] = n_in.mean().item()
    r["l2_norm_out"] = n_out.mean().item()
    r["l2_ratio"] = ratio.mean().item()
    r["l0"] = (f > 0).sum(-1).to(dt).mean().item()
    r["mse"] = (sse / (x.shape[0] * d_in)).item()
    r["explained_variance"] = (1 - sse / sst).item()
    extra = dict(min_abs_preact=rec["pre"].abs().min().item(), min_norm_in=n_in.min().item(),
                 tokens=x.shape[0], l0_per_token=(f > 0).sum(-1).tolist(),
                 features_ever_active=int((f > 0).any(0).sum()))
    return r, extra


# ---------------------------------------------------------------------------
# SAELens's own functions


class TokenStore:
    """What run_evals and its helpers use of an ActivationsStore."""

    def __init__(self, toks):
        self.toks = toks
        self.context_size = toks.shape[1]
        self.store_batch_size_prompts = toks.shape[0]

    def get_batch_tokens(self, n):
        assert n == self.toks.shape[0], n
        return self.toks.clone()

    def reset_input_dataset(self):
        pass


def saelens_sae(w, hook_name, head):
    d_in, d_sae = w["W_enc"].shape
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu",
                            apply_b_dec_to_input=True, normalize_activations="none",
                            metadata=SAEMetadata(hook_name=hook_name, hook_head_index=head))
    sae = StandardSAE(cfg)
    missing, unexpected = sae.load_state_dict({k: v.clone() for k, v in w.items()}, strict=True)
    assert not missing and not unexpected
    sae.eval()
    return sae


def saelens_numbers(sae, model, toks):
    scaler = ActivationScaler()
    per_tok = get_recons_loss(sae, model, scaler, toks, compute_kl=True, compute_ce_loss=True)
    rl = {k: v.mean().item() for k, v in per_tok.items()}
    shapes = {k: list(v.shape) for k, v in per_tok.items()}
    cfg = EvalConfig(batch_size_prompts=toks.shape[0], n_eval_reconstruction_batches=1,
                     n_eval_sparsity_variance_batches=1, compute_kl=True, compute_ce_loss=True,
                     compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
                     compute_featurewise_density_statistics=True,
                     compute_featurewise_weight_based_metrics=False)

    def flat(m):
        return {k: v for grp in m.values() for k, v in grp.items()}

    all_tok, _ = run_evals(sae, TokenStore(toks), model, scaler, cfg, exclude_special_tokens=False)
    no_special, _ = run_evals(sae, TokenStore(toks), model, scaler, cfg, exclude_special_tokens=[0])
    return rl, shapes, flat(all_tok), flat(no_special)


# ---------------------------------------------------------------------------


def write_f32(out, name, t):
    a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
    a.tofile(os.path.join(out, name + ".f32"))
    return f"{name}.f32 {list(a.shape)}"


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def do_case(m32, m64, toks, sub, hook, head, d_in, d_sae, seed):
    out = os.path.join(OUT, sub)
    w = sae_weights(d_in, d_sae, seed)
    w64 = {k: v.double() for k, v in w.items()}
    exp64, extra = ours(m64, w64, toks, hook, head)
    ours32, _ = ours(m32, w, toks, hook, head)
    assert extra["min_abs_preact"] > 1e-4, extra["min_abs_preact"]  # float32 rounding (~1e-6) cannot flip L0
    assert extra["min_norm_in"] > 1e-2, extra["min_norm_in"]

    sae = saelens_sae(w, hook, head)
    with torch.no_grad():
        x = m32.run_with_cache(toks, names_filter=[hook])[1][hook]
        if head is not None:
            x = x[:, :, head]
        f_ref = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
        assert torch.allclose(sae.encode(x), f_ref, atol=1e-6, rtol=1e-6)
    rl, shapes, sl, sl_ns = saelens_numbers(sae, m32, toks)

    # SAELens's numbers that share our definition must agree with expected.txt
    same = {k: sl[k] for k in METRICS if k in sl and k != "mse"}
    for k in ("ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation",
              "kl_div_with_sae", "kl_div_with_ablation"):
        assert rel(rl[k], sl[k]) < 1e-6, (k, rl[k], sl[k])
    same["mse/d_in"] = sl["mse"] / d_in
    for k, v in same.items():
        mine = exp64["mse" if k == "mse/d_in" else k]
        # ce_loss_score divides by CE_zero - CE_clean (0.04 of CE 7.5 here): float32
        # rounding of the CEs (~1e-7) shows ~200x larger in it
        tol = 1e-4 if k == "ce_loss_score" else 1e-5
        assert rel(v, mine) < tol, (sub, k, v, mine)

    os.makedirs(out, exist_ok=True)
    files = [write_f32(out, "w_enc", w["W_enc"]), write_f32(out, "b_enc", w["b_enc"]),
             write_f32(out, "w_dec", w["W_dec"]), write_f32(out, "b_dec", w["b_dec"])]
    with open(os.path.join(out, "expected.txt"), "w") as f:
        for k in METRICS:
            f.write(f"{k} {exp64[k]:.9g}\n")
    with open(os.path.join(out, "saelens.txt"), "w") as f:
        f.write("# SAELens %s run_evals(exclude_special_tokens=False) on the same tokens, float32;\n"
                "# for information only (mse here is SSE / tokens, not / (tokens * d_in))\n"
                % pkg_version("sae-lens"))
        for k in sorted(sl):
            f.write(f"{k} {sl[k]:.9g}\n")

    print(f"== case {sub or '.'}: {hook} head {head} d_in {d_in} d_sae {d_sae}")
    print("files:", files)
    print("extra:", extra)
    print("get_recons_loss tensor shapes:", shapes)
    print(f"{'metric':24s} {'ours float64 (file)':>20s} {'ours float32':>16s} {'SAELens (all tok)':>18s}"
          f" {'SAELens (no BOS)':>18s}")
    for k in METRICS:
        print(f"{k:24s} {exp64[k]:20.9g} {ours32[k]:16.9g} {sl.get(k, float('nan')):18.9g}"
              f" {sl_ns.get(k, float('nan')):18.9g}")
    print("SAELens-only metrics (all tokens):",
          {k: v for k, v in sl.items() if k not in METRICS})
    print("SAELens-only metrics (BOS excluded):",
          {k: v for k, v in sl_ns.items() if k not in METRICS})
    return files, exp64, sl, sl_ns


def main():
    toks = read_tokens()
    hf = AutoModelForCausalLM.from_pretrained(os.path.join(lmf.OUT, "gpt2"), attn_implementation="eager")
    hf.eval()
    m32 = tl_model(hf, torch.float32)
    m64 = tl_model(hf, torch.float64)

    # the TL model is the one the fixtures' references came from
    ref_logits = torch.from_numpy(np.fromfile(os.path.join(lmf.OUT, "ref", "gpt2", "raw", "logits.f32"),
                                              dtype="<f4").reshape(2, lmf.T, lmf.VOCAB))
    with torch.no_grad():
        l32 = m32(toks)
        l64 = m64(toks)
    assert torch.equal(l32, ref_logits), (l32 - ref_logits).abs().max()
    assert (l64 - ref_logits.double()).abs().max().item() < 1e-5

    vers = lmf.versions()
    vers["sae_lens"] = pkg_version("sae-lens")
    print("versions:", vers)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    res = [do_case(m32, m64, toks, *c) for c in CASES]
    write_readme(res)


def write_readme(res):
    (files, exp, sl, sl_ns), (hfiles, hexp, hsl, _) = res
    L = ["# Golden reference for the SAE evaluation (src/core/eval.c)\n",
         "Written by `test/golden/make_eval_fixtures.py` (see its docstring); read by "
         "`test/unit/test_eval.c`. Model `../../gpt2`, tokens `../tokens.txt` (2 contexts x 20), "
         "random ReLU SAEs (f = relu((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec).\n",
         "| folder | hook | head | d_in | d_sae |\n|---|---|---|---|---|"]
    for sub, hook, head, d_in, d_sae, _ in CASES:
        L.append(f"| `{sub or '.'}` | `{hook}` | {'-' if head is None else head} | {d_in} | {d_sae} |")
    L += ["",
          "Each folder: `w_enc.f32` [d_in, d_sae], `b_enc.f32` [d_sae], `w_dec.f32` [d_sae, d_in], "
          "`b_dec.f32` [d_in] (raw little-endian float32, C order, SAELens's layout); `expected.txt`: "
          "our metrics (eval.h), `<metric> <value>`, computed in float64 with plain torch on the "
          "TransformerLens model and checked against SAELens's own functions (float32) within 1e-5 "
          "relative (1e-4 for ce_loss_score); `saelens.txt`: SAELens "
          f"{pkg_version('sae-lens')}'s `run_evals` numbers, for information. With a head index the "
          "SAE reads and replaces that head of hook_z only, and the ablation zeroes that head only "
          "(SAELens's single-head hooks).\n",
          "These random SAEs reconstruct badly: explained variance is negative in both cases, and so "
          "are both scores in `.` and kl_div_score in `head_z` (splicing the SAE in hurts more than "
          "zeroing the hook). The formulas do not care.\n",
          "Where SAELens differs from `expected.txt`:\n",
          "* `mse`: SAELens 6.x reports SSE / tokens (summed over d_in); ours divides by d_in too "
          f"(in `.`: {sl['mse']:.6g} vs {exp['mse']:.6g} = that / {CASES[0][3]}).",
          "* `explained_variance`: SAELens's current `explained_variance` (ExplainedVarianceCalculator) "
          "is ours, 1 - SSE / SST; its `explained_variance_legacy` (the old formula: the mean over "
          "tokens of 1 - ||x - x_hat||^2 / ||x - mean(x)||^2) is "
          f"{sl['explained_variance_legacy']:.6g} in `.`.",
          "* `l2_ratio` where ||x|| < 1e-4: SAELens divides by 1 (giving ||x_hat||), ours counts 1. "
          "No token here comes near.",
          "* Averaging: SAELens concatenates the per-token values of all batches and takes one mean "
          "(CE over B x (T-1), KL over B x T), so batches of any size give ours.",
          "* Special tokens: `run_evals(exclude_special_tokens=True)` (and the training runner, when "
          "its activation store excludes them) leaves BOS/EOS/PAD positions out of every mean and "
          "does not splice the SAE there; ours counts every position. With BOS (id 0) excluded "
          "SAELens gives in `.` ce_loss_score "
          f"{sl_ns['ce_loss_score']:.6g}, kl_div_score {sl_ns['kl_div_score']:.6g}, l0 {sl_ns['l0']:.6g}, "
          f"explained_variance {sl_ns['explained_variance']:.6g}.",
          ""]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main()
