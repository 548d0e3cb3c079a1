-- A small successful training and everything it stores: the returned row, sae.runs with the
-- normalized config, sae.train_log, sae.features and sae.tensors; determinism per seed;
-- epochs; checkpoints; the start-up NOTICEs.
SET sae.progress_every = 0;
-- 16384 rows of width 16: sparse combinations of 32 directions, about 2 per row
CREATE TABLE train_acts AS SELECT * FROM sae_synthetic_activations(16384, 16, 32, 2, 7);

-- half-buffer = (4 / 2) * 2 * 64 = 256 rows = 4 batches of 64, so every batch is full;
-- 12801 tokens = 200 batches and 1 token: SAELens trains while n_tokens < total, so 201 steps
\set cfg '{"activations_table": "train_acts", "activations_column": "activation", "d_in": 16, "d_sae": 64, "train_batch_size": 64, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "total_training_tokens": 12801, "lr": 0.003, "lr_warm_up_steps": 0, "l1_coefficient": 0.001, "feature_sampling_window": 50, "wandb_log_frequency": 10, "seed": 1, "verbose": false}'

-- the geometric median's NOTICE carries a float that is not the subject here
SET client_min_messages = warning;
SELECT run_id AS run1, run_name, hook_point, d_in, d_sae, n_steps, n_tokens,
       l0 BETWEEN 0 AND 64 AS l0_ok, explained_variance BETWEEN 0.8 AND 1 AS ev_ok,
       mse > 0 AS mse_positive, l1_loss > 0 AS l1_positive, dead_features,
       tokens_per_second > 0 AS tps_positive, seconds > 0 AS seconds_positive
FROM sae_train(:'cfg') \gset
RESET client_min_messages;
SELECT :'run_name' AS run_name, :'hook_point' AS hook_point, :d_in AS d_in, :d_sae AS d_sae,
       :n_steps AS n_steps, :n_tokens AS n_tokens, :'l0_ok' AS l0_ok, :'ev_ok' AS ev_ok,
       :'mse_positive' AS mse_positive, :'l1_positive' AS l1_positive,
       :dead_features AS dead_features, :'tps_positive' AS tps_positive,
       :'seconds_positive' AS seconds_positive;

------------------------------------------------------------------------------------------
-- sae.runs
------------------------------------------------------------------------------------------
SELECT run_name, status, hook_point, hook_point_layer, d_in, d_sae, architecture, device, source,
       n_steps, n_tokens, seconds > 0 AS seconds_ok, tokens_per_second > 0 AS tps_ok,
       finished_at >= started_at AS finished_after_start, started_at <= now() AS started_in_txn
FROM sae.runs WHERE run_id = :run1;
-- the normalized config: every key, with every default filled in
SELECT key, value FROM sae.runs, jsonb_each(config) WHERE run_id = :run1 ORDER BY key;
-- lr_end defaults to lr / 10 (Python's repr of 0.003 / 10), expansion_factor to d_sae / d_in
SELECT config->>'lr_end' AS lr_end, (config->>'lr_end')::float8 = 0.003::float8 / 10 AS lr_end_is_lr_over_10,
       config->>'expansion_factor' AS expansion_factor, config->>'d_sae' AS d_sae,
       config->>'run_name' = run_name AS run_name_matches, config->>'hook_point' = hook_point AS hook_point_matches
FROM sae.runs WHERE run_id = :run1;
-- the run's final metrics: the last step's, as the returned row had them
SELECT array_agg(key ORDER BY key) AS final_metric_keys FROM sae.runs, jsonb_object_keys(final_metrics) AS key
WHERE run_id = :run1;
SELECT (final_metrics->>'explained_variance')::real BETWEEN 0.8 AND 1 AS ev_ok,
       (final_metrics->>'lr')::float8 AS lr, final_metrics->>'epochs' AS epochs,
       final_metrics->>'rows_read' AS rows_read, final_metrics->>'dead_features' AS dead_features,
       (final_metrics->>'overall_loss')::float8 > (final_metrics->>'mse_loss')::float8 AS overall_above_mse
FROM sae.runs WHERE run_id = :run1;

------------------------------------------------------------------------------------------
-- sae.train_log: a row every wandb_log_frequency steps, sparsity every feature_sampling_window
------------------------------------------------------------------------------------------
SELECT count(*) AS log_rows, min(step), max(step),
       bool_and(step % 10 = 0) AS every_10_steps, bool_and(n_tokens = step * 64) AS tokens_are_steps_times_batch,
       bool_and(lr = 0.003) AS constant_lr,
       bool_and(mse_loss > 0 AND l1_loss > 0 AND overall_loss > 0) AS losses_positive,
       bool_and(ghost_grad_loss = 0) AS no_ghost_loss,
       bool_and(abs(overall_loss - (mse_loss + 0.001 * l1_loss)) < 1e-5) AS overall_is_mse_plus_l1,
       bool_and(l0 BETWEEN 0 AND 64) AS l0_in_range,
       bool_and(explained_variance <= 1 AND explained_variance_legacy <= 1) AS ev_at_most_1,
       bool_and(explained_variance_std >= 0 AND l2_norm > 0 AND l2_ratio > 0) AS norms_positive,
       bool_and(dead_features BETWEEN 0 AND 64) AS dead_in_range
FROM sae.train_log WHERE run_id = :run1;
SELECT step, mean_log10_feature_sparsity < 0 AS sparsity_negative, below_1e_5, below_1e_6
FROM sae.train_log WHERE run_id = :run1 AND (mean_log10_feature_sparsity IS NOT NULL OR below_1e_5 IS NOT NULL)
ORDER BY step;
-- the loss falls and the explained variance rises
SELECT f.overall_loss > 2 * l.overall_loss AS loss_halved, f.mse_loss > l.mse_loss AS mse_decreased,
       l.explained_variance > f.explained_variance AS ev_increased,
       l.explained_variance BETWEEN 0.8 AND 1 AS final_ev_in_range
FROM sae.train_log f, sae.train_log l
WHERE f.run_id = :run1 AND f.step = 10 AND l.run_id = :run1 AND l.step = 200;

------------------------------------------------------------------------------------------
-- sae.features and sae.tensors
------------------------------------------------------------------------------------------
SELECT count(*) AS features, min(feature_id), max(feature_id),
       bool_and(array_length(w_enc, 1) = 16 AND array_length(w_dec, 1) = 16) AS vectors_have_d_in,
       bool_and(abs(sqrt((SELECT sum(x * x) FROM unnest(w_dec) x)) - 1) < 1e-4) AS w_dec_unit_norm,
       bool_and(firing_rate BETWEEN 0 AND 1) AS rates_in_range,
       bool_and(abs(log10_sparsity - log10(firing_rate + 1e-10)) < 1e-4) AS log10_sparsity_ok
FROM sae.features WHERE run_id = :run1;
SELECT name, chunk, shape, array_length(data, 1) AS len FROM sae.tensors WHERE run_id = :run1 ORDER BY name, chunk;

------------------------------------------------------------------------------------------
-- the same seed gives the same SAE; another seed another
------------------------------------------------------------------------------------------
SET client_min_messages = warning;
SELECT run_id AS run2 FROM sae_train(:'cfg') \gset
-- (the runs above used all cores, as by default; from here on one thread is enough)
SET sae.threads = 1;
SELECT run_id AS run3 FROM sae_train(:'cfg'::jsonb || '{"seed": 2}') \gset
RESET client_min_messages;
SELECT count(*) AS features, count(*) FILTER (WHERE a.w_enc = b.w_enc AND a.w_dec = b.w_dec AND a.b_enc = b.b_enc
                                                 AND a.firing_rate = b.firing_rate) AS identical
FROM sae.features a JOIN sae.features b USING (feature_id) WHERE a.run_id = :run1 AND b.run_id = :run2;
SELECT (SELECT data FROM sae.tensors WHERE run_id = :run1 AND name = 'b_dec')
     = (SELECT data FROM sae.tensors WHERE run_id = :run2 AND name = 'b_dec') AS same_b_dec;
SELECT count(*) AS log_rows, count(*) FILTER (WHERE a.overall_loss = b.overall_loss AND a.l0 = b.l0
                                                 AND a.explained_variance = b.explained_variance) AS identical
FROM sae.train_log a JOIN sae.train_log b USING (step) WHERE a.run_id = :run1 AND b.run_id = :run2;
SELECT count(*) AS features, count(*) FILTER (WHERE a.w_enc = b.w_enc) AS same_w_enc,
       count(*) FILTER (WHERE a.w_dec = b.w_dec) AS same_w_dec
FROM sae.features a JOIN sae.features b USING (feature_id) WHERE a.run_id = :run1 AND b.run_id = :run3;
SELECT config->>'seed' AS seed, run_name FROM sae.runs WHERE run_id IN (:run1, :run2, :run3) ORDER BY run_id;

-- deleting a run deletes its log, features and tensors
DELETE FROM sae.runs WHERE run_id IN (:run2, :run3);
SELECT (SELECT count(*) FROM sae.train_log WHERE run_id IN (:run2, :run3)) AS log_rows,
       (SELECT count(*) FROM sae.features WHERE run_id IN (:run2, :run3)) AS features,
       (SELECT count(*) FROM sae.tensors WHERE run_id IN (:run2, :run3)) AS tensors;

------------------------------------------------------------------------------------------
-- a table smaller than the run: the rows are read again, epoch after epoch
------------------------------------------------------------------------------------------
CREATE TABLE small_acts AS SELECT * FROM sae_synthetic_activations(100, 16, 32, 2, 7);
-- 640 tokens: 10 steps; b_dec reads 256 rows, then 3 refills of 256: 1024 rows = 11 epochs
SELECT n_steps, n_tokens FROM sae_train(:'cfg'::jsonb ||
  '{"activations_table": "small_acts", "total_training_tokens": 640, "b_dec_init_method": "mean"}');
SELECT final_metrics->>'epochs' AS epochs, final_metrics->>'rows_read' AS rows_read
FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- exactly one row, read 128 times (one NOTICE each: not shown)
CREATE TABLE one_row AS SELECT * FROM sae_synthetic_activations(1, 16, 32, 2, 7);
SET client_min_messages = warning;
SELECT n_steps, n_tokens, l0 >= 0 AS l0_ok FROM sae_train(:'cfg'::jsonb ||
  '{"activations_table": "one_row", "total_training_tokens": 64, "n_batches_in_buffer": 2, "store_batch_size": 1, "b_dec_init_method": "zeros"}');
RESET client_min_messages;
SELECT final_metrics->>'epochs' AS epochs, final_metrics->>'rows_read' AS rows_read
FROM sae.runs ORDER BY run_id DESC LIMIT 1;

------------------------------------------------------------------------------------------
-- checkpoints: SAELens's thresholds range(0, total, total // n)[1:], each saved once passed
------------------------------------------------------------------------------------------
-- 12800 tokens, 2 checkpoints: one threshold (6400), passed at 6464 tokens (step 101)
SELECT n_steps, n_tokens FROM sae_train(:'cfg'::jsonb ||
  '{"total_training_tokens": 12800, "n_checkpoints": 2, "b_dec_init_method": "mean"}');
SELECT run_id AS ck2 FROM sae.runs ORDER BY run_id DESC LIMIT 1 \gset
SELECT name, chunk, shape, array_length(data, 1) AS len FROM sae.tensors WHERE run_id = :ck2 ORDER BY name, chunk;
-- 3 checkpoints under a custom path: thresholds 4266, 8532 and 12798; the last is passed
-- by the final step, so that checkpoint holds the final weights
SELECT n_steps FROM sae_train(:'cfg'::jsonb ||
  '{"total_training_tokens": 12800, "n_checkpoints": 3, "checkpoint_path": "ckpt/run a", "b_dec_init_method": "mean"}');
SELECT run_id AS ck3 FROM sae.runs ORDER BY run_id DESC LIMIT 1 \gset
SELECT name, chunk, shape, array_length(data, 1) AS len FROM sae.tensors WHERE run_id = :ck3 ORDER BY name, chunk;
-- (W_dec is renormalised once more at the end: equal up to float rounding)
SELECT (SELECT max(abs(a - b)) < 1e-6
        FROM unnest((SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/12800/W_dec'),
                    (SELECT array_agg(x ORDER BY feature_id, i) FROM sae.features, unnest(w_dec) WITH ORDINALITY AS u(x, i)
                     WHERE run_id = :ck3)) AS u(a, b)) AS final_w_dec,
       (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/12800/W_enc')
     = (SELECT array_agg(x ORDER BY i, feature_id) FROM sae.features, unnest(w_enc) WITH ORDINALITY AS u(x, i)
        WHERE run_id = :ck3) AS final_w_enc,
       (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/12800/b_enc')
     = (SELECT array_agg(b_enc ORDER BY feature_id) FROM sae.features WHERE run_id = :ck3) AS final_b_enc,
       (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/12800/b_dec')
     = (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'b_dec') AS final_b_dec,
       (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/4288/W_dec')
    <> (SELECT data FROM sae.tensors WHERE run_id = :ck3 AND name = 'ckpt/run a/12800/W_dec') AS first_differs;
-- no checkpoints by default
SELECT count(*) AS checkpoint_tensors FROM sae.tensors WHERE run_id = :run1 AND name <> 'b_dec';

------------------------------------------------------------------------------------------
-- the start-up NOTICEs (SAELens's prints) with "verbose": true; progress NOTICEs are off
------------------------------------------------------------------------------------------
SELECT n_steps FROM sae_train(:'cfg'::jsonb ||
  '{"verbose": true, "total_training_tokens": 1280, "b_dec_init_method": "zeros", "run_name": "verbose run"}');
-- progress NOTICEs every sae.progress_every steps, with the step out of ceil(total / batch);
-- they carry timings, so a second session runs them and the numbers are masked
\setenv SAE_REGRESS_DB :DBNAME
\! psql -X -q -d "$SAE_REGRESS_DB" -c "SET sae.progress_every = 4" -c "SET sae.threads = 1" -c "CREATE TEMP TABLE p AS SELECT * FROM sae_synthetic_activations(512, 8, 16, 2, 3)" -c "SELECT n_steps FROM sae_train('{\"activations_table\": \"p\", \"activations_column\": \"activation\", \"d_in\": 8, \"d_sae\": 32, \"train_batch_size\": 64, \"context_size\": 64, \"store_batch_size\": 2, \"n_batches_in_buffer\": 4, \"total_training_tokens\": 641, \"b_dec_init_method\": \"mean\", \"lr_warm_up_steps\": 0, \"verbose\": false, \"run_name\": \"progress notices\"}')" -c "DELETE FROM sae.runs WHERE run_name = 'progress notices'" 2>&1 | sed -E 's/ [0-9]+ tokens\/s / N tokens\/s /; s/(MSE Loss|L1|L0) [0-9.]+/\1 N/g; s/ETA [0-9]+:[0-9]{2}:[0-9]{2}/ETA H:MM:SS/'
-- ghost grads, the keys that SAELens has but that mean something else here, and device cpu
-- (cuda and auto depend on the machine: test/pgtap/05_device.sql)
SELECT n_steps FROM sae_train(:'cfg'::jsonb ||
  '{"verbose": true, "total_training_tokens": 640, "b_dec_init_method": "mean", "use_ghost_grads": true,
    "log_to_wandb": true, "wandb_project": "my project", "dead_feature_threshold": 1e-6, "device": "cpu"}');
SELECT run_name, device, config->>'device' AS config_device, config->>'log_to_wandb' AS log_to_wandb,
       config->>'wandb_project' AS wandb_project
FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- "log_to_wandb": false says nothing; torch-style dtype names are accepted and normalized
SELECT n_steps FROM sae_train(:'cfg'::jsonb ||
  '{"total_training_tokens": 640, "b_dec_init_method": "mean", "log_to_wandb": false, "dtype": "torch.float32"}');
SELECT config->>'dtype' AS dtype FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- expansion_factor instead of d_sae; a run name and hook point of one's own
SELECT run_name, hook_point, d_sae FROM sae_train((:'cfg'::jsonb - 'd_sae') ||
  '{"expansion_factor": 2, "total_training_tokens": 640, "b_dec_init_method": "mean", "run_name": "my run", "hook_point": "blocks.0.hook_resid_pre", "hook_point_layer": 3}');
SELECT run_name, hook_point, hook_point_layer, d_sae, config->>'expansion_factor' AS ef, config->>'d_sae' AS cfg_d_sae
FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- d_sae that is not a multiple of d_in: no expansion factor
SELECT d_sae FROM sae_train(:'cfg'::jsonb || '{"d_sae": 40, "total_training_tokens": 640, "b_dec_init_method": "mean"}');
SELECT config->'expansion_factor' AS ef, config->>'run_name' AS run_name FROM sae.runs ORDER BY run_id DESC LIMIT 1;

-- names with quotes, backslashes, control characters and % survive intact
SELECT run_name = E'%s%n "q" back\\slash \t tab \n newline' AS run_name_intact,
       hook_point = E'%n\\' AS hook_point_intact
FROM sae_train(:'cfg'::jsonb || jsonb_build_object('total_training_tokens', 640, 'b_dec_init_method', 'mean',
       'run_name', E'%s%n "q" back\\slash \t tab \n newline', 'hook_point', E'%n\\'));
SELECT config->>'run_name' = run_name AS config_run_name_intact, config->>'hook_point' = hook_point AS config_hook_point_intact
FROM sae.runs ORDER BY run_id DESC LIMIT 1;

-- sae_train can be called in the select list too
SELECT (sae_train(:'cfg'::jsonb || '{"total_training_tokens": 640, "b_dec_init_method": "mean"}')).n_steps;

-- and inside a transaction that rolls back, leaving nothing
SELECT count(*) AS runs_before FROM sae.runs \gset
BEGIN;
SELECT n_steps FROM sae_train(:'cfg'::jsonb || '{"total_training_tokens": 640, "b_dec_init_method": "mean"}');
ROLLBACK;
SELECT count(*) - :runs_before AS new_runs FROM sae.runs;

DROP TABLE small_acts, one_row;
DROP TABLE train_acts;

-- pg_dump keeps the runs (the tables are extension config tables): dump this database,
-- restore it into a new one, and count there
SELECT (SELECT count(*) FROM sae.runs) || ' runs, ' || (SELECT count(*) FROM sae.train_log) || ' log rows, '
    || (SELECT count(*) FROM sae.features) || ' features, ' || (SELECT count(*) FROM sae.tensors) || ' tensors' AS here;
\! dropdb --if-exists regress_sae_restored 2>/dev/null; createdb regress_sae_restored && pg_dump -d "$SAE_REGRESS_DB" | psql -X -q -d regress_sae_restored >/dev/null 2>&1; psql -X -A -t -d regress_sae_restored -c "SELECT (SELECT count(*) FROM sae.runs) || ' runs, ' || (SELECT count(*) FROM sae.train_log) || ' log rows, ' || (SELECT count(*) FROM sae.features) || ' features, ' || (SELECT count(*) FROM sae.tensors) || ' tensors restored; run_id sequence ahead: ' || (nextval('sae.runs_run_id_seq') > (SELECT max(run_id) FROM sae.runs))"; dropdb regress_sae_restored
