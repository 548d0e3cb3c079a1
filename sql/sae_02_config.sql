-- sae_train config validation: every bad config is refused before training, with the
-- SQLSTATE shown after each error, and leaves no rows in any sae.* table.
SET sae.progress_every = 0;
SET sae.threads = 1;
-- the NOTICEs of the two trainings that succeed are not the subject here
SET client_min_messages = warning;
CREATE TABLE cfg_acts AS SELECT * FROM sae_synthetic_activations(256, 8, 16, 2, 1);

-- rows in the sae.* tables that were not there when this test began
CREATE TEMP TABLE baseline AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;
CREATE TEMP VIEW leftover AS
SELECT (SELECT count(*) FROM sae.runs) - runs AS new_runs,
       (SELECT count(*) FROM sae.train_log) - train_log AS new_log,
       (SELECT count(*) FROM sae.features) - features AS new_features,
       (SELECT count(*) FROM sae.tensors) - tensors AS new_tensors
FROM baseline;

-- a valid tiny config; each case below changes it
\set base '{"activations_table": "cfg_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "total_training_tokens": 640, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "lr_warm_up_steps": 0, "verbose": false}'

-- the base config itself trains (so the errors below come from the changes alone)
SELECT d_in, d_sae, n_steps, n_tokens FROM sae_train(:'base');
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- unknown keys: a "Perhaps you meant" hint for a near miss, the general hint otherwise
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sea": 64}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"l1_coeficient": 0.01}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"expansion factor": 4}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"Lr": 0.001}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"learning_rate_of_the_optimizer": 0.001}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- a key only valid inside a nested object is still unknown at the top level
SELECT run_id FROM sae_train(:'base'::jsonb || '{"foo": {"lr": 1}}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- wrong JSON types
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_in": "8"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_in": null}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": "32"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": "0.001"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": true}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": [0.001]}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": {"value": 0.001}}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"verbose": 1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"use_ghost_grads": "true"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": 5}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"run_name": false}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": 1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"sae_type": null}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"seed": 1.5}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"train_batch_size": 64.25}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- several layers need a language model
SELECT run_id FROM sae_train(:'base'::jsonb || '{"hook_point_layer": [1, 2]}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- values out of range, and enum values that do not exist
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_in": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_in": 10000000}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": -32}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": -0.001}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"l1_coefficient": -1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lp_norm": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"adam_beta1": 1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"adam_beta2": -0.5}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dead_feature_threshold": 2}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"train_batch_size": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"n_batches_in_buffer": 1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"total_training_tokens": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"total_training_tokens": 1e16}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"wandb_log_frequency": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"n_checkpoints": -1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"noise_scale": -1, "sae_type": "tanh_sae"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "linear"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "Constant"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"b_dec_init_method": "median"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"sae_type": "topk"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"mse_loss_normalization": "layer_norm"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"l1_loss_normalization": "l1"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || jsonb_build_object('run_name', repeat('x', 300)));
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || jsonb_build_object('activations_table', repeat('t', 256)));
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- keys that contradict each other
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": 32, "expansion_factor": 2}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": null, "expansion_factor": null}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_in": 1000000, "d_sae": null, "expansion_factor": 1000}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"sae_type": "tanh_sae"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"sae_type": "tanh_sae", "noise_scale": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"noise_scale": 1}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"sae_type": "unit_norm_sae", "noise_scale": 0.5}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"total_training_tokens": 63}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "cosineannealing", "lr_warm_up_steps": 10}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "cosineannealing", "lr_warm_up_steps": 4, "lr_decay_steps": 6}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "cosineannealing", "lr_decay_steps": 2, "lr_end": 0}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr_scheduler_name": "cosineannealingwarmrestarts", "n_restart_cycles": 11}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"n_batches_in_buffer": 1000000, "store_batch_size": 1000, "context_size": 1000}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- what this build does not do
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dtype": "float64"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dtype": "torch.float16"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dtype": "bfloat16"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dtype": "int8"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"device": "cuda:x"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"device": "tpu"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"model_name": "gpt2-small"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"dataset_path": "NeelNanda/c4-tokenized-2b"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train('{"model_name": "gpt2-small", "hook_point": "blocks.8.hook_resid_pre", "d_in": 768}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- the config itself: not an object, SQL NULL, required keys
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train('[]');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train('[{"d_in": 8}]');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train('"cfg_acts"');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train('42');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train('null');
\echo :SQLSTATE
SELECT * FROM leftover;
-- sae_train is strict: SQL NULL gives no row and no run
SELECT count(*) FROM sae_train(NULL);
SELECT * FROM leftover;
SELECT run_id FROM sae_train('{}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb - 'activations_table');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": null}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": ""}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb - 'activations_column');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- the memory budget is checked before anything is allocated or read
------------------------------------------------------------------------------------------
SET sae.max_memory = '1MB';
-- d_in 8, d_sae 100000: parameters, gradients and two Adam moments are
-- 4 * 4 * (2*8*100000 + 8 + 100000) bytes = 26 MB (rounded up to whole MB)
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": 100000}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- even for a table that does not exist: the budget comes first
SELECT run_id FROM sae_train(:'base'::jsonb || '{"d_sae": 100000, "activations_table": "no_such_table"}');
\echo :SQLSTATE
-- the shuffle buffer counts too: 4 copies of (n_batches_in_buffer / 2) * store_batch_size * context_size rows
SELECT run_id FROM sae_train(:'base'::jsonb || '{"n_batches_in_buffer": 64, "store_batch_size": 32, "context_size": 128}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the tiny base config fits in 1MB
SELECT d_sae, n_steps FROM sae_train(:'base');
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
RESET sae.max_memory;

SELECT * FROM leftover;
DROP TABLE cfg_acts;
