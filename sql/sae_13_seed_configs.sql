-- The seed tutorial's two training configs, with the seed's keys, on fixture models of the same
-- architectures (test/fixtures/lm/neo-1l: GPT-Neo with one global layer as tiny-stories-1L-21M;
-- gpt2-12l: GPT-2 with 12 layers), width 32 instead of 1024 / 768, and far fewer tokens and a
-- smaller buffer. The second config crashed in the seed with a shape mismatch; here it trains one
-- tanh_sae per layer from one forward pass.
\getenv lm SAE_TEST_LM
SET client_min_messages = warning;
-- tiny models: one thread (OpenMP teams only cost time at these sizes, more so on a busy machine)
SET sae.threads = 1;
-- (n_eval_batches 1 instead of the default 10 keeps the final evaluations short)
SELECT sae_load_model('seed-tiny-stories', :'lm' || '/neo-1l') > 0 AS loaded;
SELECT sae_load_model('seed-gpt2', :'lm' || '/gpt2-12l') > 0 AS loaded;
CREATE TABLE seed_stories AS
SELECT i AS id, format('%s and %s went to the %s. %s said "hello" and they played until dark.',
                       (ARRAY['Tom', 'Lily', 'Ben', 'Mia', 'Sam'])[1 + i % 5],
                       (ARRAY['Anna', 'Max', 'Zoe'])[1 + i % 3],
                       (ARRAY['park', 'sea', 'forest', 'shop'])[1 + i % 4],
                       (ARRAY['Tom', 'Lily', 'Ben', 'Mia', 'Sam'])[1 + i % 5]) AS text
FROM generate_series(1, 400) i;
SELECT sae_create_dataset('seed-512', 'seed-tiny-stories', 'SELECT text FROM seed_stories ORDER BY id', 512) > 0;
SELECT sae_create_dataset('seed-256', 'seed-gpt2', 'SELECT text FROM seed_stories ORDER BY id', 256) > 0;

-- cell 1: tiny-stories-1L-21M, blocks.0.hook_mlp_out, expansion 16
SELECT hook_point, d_in, d_sae, n_steps, n_tokens FROM sae_train('{
    "model_name": "seed-tiny-stories",
    "hook_point": "blocks.0.hook_mlp_out",
    "hook_point_layer": 0,
    "d_in": 32,
    "dataset_path": "seed-512",
    "is_dataset_tokenized": true,
    "mse_loss_normalization": null,
    "expansion_factor": 16,
    "b_dec_init_method": "geometric_median",
    "lr": 0.0008,
    "lr_scheduler_name": "constant",
    "lr_warm_up_steps": 10000,
    "l1_coefficient": 0.001,
    "lp_norm": 1.0,
    "train_batch_size": 4096,
    "context_size": 512,
    "n_batches_in_buffer": 4,
    "total_training_tokens": 40960,
    "store_batch_size": 16,
    "use_ghost_grads": false,
    "feature_sampling_window": 1000,
    "dead_feature_window": 1000,
    "dead_feature_threshold": 1e-4,
    "log_to_wandb": true,
    "wandb_project": "sae_lens_tutorial",
    "wandb_log_frequency": 10,
    "device": "cpu",
    "seed": 42,
    "n_checkpoints": 0,
    "checkpoint_path": "checkpoints",
    "dtype": "float32",
    "n_eval_batches": 1}');

-- cell 2: gpt2, blocks.{layer}.hook_mlp_out for all 12 layers, tanh_sae with noise
SELECT hook_point, d_in, d_sae, n_steps, n_tokens FROM sae_train('{
    "model_name": "seed-gpt2",
    "hook_point": "blocks.{layer}.hook_mlp_out",
    "hook_point_layer": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    "d_in": 32,
    "dataset_path": "seed-256",
    "is_dataset_tokenized": true,
    "mse_loss_normalization": null,
    "expansion_factor": 16,
    "b_dec_init_method": "geometric_median",
    "decoder_orthogonal_init": true,
    "sae_type": "tanh_sae",
    "noise_scale": 1,
    "lr": 0.0001,
    "lr_scheduler_name": "constant",
    "lr_warm_up_steps": 10000,
    "l1_coefficient": 0.0001,
    "l1_loss_normalization": "l2_squared",
    "lp_norm": 1.0,
    "train_batch_size": 2048,
    "context_size": 256,
    "n_batches_in_buffer": 4,
    "total_training_tokens": 8192,
    "store_batch_size": 16,
    "use_ghost_grads": false,
    "feature_sampling_window": 1000,
    "dead_feature_window": 1000,
    "dead_feature_threshold": 1e-4,
    "log_to_wandb": true,
    "wandb_project": "sae_lens_tutorial",
    "wandb_log_frequency": 10,
    "device": "cpu",
    "seed": 42,
    "n_checkpoints": 0,
    "checkpoint_path": "checkpoints",
    "dtype": "float32",
    "n_eval_batches": 1}') ORDER BY split_part(hook_point, '.', 2)::int;
SELECT count(*) AS runs, count(DISTINCT hook_point) AS hooks, bool_and(architecture = 'tanh_sae') AS tanh,
       bool_and(status = 'completed') AS completed
FROM sae.runs WHERE config->>'model_name' = 'seed-gpt2';
