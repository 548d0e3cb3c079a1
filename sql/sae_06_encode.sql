-- sae_encode and sae_reconstruct: shapes, agreement with the stored weights, reconstruction
-- quality of a well-trained SAE, apply_b_dec_to_input, caching across runs, and errors.
SET sae.progress_every = 0;
-- tiny matrices: one thread is fastest, and the result does not depend on it
SET sae.threads = 1;
SET client_min_messages = warning;
-- the error messages name run ids: start this test's runs at 1001
SELECT setval('sae.runs_run_id_seq', 1000);
CREATE TABLE enc_acts AS SELECT * FROM sae_synthetic_activations(8192, 16, 32, 2, 5);

-- 400 steps on 16-wide activations made of 32 directions, 2 per row: the SAE learns them well
\set cfg '{"activations_table": "enc_acts", "activations_column": "activation", "d_in": 16, "d_sae": 64, "train_batch_size": 128, "context_size": 64, "store_batch_size": 4, "n_batches_in_buffer": 4, "total_training_tokens": 51200, "lr": 0.004, "lr_warm_up_steps": 0, "l1_coefficient": 0.005, "wandb_log_frequency": 50, "seed": 5, "verbose": false}'
SELECT run_id AS enc_run, explained_variance > 0.9 AS trained_well FROM sae_train(:'cfg') \gset
SELECT run_id AS raw_run FROM sae_train(:'cfg'::jsonb || '{"apply_b_dec_to_input": false, "total_training_tokens": 6400}') \gset
SELECT run_id AS small_run FROM sae_train(:'cfg'::jsonb || '{"d_sae": 32, "total_training_tokens": 1280}') \gset
SELECT :enc_run AS enc_run, :raw_run AS raw_run, :small_run AS small_run;
RESET client_min_messages;
SELECT :'trained_well' AS trained_well;

-- lengths, non-negativity, sparsity
SELECT count(*) AS rows,
       bool_and(array_length(sae_encode(:enc_run, activation), 1) = 64) AS encode_len_is_d_sae,
       bool_and(array_length(sae_reconstruct(:enc_run, activation), 1) = 16) AS reconstruct_len_is_d_in,
       bool_and(0 <= ALL (sae_encode(:enc_run, activation))) AS non_negative,
       avg((SELECT count(*) FROM unnest(sae_encode(:enc_run, activation)) f WHERE f > 0)) < 32 AS sparse
FROM enc_acts WHERE row_id <= 200;

-- the reconstruction is close to the input: explained variance over 200 rows, and per row
WITH x AS (SELECT row_id, activation AS a, sae_reconstruct(:enc_run, activation) AS r FROM enc_acts WHERE row_id <= 200),
     e AS (SELECT row_id, sum((ai - ri)^2) AS sse, sum(ai^2) AS ss FROM x, unnest(a, r) AS u(ai, ri) GROUP BY row_id),
     m AS (SELECT i, avg(ai) AS mean FROM x, unnest(a) WITH ORDINALITY AS u(ai, i) GROUP BY i),
     t AS (SELECT sum((ai - mean)^2) AS sst FROM x, unnest(a) WITH ORDINALITY AS u(ai, i) JOIN m USING (i))
SELECT 1 - sum(sse) / (SELECT sst FROM t) > 0.9 AS explained_variance_above_0_9,
       avg(sqrt(sse / nullif(ss, 0))) < 0.3 AS mean_relative_error_below_0_3
FROM e;

-- the same numbers as the weights in sae.features and sae.tensors:
-- f = relu((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec
CREATE TEMP VIEW manual AS
WITH b AS (SELECT data AS b_dec FROM sae.tensors WHERE run_id = :enc_run AND name = 'b_dec'),
     x AS (SELECT row_id, activation AS a FROM enc_acts WHERE row_id <= 20),
     f AS (SELECT x.row_id, ft.feature_id,
                  greatest(0, ft.b_enc + (SELECT sum((ai - bi) * wi) FROM unnest(x.a, b.b_dec, ft.w_enc) AS u(ai, bi, wi))) AS f
           FROM x, b, sae.features ft WHERE ft.run_id = :enc_run)
SELECT f.row_id, array_agg(f.f ORDER BY f.feature_id) AS f FROM f GROUP BY f.row_id;
SELECT max((SELECT max(abs(a - b)) FROM unnest(m.f, sae_encode(:enc_run, x.activation)) AS u(a, b))) < 1e-4 AS encode_matches_weights
FROM manual m JOIN enc_acts x USING (row_id);
WITH b AS (SELECT data AS b_dec FROM sae.tensors WHERE run_id = :enc_run AND name = 'b_dec'),
     rec AS (SELECT m.row_id, j, bj + sum(fi * (ft.w_dec)[j]) AS r
             FROM manual m, b, unnest(m.f) WITH ORDINALITY AS u(fi, i)
             JOIN sae.features ft ON ft.run_id = :enc_run AND ft.feature_id = u.i - 1,
             unnest(b.b_dec) WITH ORDINALITY AS v(bj, j)
             GROUP BY m.row_id, j, bj)
SELECT max(abs(rec.r - (sae_reconstruct(:enc_run, x.activation))[rec.j])) < 1e-4 AS reconstruct_matches_weights
FROM rec JOIN enc_acts x USING (row_id);

-- apply_b_dec_to_input false: the encoder sees x itself, f = relu(x W_enc + b_enc)
WITH x AS (SELECT row_id, activation AS a FROM enc_acts WHERE row_id <= 20),
     f AS (SELECT x.row_id, ft.feature_id,
                  greatest(0, ft.b_enc + (SELECT sum(ai * wi) FROM unnest(x.a, ft.w_enc) AS u(ai, wi))) AS f
           FROM x, sae.features ft WHERE ft.run_id = :raw_run),
     m AS (SELECT row_id, array_agg(f ORDER BY feature_id) AS f FROM f GROUP BY row_id)
SELECT max((SELECT max(abs(a - b)) FROM unnest(m.f, sae_encode(:raw_run, x.activation)) AS u(a, b))) < 1e-4 AS raw_encode_matches
FROM m JOIN enc_acts x USING (row_id);

-- float8[] and numeric input cast to real[]; an array with a lower bound other than 1
SELECT sae_encode(:enc_run, activation::float8[]::real[]) = sae_encode(:enc_run, activation) AS cast_ok
FROM enc_acts WHERE row_id = 1;
SELECT sae_encode(:enc_run, ('[0:15]=' || activation::text)::real[]) = sae_encode(:enc_run, activation) AS lower_bound_ignored
FROM enc_acts WHERE row_id = 1;
-- the zero vector, and a large one: finite outputs
SELECT array_length(sae_encode(:enc_run, array_fill(0::real, ARRAY[16])), 1) AS len,
       NOT EXISTS (SELECT 1 FROM unnest(sae_reconstruct(:enc_run, array_fill(1e6::real, ARRAY[16]))) x
                   WHERE x IN ('NaN', 'Infinity', '-Infinity')) AS finite;

-- two runs in one query: the cached weights follow the run id of each call
SELECT bool_and(sae_encode(r, activation) = CASE WHEN r = :enc_run THEN e1 ELSE e2 END) AS right_run_each_row,
       count(DISTINCT array_length(sae_encode(r, activation), 1)) AS lengths
FROM (SELECT row_id, activation, sae_encode(:enc_run, activation) AS e1, sae_encode(:raw_run, activation) AS e2
      FROM enc_acts WHERE row_id <= 10) x,
     (VALUES (:enc_run), (:raw_run), (:enc_run)) AS v(r);
-- a run of another shape in the same query (d_sae 64, then 32)
SELECT o, array_length(sae_encode(r, activation), 1) AS len
FROM enc_acts, (VALUES (1, :enc_run), (2, :small_run), (3, :enc_run)) AS v(o, r) WHERE row_id = 1 ORDER BY o;
-- parallel safe: with parallel workers forced, the workers encode (each loads the weights
-- itself) and the sums agree with a serial scan up to float summation order
SELECT sum((sae_encode(:enc_run, activation))[3]::float8) AS serial_enc, sum((sae_reconstruct(:enc_run, activation))[2]::float8) AS serial_rec
FROM enc_acts \gset
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT sum((sae_encode(:enc_run, activation))[3]::float8), sum((sae_reconstruct(:enc_run, activation))[2]::float8) FROM enc_acts;
SELECT abs(sum((sae_encode(:enc_run, activation))[3]::float8) - :serial_enc) < 1e-6 AS same_encode_sum,
       abs(sum((sae_reconstruct(:enc_run, activation))[2]::float8) - :serial_rec) < 1e-6 AS same_reconstruct_sum
FROM enc_acts;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

-- an SAE on another SAE's features: a view of sae_encode as the source (epochs included)
CREATE VIEW enc_features AS SELECT sae_encode(:small_run, activation) AS f FROM enc_acts WHERE row_id <= 100;
SET client_min_messages = warning;
SELECT d_in, d_sae, n_steps FROM sae_train(:'cfg'::jsonb ||
  '{"activations_table": "enc_features", "activations_column": "f", "d_in": 32, "d_sae": 64, "total_training_tokens": 1280}');
RESET client_min_messages;
SELECT source, final_metrics->>'epochs' AS epochs FROM sae.runs ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);
DROP VIEW enc_features;

------------------------------------------------------------------------------------------
-- errors
------------------------------------------------------------------------------------------
SELECT sae_encode(-1, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
SELECT sae_reconstruct(999999999, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
SELECT sae_encode(:enc_run, '{1, 2, 3}');
\echo :SQLSTATE
SELECT sae_reconstruct(:enc_run, activation || 0::real) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
SELECT sae_encode(:enc_run, '{}');
\echo :SQLSTATE
SELECT sae_encode(:enc_run, '{{1, 2}, {3, 4}}');
\echo :SQLSTATE
SELECT sae_encode(:enc_run, array_fill(0::real, ARRAY[4, 4]));
\echo :SQLSTATE
SELECT sae_encode(:enc_run, array_fill(0::real, ARRAY[15]) || NULL::real);
\echo :SQLSTATE
SELECT sae_encode(:enc_run, array_fill(0::real, ARRAY[15]) || 'NaN'::real);
\echo :SQLSTATE
SELECT sae_reconstruct(:enc_run, array_fill(0::real, ARRAY[15]) || '-Infinity'::real);
\echo :SQLSTATE
-- strict: NULL in, NULL out
SELECT sae_encode(NULL, activation) IS NULL AS null_run, sae_encode(:enc_run, NULL) IS NULL AS null_vector
FROM enc_acts WHERE row_id = 1;
-- a run that has not completed
INSERT INTO sae.runs (run_name, config, hook_point, hook_point_layer, d_in, d_sae, architecture, device, source)
VALUES ('unfinished', '{}', 'x', 0, 16, 64, 'unit_norm_sae', 'cpu', 'x') RETURNING run_id AS unfinished \gset
SELECT sae_encode(:unfinished, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
-- a completed run whose weights were tampered with
UPDATE sae.runs SET status = 'completed' WHERE run_id = :unfinished;
SELECT sae_encode(:unfinished, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
DELETE FROM sae.runs WHERE run_id = :unfinished;
BEGIN;
DELETE FROM sae.tensors WHERE run_id = :enc_run AND name = 'b_dec';
SELECT sae_encode(:enc_run, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
UPDATE sae.features SET w_dec = w_dec[1:15] WHERE run_id = :enc_run AND feature_id = 7;
SELECT sae_reconstruct(:enc_run, activation) FROM enc_acts WHERE row_id = 1;
\echo :SQLSTATE
ROLLBACK;
-- after the errors, the same session encodes as before
SELECT array_length(sae_encode(:enc_run, activation), 1) AS len FROM enc_acts WHERE row_id = 1;

DELETE FROM sae.runs WHERE run_id IN (:enc_run, :raw_run, :small_run);
DROP VIEW manual;
DROP TABLE enc_acts;
