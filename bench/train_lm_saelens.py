#!/usr/bin/env python3
"""SAELens peer of sae_train on a language model: LM forward + SAE training, end to end, on the CPU.

  train_lm_saelens.py tokens OUT_PREFIX --contexts N --context-size T [--seed S] [--vocab V] [--bos B]
      The token contexts both sides train on: N rows of T ids, BOS first, the rest uniform in
      [0, V) from numpy's Generator(seed).  Writes OUT_PREFIX.npy (int32 [N, T]) for SAELens and
      OUT_PREFIX.copy (one int[] literal a line, COPY's text format) for PostgreSQL.

  train_lm_saelens.py train MODEL_DIR --tokens FILE.npy [options]
      SAELens's LanguageModelSAETrainingRunner on the model folder and those contexts:
        * the model: the HF folder (bench/lm_forward.py make) loaded with transformers, converted
          to a TransformerLens HookedTransformer by hand (HookedTransformerConfig + TL's own
          convert_neo_weights / convert_gpt2_weights + load_and_process_state_dict without any
          processing, i.e. what from_pretrained_no_processing gives; from_pretrained only takes
          official names, and the hub is not reachable), passed as override_model;
        * the data: a datasets.Dataset with a "tokens" column (pretokenized, so SAELens neither
          tokenizes nor prepends BOS), passed as override_dataset;
        * the SAE: the "standard" architecture (StandardTrainingSAEConfig: ReLU, L1 penalty
          weighted by the decoder norms), float32, cpu; no W&B (so no evals either), no
          checkpoints, no output folder, no compile, no autocast, no prefetch thread.
      Before training it checks that TL's blocks.0.hook_mlp_out equals HF's transformer.h[0].mlp
      output on two contexts (relative error <= 1e-4): the peer runs the same model.

      Timing: SAETrainer.fit, the training loop and nothing else (the runner's model and dataset
      set-up and the SAE's construction happen before it; with log_to_wandb off and no output
      path nothing happens after it).  fit() is where SAELens makes every activation: the first
      fill of its mixing buffer, every refill (LM forwards) and every SAE step.  tokens/s =
      tokens trained / seconds in fit.  Inside fit, each ActivationsStore.get_activations call
      (the LM forward, run_with_cache with stop_at_layer) and each SAETrainer._train_step call
      (the SAE step) is timed too, with time.perf_counter around the call: the breakdown.
      Prints one JSON object on stdout.

SAELens 6 sizes its mixing buffer as n_batches_in_buffer * context_size tokens (v1.0 multiplied in
store_batch_size_prompts too), and refuses a buffer smaller than one training batch: pass
--n-batches-in-buffer accordingly (bench/train_lm.sh passes the value that gives the same number
of tokens as sae_train's buffer).
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np


def cmd_tokens(args):
    g = np.random.Generator(np.random.PCG64(args.seed))
    toks = g.integers(0, args.vocab, size=(args.contexts, args.context_size), dtype=np.int64).astype(np.int32)
    toks[:, 0] = args.bos
    np.save(args.out_prefix + ".npy", toks)
    with open(args.out_prefix + ".copy", "w") as f:
        for row in toks:
            f.write("{" + ",".join(map(str, row.tolist())) + "}\n")
    print(json.dumps({"contexts": args.contexts, "context_size": args.context_size, "seed": args.seed,
                      "files": [args.out_prefix + ".npy", args.out_prefix + ".copy"]}))


def tl_model_from_hf(hf):
    """HookedTransformer with the HF model's weights, no weight processing."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_neo_weights

    c = hf.config
    arch = c.architectures[0] if getattr(c, "architectures", None) else type(hf).__name__
    if c.model_type == "gpt_neo":
        d_model, n_layers, n_heads = c.hidden_size, c.num_layers, c.num_heads
        d_mlp = c.intermediate_size or 4 * d_model
        n_ctx, eps, act = c.max_position_embeddings, c.layer_norm_epsilon, c.activation_function
        extra = dict(use_attn_scale=False, use_local_attn=True, attn_types=list(c.attention_layers),
                     window_size=c.window_size)
        conv = convert_neo_weights
    elif c.model_type == "gpt2":
        d_model, n_layers, n_heads = c.n_embd, c.n_layer, c.n_head
        d_mlp = c.n_inner or 4 * d_model
        n_ctx, eps, act = c.n_positions, c.layer_norm_epsilon, c.activation_function
        extra = dict(use_attn_scale=True, use_local_attn=False)
        conv = convert_gpt2_weights
    else:
        sys.exit(f"train_lm_saelens.py: model_type {c.model_type} is not GPT-2 or GPT-Neo")
    cfg = HookedTransformerConfig(
        model_name="bench-" + c.model_type, n_layers=n_layers, d_model=d_model, d_head=d_model // n_heads,
        n_heads=n_heads, d_mlp=d_mlp, d_vocab=c.vocab_size, n_ctx=n_ctx, eps=eps, act_fn=act,
        normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=True,
        original_architecture=arch, init_weights=False, device="cpu", dtype=torch.float32,
        scale_attn_by_inverse_layer_idx=False, **extra)
    sd = {k: v.detach().clone() for k, v in conv(hf, cfg).items()}
    m = HookedTransformer(cfg, move_to_device=False)
    m.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                  fold_value_biases=False, refactor_factored_attn_matrices=False)
    m.eval()
    return m


def check_same_model(hf, tl, toks, layer):
    """TL's blocks.L.hook_mlp_out against HF's transformer.h[L].mlp output."""
    import torch

    got = {}
    h = hf.transformer.h[layer].mlp.register_forward_hook(lambda mod, i, o: got.__setitem__("x", o.detach().clone()))
    ids = torch.from_numpy(toks.astype(np.int64))
    with torch.inference_mode():
        hf.transformer(input_ids=ids, use_cache=False)
        _, cache = tl.run_with_cache(ids, names_filter=[f"blocks.{layer}.hook_mlp_out"], stop_at_layer=layer + 1,
                                     prepend_bos=False)
    h.remove()
    ref = got["x"].double()
    ours = cache[f"blocks.{layer}.hook_mlp_out"].double()
    return {"max_abs_diff_rel": float((ours - ref).abs().max() / ref.abs().max()),
            "frobenius_rel": float((ours - ref).norm() / ref.norm()),
            "tokens": int(ids.numel())}


def cmd_train(args):
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(args.threads)
    t_setup = time.perf_counter()
    import datasets
    import transformers
    import transformer_lens  # noqa: F401
    from transformers import AutoModelForCausalLM
    import sae_lens
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAEConfig
    from sae_lens.training import sae_trainer as trainer_mod
    from sae_lens.training.activations_store import ActivationsStore
    from importlib.metadata import version as pkg_version

    datasets.disable_progress_bars()
    toks = np.load(args.tokens)
    if toks.shape[1] < args.context_size:
        sys.exit(f"train_lm_saelens.py: contexts of {toks.shape[1]} tokens, want >= {args.context_size}")
    toks = toks[:, : args.context_size]

    hf = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    hf.eval()
    tl = tl_model_from_hf(hf)
    check = check_same_model(hf, tl, toks[:2], args.layer)
    del hf
    if check["max_abs_diff_rel"] > 1e-4 or check["frobenius_rel"] > 1e-4:
        print(json.dumps({"error": "TL and HF disagree", "check": check}))
        sys.exit(1)

    ds = datasets.Dataset.from_dict({"tokens": toks.astype(np.int64).tolist()})
    d_in = tl.cfg.d_model
    torch.manual_seed(args.seed)
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=d_in, d_sae=d_in * args.expansion_factor,
                                      l1_coefficient=args.l1, dtype="float32", device="cpu"),
        model_name="bench-ts1l-random", hook_name=f"blocks.{args.layer}.hook_mlp_out",
        dataset_path="", is_dataset_tokenized=True, streaming=False, context_size=args.context_size,
        n_batches_in_buffer=args.n_batches_in_buffer, training_tokens=args.total_tokens,
        store_batch_size_prompts=args.store_batch_size, train_batch_size_tokens=args.batch,
        device="cpu", dtype="float32", seed=args.seed,
        lr=args.lr, lr_scheduler_name="constant", lr_warm_up_steps=0,
        adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2,
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False, output_path=None, verbose=False,
    )
    runner = LanguageModelSAETrainingRunner(cfg, override_dataset=ds, override_model=tl)
    setup_s = time.perf_counter() - t_setup

    # timers around SAELens's own methods; the wrappers add two perf_counter calls per call
    acc = {"fit": 0.0, "lm": 0.0, "lm_calls": 0, "lm_tokens": 0, "step": 0.0, "steps": 0,
           "first_step_end": None, "fit_start": None, "last_l0": None, "step_times": [], "lm_times": []}
    orig_fit, orig_step, orig_acts = trainer_mod.SAETrainer.fit, trainer_mod.SAETrainer._train_step, \
        ActivationsStore.get_activations

    def fit(self):
        acc["fit_start"] = time.perf_counter()
        c0 = os.times()
        r = orig_fit(self)
        acc["fit"] = time.perf_counter() - acc["fit_start"]
        c1 = os.times()
        acc["fit_cpu"] = (c1.user - c0.user) + (c1.system - c0.system)
        acc["n_training_samples"] = self.n_training_samples
        acc["n_training_steps"] = self.n_training_steps
        return r

    def train_step(self, sae, sae_in):
        t0 = time.perf_counter()
        out = orig_step(self, sae, sae_in)
        dt = time.perf_counter() - t0
        acc["step"] += dt
        acc["steps"] += 1
        acc["step_times"].append(dt)
        if acc["first_step_end"] is None:
            acc["first_step_end"] = time.perf_counter()
        acc["pending_acts"] = out.feature_acts
        return out

    def get_activations(self, batch_tokens):
        t0 = time.perf_counter()
        out = orig_acts(self, batch_tokens)
        dt = time.perf_counter() - t0
        acc["lm"] += dt
        acc["lm_calls"] += 1
        acc["lm_tokens"] += int(batch_tokens.numel())
        acc["lm_times"].append(dt)
        return out

    trainer_mod.SAETrainer.fit = fit
    trainer_mod.SAETrainer._train_step = train_step
    ActivationsStore.get_activations = get_activations
    try:
        sae = runner.run()
    finally:
        trainer_mod.SAETrainer.fit, trainer_mod.SAETrainer._train_step = orig_fit, orig_step
        ActivationsStore.get_activations = orig_acts
    fa = acc.pop("pending_acts", None)
    l0 = float((fa > 0).float().sum(-1).mean()) if fa is not None else float("nan")
    n = acc["n_training_samples"]
    fit_s = acc["fit"]
    # the LM calls sae_train makes before its timer starts (its first half-buffer, which it fills
    # for b_dec): SAELens makes them inside fit.  equal_work_s leaves them out.
    pre = args.pre_timer_lm_calls
    out = {
        "impl": "saelens",
        "versions": {p: pkg_version(p) for p in ("sae-lens", "transformer-lens", "torch", "transformers", "datasets")},
        "threads": torch.get_num_threads(),
        "check": check,
        "config": {"d_in": d_in, "d_sae": d_in * args.expansion_factor, "context_size": args.context_size,
                   "train_batch_size_tokens": args.batch, "store_batch_size_prompts": args.store_batch_size,
                   "n_batches_in_buffer": args.n_batches_in_buffer,
                   "buffer_tokens": args.n_batches_in_buffer * args.context_size,
                   "training_tokens": args.total_tokens, "lr": args.lr, "l1_coefficient": args.l1,
                   "adam_betas": [args.adam_beta1, args.adam_beta2], "architecture": "standard"},
        "setup_seconds": setup_s,
        "n_tokens": n,
        "n_steps": acc["n_training_steps"],
        "seconds": fit_s,
        "tokens_per_second": n / fit_s,
        "lm_seconds": acc["lm"], "lm_calls": acc["lm_calls"], "lm_tokens": acc["lm_tokens"],
        "lm_tokens_per_second": acc["lm_tokens"] / acc["lm"] if acc["lm"] > 0 else 0,
        "sae_step_seconds": acc["step"], "sae_steps": acc["steps"],
        "sae_step_median_s": sorted(acc["step_times"])[len(acc["step_times"]) // 2],
        "other_seconds": fit_s - acc["lm"] - acc["step"],
        "pre_timer_lm_calls": pre,
        "pre_timer_lm_seconds": sum(acc["lm_times"][:pre]),
        "equal_work_seconds": fit_s - sum(acc["lm_times"][:pre]),
        "equal_work_tokens_per_second": n / (fit_s - sum(acc["lm_times"][:pre])),
        "last_l0": l0,
        "fit_cpu_cores": acc["fit_cpu"] / fit_s,
        "process_cpu_seconds": (lambda c: c.user + c.system)(os.times()),
    }
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("out_prefix")
    t.add_argument("--contexts", type=int, required=True)
    t.add_argument("--context-size", type=int, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--vocab", type=int, default=50257)
    t.add_argument("--bos", type=int, default=50256)
    r = sub.add_parser("train")
    r.add_argument("model")
    r.add_argument("--tokens", required=True)
    r.add_argument("--layer", type=int, default=0)
    r.add_argument("--context-size", type=int, default=128)
    r.add_argument("--expansion-factor", type=int, default=16)
    r.add_argument("--batch", type=int, default=4096, help="train_batch_size_tokens")
    r.add_argument("--store-batch-size", type=int, default=32, help="store_batch_size_prompts")
    r.add_argument("--n-batches-in-buffer", type=int, default=256,
                   help="SAELens 6 semantics: the buffer holds this many * context_size tokens")
    r.add_argument("--total-tokens", type=int, default=20 * 4096)
    r.add_argument("--lr", type=float, default=8e-4)
    r.add_argument("--l1", type=float, default=1e-3)
    r.add_argument("--adam-beta1", type=float, default=0.0)
    r.add_argument("--adam-beta2", type=float, default=0.999)
    r.add_argument("--threads", type=int, default=os.cpu_count())
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--pre-timer-lm-calls", type=int, default=0,
                   help="LM calls the other side makes before its timer (left out of equal_work_seconds)")
    args = ap.parse_args()
    cmd_tokens(args) if args.cmd == "tokens" else cmd_train(args)


if __name__ == "__main__":
    main()
