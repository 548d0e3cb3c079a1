-- Cancelling a long training: by statement_timeout, and by pg_cancel_backend from a second
-- session. The error is 57014, nothing is left in the sae.* tables or in the backend's
-- memory, and the session trains again right away.
SET sae.progress_every = 0;
SET client_min_messages = warning;
-- where the cancel lands (the training loop, a log INSERT, the source cursor) varies: no CONTEXT
\set SHOW_CONTEXT never

CREATE TEMP TABLE baseline AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;
CREATE TEMP VIEW leftover AS
SELECT (SELECT count(*) FROM sae.runs) - runs AS new_runs,
       (SELECT count(*) FROM sae.train_log) - train_log AS new_log,
       (SELECT count(*) FROM sae.features) - features AS new_features,
       (SELECT count(*) FROM sae.tensors) - tensors AS new_tensors
FROM baseline;
-- the run's memory context (and the engine memory its reset callback frees) is gone too
CREATE TEMP VIEW sae_contexts AS
SELECT count(*) AS sae_memory_contexts FROM pg_backend_memory_contexts WHERE name LIKE 'sae%';

-- 256-wide activations; an SAE of 4096 features with batches of 512 rows and 100M tokens
-- would train for hours
CREATE TABLE wide_acts AS SELECT * FROM sae_synthetic_activations(2048, 256, 512, 4, 9);
\set long '{"activations_table": "wide_acts", "activations_column": "activation", "d_in": 256, "expansion_factor": 16, "train_batch_size": 512, "context_size": 128, "store_batch_size": 8, "n_batches_in_buffer": 2, "total_training_tokens": 100000000, "lr_warm_up_steps": 0, "log_to_wandb": false, "wandb_log_frequency": 1, "feature_sampling_window": 1, "verbose": false}'

------------------------------------------------------------------------------------------
-- statement_timeout
------------------------------------------------------------------------------------------
SET statement_timeout = '300ms';
SELECT run_id FROM sae_train(:'long');
\echo :SQLSTATE
RESET statement_timeout;
SELECT 1 AS session_still_usable;
SELECT * FROM leftover;
SELECT * FROM sae_contexts;
-- a checkpointing run is cancelled the same way
SET statement_timeout = '300ms';
SELECT run_id FROM sae_train(:'long'::jsonb || '{"n_checkpoints": 10000}');
\echo :SQLSTATE
RESET statement_timeout;
SELECT * FROM leftover;
SELECT * FROM sae_contexts;

-- a small training right after, in the same session
CREATE TABLE small_acts AS SELECT * FROM sae_synthetic_activations(512, 8, 16, 2, 9);
SELECT d_in, d_sae, n_steps, n_tokens FROM sae_train('{"activations_table": "small_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "total_training_tokens": 1280, "verbose": false}');
SELECT status, (SELECT count(*) FROM sae.features f WHERE f.run_id = r.run_id) AS features
FROM sae.runs r ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
SELECT * FROM sae_contexts;

-- the timeout inside a transaction: the transaction is aborted, then rolled back
BEGIN;
SET LOCAL statement_timeout = '300ms';
SELECT run_id FROM sae_train(:'long');
\echo :SQLSTATE
SELECT 1;
ROLLBACK;
SELECT * FROM leftover;

-- ... and inside a savepoint: rolling back to it keeps the transaction usable
BEGIN;
SAVEPOINT before_training;
SET LOCAL statement_timeout = '300ms';
SELECT run_id FROM sae_train(:'long');
\echo :SQLSTATE
ROLLBACK TO SAVEPOINT before_training;
SELECT * FROM leftover;
SELECT d_sae, n_steps FROM sae_train('{"activations_table": "small_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "total_training_tokens": 640, "verbose": false}');
ROLLBACK;
SELECT * FROM leftover;
SELECT * FROM sae_contexts;

------------------------------------------------------------------------------------------
-- pg_cancel_backend from another session: a background shell waits until this session's
-- training is active, then cancels it (statement_timeout is only a safety net here)
------------------------------------------------------------------------------------------
\setenv SAE_REGRESS_DB :DBNAME
\! (i=0; while [ $i -lt 300 ]; do r=$(psql -X -A -t -q -d "$SAE_REGRESS_DB" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%sae_train%cancel me%'"); [ "$r" = t ] && break; i=$((i + 1)); sleep 0.1; done) >/dev/null 2>&1 &
SET statement_timeout = '60s';
SELECT run_id FROM sae_train(:'long'::jsonb || '{"run_name": "cancel me"}');
\echo :SQLSTATE
RESET statement_timeout;
SELECT 1 AS session_still_usable;
SELECT * FROM leftover;
SELECT * FROM sae_contexts;
SELECT d_sae, n_steps FROM sae_train('{"activations_table": "small_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "total_training_tokens": 640, "verbose": false}');
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- on "cuda" (the kernels emulated on the CPU, test/cuda_emu, whose device memory counts what
-- is allocated): a cancelled run frees its device memory too
------------------------------------------------------------------------------------------
\getenv emu SAE_TEST_CUDA_EMU
SET sae.cuda_module = :'emu';
CREATE TEMP TABLE device_free AS SELECT memory_free_mb FROM sae_device_info();
SET statement_timeout = '300ms';
SELECT run_id FROM sae_train(:'long'::jsonb || '{"device": "cuda"}');
\echo :SQLSTATE
RESET statement_timeout;
SELECT (SELECT memory_free_mb FROM sae_device_info()) = (SELECT memory_free_mb FROM device_free)
       AS device_memory_freed;
SELECT * FROM leftover;
SELECT * FROM sae_contexts;
RESET sae.cuda_module;

DROP TABLE wide_acts, small_acts;
