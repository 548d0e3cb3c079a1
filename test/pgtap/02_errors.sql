-- sae_train, sae_encode and sae_reconstruct refuse bad input with the documented SQLSTATEs,
-- the hints point at the fix, and nothing is left behind.
BEGIN;
SELECT plan(45);

SET LOCAL sae.progress_every = 0;
SET LOCAL sae.threads = 1;
SET LOCAL client_min_messages = warning;

CREATE TEMP TABLE t_acts AS SELECT * FROM sae_synthetic_activations(300, 8, 16, 2, 1);
CREATE TEMP TABLE t_bad (v real[]);
CREATE TEMP TABLE t_counts AS
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;

-- the SQL of sae_train on a base config with some keys changed
CREATE FUNCTION pg_temp.train(changes jsonb, tbl text DEFAULT 't_acts', col text DEFAULT 'activation')
RETURNS text LANGUAGE sql AS $$
SELECT format('SELECT * FROM sae_train(%L::jsonb)',
              jsonb_build_object('activations_table', tbl, 'activations_column', col, 'd_in', 8, 'd_sae', 32,
                                 'train_batch_size', 64, 'total_training_tokens', 640, 'context_size', 64,
                                 'store_batch_size', 2, 'n_batches_in_buffer', 4, 'lr_warm_up_steps', 0,
                                 'b_dec_init_method', 'mean', 'verbose', false) || changes)
$$;
-- the HINT of the error a statement raises
CREATE FUNCTION pg_temp.hint_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
CREATE FUNCTION pg_temp.detail_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;

-- the base config trains
SELECT lives_ok(pg_temp.train('{}'), 'the base config trains');
DELETE FROM sae.runs WHERE run_id = (SELECT max(run_id) FROM sae.runs);

-- config keys
SELECT throws_ok(pg_temp.train('{"d_sea": 64}'), '22023', 'unknown config key "d_sea"', 'an unknown key is 22023');
SELECT is(pg_temp.hint_of(pg_temp.train('{"d_sea": 64}')), 'Perhaps you meant "d_sae".', 'a near miss gets a "Perhaps you meant" hint');
SELECT is(pg_temp.hint_of(pg_temp.train('{"l1_coeficient": 0.1}')), 'Perhaps you meant "l1_coefficient".', 'l1_coeficient: Perhaps you meant "l1_coefficient"');
SELECT throws_ok(pg_temp.train('{"d_in": "8"}'), '22023', 'config key "d_in" must be an integer', 'a string for an integer is 22023');
SELECT throws_ok(pg_temp.train('{"lr": true}'), '22023', 'config key "lr" must be a number', 'a boolean for a number is 22023');
SELECT throws_ok(pg_temp.train('{"seed": 0.5}'), '22023', 'config key "seed" must be an integer, not 0.5', 'a fraction for an integer is 22023');
SELECT throws_ok(pg_temp.train('{"d_in": 0}'), '22023', 'config key "d_in" is out of range: 0', 'd_in 0 is out of range');
SELECT is(pg_temp.hint_of(pg_temp.train('{"d_in": 0}')), '"d_in" must be between 1 and 1e+06.', 'the range hint gives the bounds');
SELECT throws_ok(pg_temp.train('{"lr_scheduler_name": "linear"}'), '22023', NULL, 'an unknown scheduler is 22023');
SELECT is(pg_temp.hint_of(pg_temp.train('{"lr_scheduler_name": "linear"}')),
          'Valid values are "constant", "cosineannealing" or "cosineannealingwarmrestarts".', 'the hint lists the schedulers');
SELECT throws_ok(pg_temp.train('{"expansion_factor": 2}'), '22023',
                 'config keys "d_sae" and "expansion_factor" contradict each other', 'd_sae vs expansion_factor is 22023');
SELECT is(pg_temp.detail_of(pg_temp.train('{"expansion_factor": 2}')), 'd_sae is 32 but d_in * expansion_factor is 16.',
          'the contradiction detail gives both numbers');
SELECT throws_ok(pg_temp.train('{"sae_type": "tanh_sae"}'), '22023', NULL, 'tanh_sae without noise_scale is 22023');
SELECT throws_ok(pg_temp.train('{"noise_scale": 1}'), '22023', NULL, 'unit_norm_sae with noise_scale is 22023');
SELECT throws_ok(pg_temp.train('{"dtype": "float64"}'), '0A000', 'dtype "float64" is not supported', 'float64 is 0A000');
SELECT throws_ok(pg_temp.train('{"model_name": "gpt2-small"}'), '22023', 'config keys "activations_table" and "model_name" exclude each other', 'model_name with activations_table is 22023');
SELECT throws_ok($$SELECT * FROM sae_train('[1, 2]')$$, '22023', 'sae_train config must be a JSON object', 'an array config is 22023');
SELECT throws_ok($$SELECT * FROM sae_train('{}')$$, '22023', 'config key "activations_table" or "model_name" is required', 'an empty config is 22023');
SELECT is_empty($$SELECT * FROM sae_train(NULL)$$, 'sae_train(NULL) returns no row (STRICT)');

-- the source
SELECT throws_ok(pg_temp.train('{}', 'no_such_table'), '42P01', 'activations_table "no_such_table" does not exist', 'a missing table is 42P01');
SELECT throws_ok(pg_temp.train('{}', 't_acts', 'nope'), '42703', NULL, 'a missing column is 42703');
SELECT throws_ok(pg_temp.train('{}', 't_acts', 'row_id'), '42804', NULL, 'a bigint column is 42804');
SELECT throws_ok(pg_temp.train('{}', 't_acts; DROP TABLE t_acts'), '42602', 'invalid name syntax', 'an injected table name is 42602');
SELECT throws_ok(pg_temp.train('{}', 't_acts', 'activation FROM t_acts; DROP TABLE t_acts; --'), '42703', NULL,
                 'an injected column name is 42703');
SELECT ok(to_regclass('t_acts') IS NOT NULL, 't_acts survived the injection attempts');
SELECT throws_ok(pg_temp.train('{}', 't_bad', 'v'), 'P0002', 'the activation source has no rows', 'an empty table is P0002');
INSERT INTO t_bad VALUES ('{1,2,3,4,5,6,7,8}'), (NULL);
SELECT throws_ok(pg_temp.train('{}', 't_bad', 'v'), '22004', NULL, 'a NULL row is 22004');
UPDATE t_bad SET v = '{1,2,3,4,5,6,7,NULL}' WHERE v IS NULL;
SELECT throws_ok(pg_temp.train('{}', 't_bad', 'v'), '22004', NULL, 'a NULL element is 22004');
UPDATE t_bad SET v = '{1,2,3,4,5,6,7,NaN}' WHERE v[8] IS NULL;
SELECT throws_ok(pg_temp.train('{}', 't_bad', 'v'), '22000', NULL, 'NaN is 22000');
UPDATE t_bad SET v = '{1,2,3}' WHERE v[8] = 'NaN';
SELECT throws_ok(pg_temp.train('{}', 't_bad', 'v'), '2202E', NULL, 'a short row is 2202E');
SELECT throws_ok(pg_temp.train('{"d_in": 16}'), '2202E', NULL, 'd_in larger than the rows is 2202E');

-- the memory budget
SET LOCAL sae.max_memory = '1MB';
SELECT throws_ok(pg_temp.train('{"d_sae": 100000}'), '54000', NULL, 'a run over sae.max_memory is 54000');
SELECT matches(pg_temp.hint_of(pg_temp.train('{"d_sae": 100000}')), 'Raise sae\.max_memory', 'the hint says to raise sae.max_memory');
RESET sae.max_memory;

-- nothing was stored by any failure
SELECT results_eq($$SELECT (SELECT count(*) FROM sae.runs), (SELECT count(*) FROM sae.train_log),
                           (SELECT count(*) FROM sae.features), (SELECT count(*) FROM sae.tensors)$$,
                  $$SELECT runs, train_log, features, tensors FROM t_counts$$,
                  'no failure left rows in sae.runs, sae.train_log, sae.features or sae.tensors');
SELECT is((SELECT count(*)::int FROM pg_backend_memory_contexts WHERE name LIKE 'sae%'), 0,
          'no failure left a sae memory context behind');

-- sae_encode and sae_reconstruct
SELECT lives_ok(pg_temp.train('{}'), 'a run to encode with');
SELECT max(run_id) AS enc_run FROM sae.runs \gset
SELECT throws_ok($$SELECT sae_encode(-42, '{1,2,3,4,5,6,7,8}')$$, '42704', 'run -42 does not exist', 'an unknown run is 42704');
SELECT throws_ok($$SELECT sae_reconstruct(-42, '{1,2,3,4,5,6,7,8}')$$, '42704', NULL, 'sae_reconstruct: an unknown run is 42704');
SELECT throws_ok(format($$SELECT sae_encode(%s, '{1,2,3}')$$, :enc_run), '2202E', NULL, 'a short vector is 2202E');
SELECT throws_ok(format($$SELECT sae_reconstruct(%s, '{1,2,3,4,5,6,7,8,9}')$$, :enc_run), '2202E', NULL, 'a long vector is 2202E');
SELECT throws_ok(format($$SELECT sae_encode(%s, '{1,2,3,4,5,6,7,NULL}')$$, :enc_run), '22004', NULL, 'a NULL element is 22004');
SELECT throws_ok(format($$SELECT sae_encode(%s, '{1,2,3,4,5,6,7,Infinity}')$$, :enc_run), '22000', NULL, 'Infinity is 22000');
SELECT is(array_length(sae_encode(:enc_run, '{1,2,3,4,5,6,7,8}'), 1), 32, 'sae_encode gives d_sae values');
UPDATE sae.runs SET status = 'running' WHERE run_id = :enc_run;
SELECT throws_ok(format($$SELECT sae_encode(%s, '{1,2,3,4,5,6,7,8}')$$, :enc_run), '55000', NULL, 'a run still running is 55000');

SELECT * FROM finish();
ROLLBACK;
