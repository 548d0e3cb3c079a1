-- Config numbers beyond the range of a double are refused like any other out-of-range value:
-- SQLSTATE 22023, a message naming the key, and the key's bounds in the hint (not a numeric
-- conversion error that names no key). No rows are left behind.
SET sae.progress_every = 0;
SET sae.threads = 1;
SET client_min_messages = warning;
CREATE TABLE num_acts AS SELECT * FROM sae_synthetic_activations(256, 8, 16, 2, 1);
CREATE TEMP TABLE baseline AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;
CREATE TEMP VIEW leftover AS
SELECT (SELECT count(*) FROM sae.runs) - runs AS new_runs,
       (SELECT count(*) FROM sae.train_log) - train_log AS new_log,
       (SELECT count(*) FROM sae.features) - features AS new_features,
       (SELECT count(*) FROM sae.tensors) - tensors AS new_tensors
FROM baseline;
\set base '{"activations_table": "num_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "total_training_tokens": 640, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "lr_warm_up_steps": 0, "verbose": false}'

SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": 1e400}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"total_training_tokens": 1e309}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"seed": -1e400}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the largest finite values are still checked against the key's range as before
SELECT run_id FROM sae_train(:'base'::jsonb || '{"lr": 1e308}');
\echo :SQLSTATE
SELECT * FROM leftover;
DROP TABLE num_acts;
