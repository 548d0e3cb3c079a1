-- activations_table must name a table, view, materialized view, partitioned or foreign
-- table. Other relations (an index, a composite type, a sequence) are refused by name,
-- with SQLSTATE 42809, before any query is built from the name. No rows are left behind.
SET sae.progress_every = 0;
SET sae.threads = 1;
SET client_min_messages = warning;
CREATE TABLE kind_acts (v real[]);
INSERT INTO kind_acts SELECT activation FROM sae_synthetic_activations(100, 4, 8, 2, 1);
CREATE TEMP TABLE baseline AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;
CREATE TEMP VIEW leftover AS
SELECT (SELECT count(*) FROM sae.runs) - runs AS new_runs,
       (SELECT count(*) FROM sae.train_log) - train_log AS new_log,
       (SELECT count(*) FROM sae.features) - features AS new_features,
       (SELECT count(*) FROM sae.tensors) - tensors AS new_tensors
FROM baseline;
\set base '{"activations_column": "v", "d_in": 4, "d_sae": 16, "train_batch_size": 64, "total_training_tokens": 128, "context_size": 64, "store_batch_size": 1, "n_batches_in_buffer": 2, "lr_warm_up_steps": 0, "b_dec_init_method": "mean", "verbose": false}'

-- an index on the activation column: it has a real[] column "v"
CREATE INDEX kind_acts_v_idx ON kind_acts (v);
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "kind_acts_v_idx"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- a composite type: also a pg_class entry with a real[] column "v"
CREATE TYPE kind_row AS (v real[]);
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "kind_row"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- a sequence
CREATE SEQUENCE kind_seq;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "kind_seq", "activations_column": "last_value"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the table itself trains
SELECT d_in, n_steps FROM sae_train(:'base'::jsonb || '{"activations_table": "kind_acts"}');
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
SELECT * FROM leftover;
DROP TABLE kind_acts;
DROP TYPE kind_row;
DROP SEQUENCE kind_seq;
