-- The activation source: tables, views, names, column types and bad rows. Every failure
-- shows its SQLSTATE and leaves no rows in the sae.* tables.
SET sae.progress_every = 0;
SET sae.threads = 1;
-- start-up and epoch NOTICEs are not the subject here
SET client_min_messages = warning;

CREATE TEMP TABLE baseline AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;
CREATE TEMP VIEW leftover AS
SELECT (SELECT count(*) FROM sae.runs) - runs AS new_runs,
       (SELECT count(*) FROM sae.train_log) - train_log AS new_log,
       (SELECT count(*) FROM sae.features) - features AS new_features,
       (SELECT count(*) FROM sae.tensors) - tensors AS new_tensors
FROM baseline;
-- runs that succeed are inspected, then deleted before the next failure is checked
SELECT coalesce(max(run_id), 0) AS first_run FROM sae.runs \gset

-- 2 steps of 64 rows over a 64-row half-buffer; the source is the only thing that varies
\set base '{"activations_column": "v", "d_in": 4, "d_sae": 16, "train_batch_size": 64, "total_training_tokens": 128, "context_size": 64, "store_batch_size": 1, "n_batches_in_buffer": 2, "lr_warm_up_steps": 0, "b_dec_init_method": "mean", "verbose": false}'

CREATE TABLE src (id int, v real[]);
INSERT INTO src SELECT i, ARRAY[i % 3, (i % 5) - 2, i % 2, 1]::real[] FROM generate_series(1, 100) i;

------------------------------------------------------------------------------------------
-- names that resolve to nothing usable
------------------------------------------------------------------------------------------
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "no_such_table"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "no_such_schema.src"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "a.b.c.d"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src", "activations_column": "no_such_column"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the column name is taken as given, not case-folded
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src", "activations_column": "V"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src", "activations_column": "id"}');
\echo :SQLSTATE
SELECT * FROM leftover;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src", "activations_column": "ctid"}');
\echo :SQLSTATE
SELECT * FROM leftover;
CREATE TABLE wrong_types (i int[], r real, t text[], n numeric[]);
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "wrong_types", "activations_column": "i"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "wrong_types", "activations_column": "r"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "wrong_types", "activations_column": "t"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "wrong_types", "activations_column": "n"}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- SQL injection through the names: rejected as names, never executed
------------------------------------------------------------------------------------------
CREATE TABLE victim AS SELECT v FROM src;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim; DROP TABLE victim"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim WHERE false"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim\"; DROP TABLE victim; --"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "\"victim; DROP TABLE victim\""}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "(SELECT v FROM victim) AS s"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "pg_sleep(10)"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim", "activations_column": "v FROM victim; DROP TABLE victim; --"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim", "activations_column": "v\" FROM victim; DROP TABLE victim; --"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim", "activations_column": "(SELECT pg_sleep(10))"}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "victim", "activations_column": "*"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the victim is intact
SELECT count(*) AS victim_rows FROM victim;

------------------------------------------------------------------------------------------
-- bad rows: the error names the row (counted from 1 in scan order) and the problem
------------------------------------------------------------------------------------------
CREATE TABLE bad (v real[]);
-- empty
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- a NULL row
INSERT INTO bad SELECT v FROM src WHERE id <= 10;
INSERT INTO bad VALUES (NULL);
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- only NULL rows: the first row is reported, not "no rows"
CREATE TABLE all_null (v real[]);
INSERT INTO all_null VALUES (NULL), (NULL);
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "all_null"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- a NULL element
TRUNCATE bad;
INSERT INTO bad SELECT v FROM src WHERE id <= 10;
INSERT INTO bad VALUES ('{1, NULL, 3, 4}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- too few values, too many, none, a 2-D array
TRUNCATE bad;
INSERT INTO bad SELECT v FROM src WHERE id <= 3;
INSERT INTO bad VALUES ('{1, 2, 3}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
TRUNCATE bad;
INSERT INTO bad VALUES ('{1, 2, 3, 4, 5}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
TRUNCATE bad;
INSERT INTO bad VALUES ('{1, 2, 3, 4}'), ('{}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
TRUNCATE bad;
INSERT INTO bad VALUES ('{{1, 2}, {3, 4}}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the table is fine but the config's d_in is not
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src", "d_in": 8}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- NaN, Infinity and -Infinity, anywhere in the table
TRUNCATE bad;
INSERT INTO bad SELECT v FROM src WHERE id <= 50;
INSERT INTO bad VALUES ('{1, 2, 3, NaN}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
TRUNCATE bad;
INSERT INTO bad VALUES ('{Infinity, 2, 3, 4}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;
TRUNCATE bad;
INSERT INTO bad VALUES ('{1, -Infinity, 3, 4}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "bad"}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- float8[] columns: converted to real; values beyond real's range are refused
------------------------------------------------------------------------------------------
CREATE TABLE src8 (v float8[]);
INSERT INTO src8 SELECT v::float8[] FROM src;
SELECT d_in, d_sae, n_steps, n_tokens FROM sae_train(:'base'::jsonb || '{"activations_table": "src8"}');
SELECT source, config->>'activations_table' AS activations_table FROM sae.runs ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id > :first_run;
INSERT INTO src8 VALUES ('{1, 2, 3, 1e300}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src8"}');
\echo :SQLSTATE
TRUNCATE src8;
INSERT INTO src8 VALUES ('{1, 2, 3, NaN}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src8"}');
\echo :SQLSTATE
TRUNCATE src8;
INSERT INTO src8 VALUES ('{1, 2, NULL, 4}');
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "src8"}');
\echo :SQLSTATE
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- views, materialized views, partitioned tables and odd names
------------------------------------------------------------------------------------------
-- the hint's advice: filter the NULL rows with a view and train on the view
TRUNCATE bad;
INSERT INTO bad SELECT v FROM src;
INSERT INTO bad VALUES (NULL), (NULL);
CREATE VIEW bad_filtered AS SELECT v FROM bad WHERE v IS NOT NULL;
SELECT d_in, n_steps, n_tokens FROM sae_train(:'base'::jsonb || '{"activations_table": "bad_filtered"}');
SELECT source, hook_point, final_metrics->>'rows_read' AS rows_read, final_metrics->>'epochs' AS epochs
FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- a view that computes its column
CREATE VIEW computed AS SELECT ARRAY[id, -id, id % 7, 0.5]::real[] AS v FROM src;
SELECT d_in, n_steps FROM sae_train(:'base'::jsonb || '{"activations_table": "computed"}');
CREATE MATERIALIZED VIEW src_mv AS SELECT v FROM src;
SELECT d_in, n_steps FROM sae_train(:'base'::jsonb || '{"activations_table": "src_mv"}');
CREATE TABLE src_part (id int, v real[]) PARTITION BY RANGE (id);
CREATE TABLE src_part_1 PARTITION OF src_part FOR VALUES FROM (0) TO (50);
CREATE TABLE src_part_2 PARTITION OF src_part FOR VALUES FROM (50) TO (1000);
INSERT INTO src_part SELECT * FROM src;
SELECT d_in, n_steps FROM sae_train(:'base'::jsonb || '{"activations_table": "src_part"}');
SELECT source FROM sae.runs ORDER BY run_id DESC LIMIT 4;
-- a schema and a table with spaces and capitals, a column with both
CREATE SCHEMA "other schema";
CREATE TABLE "other schema"."My Acts" ("My Column" real[], "select" real[]);
INSERT INTO "other schema"."My Acts" SELECT v, v FROM src;
SELECT d_in, hook_point FROM sae_train(:'base'::jsonb ||
  '{"activations_table": "\"other schema\".\"My Acts\"", "activations_column": "My Column"}');
SELECT source, hook_point, config->>'activations_table' AS activations_table,
       config->>'activations_column' AS activations_column
FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- a reserved word as the column
SELECT d_in FROM sae_train(:'base'::jsonb ||
  '{"activations_table": "\"other schema\".\"My Acts\"", "activations_column": "select"}');
SELECT source FROM sae.runs ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id > :first_run;
-- unquoted names fold to lower case, as in SQL; quoted ones do not
SELECT d_in FROM sae_train(:'base'::jsonb || '{"activations_table": "PUBLIC.SRC"}');
DELETE FROM sae.runs WHERE run_id > :first_run;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "\"SRC\""}');
\echo :SQLSTATE
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "\"other schema\".my acts", "activations_column": "My Column"}');
\echo :SQLSTATE
SELECT * FROM leftover;
-- the search_path finds unqualified names, and the stored source is qualified
SET search_path = "other schema", public;
SELECT d_in FROM sae_train(:'base'::jsonb || '{"activations_table": "\"My Acts\"", "activations_column": "My Column"}');
RESET search_path;
SELECT source FROM sae.runs ORDER BY run_id DESC LIMIT 1;
-- a temporary table
CREATE TEMP TABLE src_temp AS SELECT v FROM src;
SELECT d_in FROM sae_train(:'base'::jsonb || '{"activations_table": "src_temp"}');
SELECT source LIKE 'pg\_temp\_%.src\_temp.v' AS temp_source FROM sae.runs ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id > :first_run;
SELECT * FROM leftover;

------------------------------------------------------------------------------------------
-- the caller's privileges apply to the source
------------------------------------------------------------------------------------------
DROP ROLE IF EXISTS regress_sae_reader;
CREATE ROLE regress_sae_reader;
GRANT USAGE ON SCHEMA sae TO regress_sae_reader;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA sae TO regress_sae_reader;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA sae TO regress_sae_reader;
CREATE TABLE secret AS SELECT v FROM src;
GRANT SELECT ON src TO regress_sae_reader;
SET ROLE regress_sae_reader;
SELECT run_id FROM sae_train(:'base'::jsonb || '{"activations_table": "secret"}');
\echo :SQLSTATE
RESET ROLE;
SELECT * FROM leftover;
SET ROLE regress_sae_reader;
SELECT d_in FROM sae_train(:'base'::jsonb || '{"activations_table": "src"}');
RESET ROLE;
SELECT source FROM sae.runs ORDER BY run_id DESC LIMIT 1;
DELETE FROM sae.runs WHERE run_id > :first_run;
REVOKE ALL ON ALL TABLES IN SCHEMA sae FROM regress_sae_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA sae FROM regress_sae_reader;
REVOKE ALL ON SCHEMA sae FROM regress_sae_reader;
REVOKE ALL ON src FROM regress_sae_reader;
DROP ROLE regress_sae_reader;

SELECT * FROM leftover;
DROP SCHEMA "other schema" CASCADE;
DROP TABLE src, src8, bad, all_null, victim, wrong_types, secret, src_part CASCADE;
