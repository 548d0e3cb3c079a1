#!/usr/bin/env python3
"""SAELens SAE folders for sae_import's tests (sql/sae_15_interop.sql, test/unit/test_saelens.c).

    python3 test/golden/make_saelens_fixtures.py

Writes test/fixtures/saelens/:
  v6/         written by SAELens 6 itself (StandardSAEConfig, SAE.save_model) + sparsity.safetensors,
              for blocks.0.hook_resid_post of the tiny GPT-2 (test/fixtures/lm/gpt2), d_in 32, d_sae 48
  v1/         the v1.x format (SparseAutoencoder.save_model of SAELens 1.0: cfg.json = the whole
              training config, flat, with hook_point/hook_point_layer, dtype "torch.float32";
              W_enc, b_enc, W_dec, b_dec and scaling_factor of ones), written here with
              safetensors because SAELens 1.x cannot be installed next to 6.x
  inputs.txt  8 activation vectors (8 lines of 32 floats, %.9g: exact float32)
  v6.txt, v1.txt  SAELens 6's SAE.encode of the inputs for each folder (8 x 48), loaded back
              with SAE.load_from_disk (v1 through SAELens's own handle_pre_6_0_config upgrade)
  bad_*/      folders that must be refused: missing weights, an unknown architecture (jumprelu,
              with its threshold), shapes that contradict cfg.json, a truncated safetensors file,
              a fine-tuned scaling_factor
"""
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from sae_lens import SAE, StandardSAEConfig

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "saelens")
D_IN, D_SAE = 32, 48
HOOK = "blocks.0.hook_resid_post"


def weights(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g) * 0.3,
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g) * 0.3,
        "b_dec": torch.randn(D_IN, generator=g) * 0.1,
    }


def sparsity(seed):
    g = torch.Generator().manual_seed(seed)
    return {"sparsity": torch.log10(torch.rand(D_SAE, generator=g) * 0.2 + 1e-10)}


def write_v6(path):
    cfg = StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype="float32", device="cpu")
    cfg.metadata.model_name = "tiny-gpt2"
    cfg.metadata.hook_name = HOOK
    cfg.metadata.hook_head_index = None
    cfg.metadata.context_size = 32
    cfg.metadata.prepend_bos = True
    cfg.metadata.dataset_path = "stories"
    sae = SAE.from_dict(cfg.to_dict())
    with torch.no_grad():
        for k, v in weights(1).items():
            getattr(sae, k).copy_(v)
    sae.save_model(path)
    save_file(sparsity(2), os.path.join(path, "sparsity.safetensors"))


def v1_cfg():
    # the fields of SAELens 1.0's LanguageModelSAERunnerConfig that cfg.json carries
    return {
        "model_name": "tiny-gpt2", "hook_point": HOOK, "hook_point_layer": 0,
        "hook_point_head_index": None, "dataset_path": "stories", "is_dataset_tokenized": True,
        "context_size": 32, "use_cached_activations": False, "cached_activations_path": None,
        "d_in": D_IN, "n_batches_in_buffer": 20, "training_tokens": 2000000, "finetuning_tokens": 0,
        "store_batch_size": 32, "train_batch_size": 4096, "device": "cpu", "seed": 42,
        "dtype": "torch.float32", "prepend_bos": True, "b_dec_init_method": "geometric_median",
        "expansion_factor": 1.5, "from_pretrained_path": None, "apply_b_dec_to_input": True,
        "decoder_orthogonal_init": False, "mse_loss_normalization": None, "l1_coefficient": 0.001,
        "lp_norm": 1, "lr": 0.0003, "lr_scheduler_name": "constant", "lr_warm_up_steps": 500,
        "lr_end": 3e-05, "lr_decay_steps": 0, "n_restart_cycles": 1, "finetuning_method": None,
        "use_ghost_grads": False, "feature_sampling_window": 2000, "dead_feature_window": 1000,
        "dead_feature_threshold": 1e-08, "log_to_wandb": False, "wandb_project": "mats_sae_training_language_model",
        "run_name": "48-L1-0.001-LR-0.0003-Tokens-2.000e+06", "wandb_entity": None,
        "wandb_log_frequency": 10, "n_checkpoints": 0, "checkpoint_path": "checkpoints/abc123",
        "verbose": False, "model_kwargs": {}, "model_from_pretrained_kwargs": {},
        "sae_lens_version": "1.0.0", "sae_lens_training_version": "1.0.0",
        "tokens_per_buffer": 2621440, "d_sae": D_SAE,
    }


def write_v1(path, scaling=None):
    os.makedirs(path)
    w = weights(3)
    w["scaling_factor"] = torch.ones(D_SAE) if scaling is None else scaling
    save_file(w, os.path.join(path, "sae_weights.safetensors"))
    save_file(sparsity(4), os.path.join(path, "sparsity.safetensors"))
    with open(os.path.join(path, "cfg.json"), "w") as f:
        json.dump(v1_cfg(), f)


def encode_with_saelens(path, x):
    sae = SAE.load_from_disk(path, device="cpu")
    with torch.no_grad():
        return sae.encode(x).numpy()


def write_rows(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join("%.9g" % v for v in row) + "\n")


def bad_folders():
    # weights missing
    os.makedirs(os.path.join(OUT, "bad_missing"))
    shutil.copy(os.path.join(OUT, "v6", "cfg.json"), os.path.join(OUT, "bad_missing", "cfg.json"))
    # jumprelu: an architecture the engine does not encode
    d = os.path.join(OUT, "bad_arch")
    shutil.copytree(os.path.join(OUT, "v6"), d)
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    cfg["architecture"] = "jumprelu"
    json.dump(cfg, open(os.path.join(d, "cfg.json"), "w"))
    w = weights(1)
    w["threshold"] = torch.full((D_SAE,), 0.05)
    save_file(w, os.path.join(d, "sae_weights.safetensors"))
    # cfg.json says d_sae 50, the weights have 48
    d = os.path.join(OUT, "bad_shape")
    shutil.copytree(os.path.join(OUT, "v6"), d)
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    cfg["d_sae"] = 50
    json.dump(cfg, open(os.path.join(d, "cfg.json"), "w"))
    # a weights file cut short
    d = os.path.join(OUT, "bad_corrupt")
    shutil.copytree(os.path.join(OUT, "v6"), d)
    p = os.path.join(d, "sae_weights.safetensors")
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    # a v1 SAE whose scaling_factor was fine-tuned
    write_v1(os.path.join(OUT, "bad_scaling"), scaling=torch.full((D_SAE,), 1.5))


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    write_v6(os.path.join(OUT, "v6"))
    write_v1(os.path.join(OUT, "v1"))
    x = torch.randn(8, D_IN, generator=torch.Generator().manual_seed(5))
    write_rows(os.path.join(OUT, "inputs.txt"), x.numpy())
    for name in ("v6", "v1"):
        f = encode_with_saelens(os.path.join(OUT, name), x)
        write_rows(os.path.join(OUT, name + ".txt"), f)
        print(name, "features firing per input:", (f > 0).sum(1).tolist())
    bad_folders()


if __name__ == "__main__":
    main()
