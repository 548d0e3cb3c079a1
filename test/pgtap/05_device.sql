-- Devices: sae_device_info() lists the GPUs the CUDA backend sees; "device": "cuda" trains on one
-- where one is visible and is otherwise an ERROR (58000) with a hint, leaving nothing behind;
-- "auto" falls back to the CPU; sae.device is checked and is the default a config's "device"
-- overrides. On a machine without a GPU (CI) the checks run the no-GPU way, on one with a GPU the
-- other: each test says which it checked.
BEGIN;
SELECT plan(12);

SET LOCAL sae.progress_every = 0;
SET LOCAL sae.threads = 1;
SET LOCAL client_min_messages = warning;

CREATE TEMP TABLE t_acts AS SELECT * FROM sae_synthetic_activations(300, 8, 16, 2, 1);
CREATE TEMP TABLE t_gpus AS SELECT * FROM sae_device_info();
CREATE TEMP TABLE t_runs AS SELECT count(*) AS n FROM sae.runs;

CREATE FUNCTION pg_temp.gpu() RETURNS boolean LANGUAGE sql AS $$ SELECT EXISTS (SELECT FROM t_gpus) $$;
CREATE FUNCTION pg_temp.train(changes jsonb) RETURNS text LANGUAGE sql AS $$
SELECT format('SELECT * FROM sae_train(%L::jsonb)',
              jsonb_build_object('activations_table', 't_acts', 'activations_column', 'activation', 'd_in', 8,
                                 'd_sae', 32, 'train_batch_size', 64, 'total_training_tokens', 640,
                                 'context_size', 64, 'store_batch_size', 2, 'n_batches_in_buffer', 4,
                                 'lr_warm_up_steps', 0, 'b_dec_init_method', 'mean', 'verbose', false) || changes)
$$;
CREATE FUNCTION pg_temp.last_device() RETURNS text LANGUAGE sql AS $$
SELECT device FROM sae.runs ORDER BY run_id DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.hint_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;

SELECT is((SELECT count(*) FROM t_gpus
           WHERE device !~ '^cuda:[0-9]+$' OR name = '' OR compute_capability !~ '^[0-9]+\.[0-9]+$'
              OR memory_total_mb <= 0 OR memory_free_mb > memory_total_mb OR multiprocessors <= 0),
          0::bigint, format('each of the %s GPUs listed has a name, a compute capability and memory',
                            (SELECT count(*) FROM t_gpus)));

SELECT CASE WHEN pg_temp.gpu()
    THEN lives_ok(pg_temp.train('{"device": "cuda"}'), 'device cuda trains (a GPU is visible)')
    ELSE throws_ok(pg_temp.train('{"device": "cuda"}'), '58000', NULL, 'device cuda is 58000 (no GPU is visible)')
END;
SELECT CASE WHEN pg_temp.gpu()
    THEN is(pg_temp.last_device(), 'cuda:0', 'the run on the GPU records device cuda:0')
    ELSE matches(pg_temp.hint_of(pg_temp.train('{"device": "cuda"}')), '"device": "cpu"',
                 'the hint says to train on the CPU (no GPU is visible)')
END;
SELECT CASE WHEN pg_temp.gpu()
    THEN pass('a run was made (a GPU is visible)')
    ELSE is((SELECT count(*) FROM sae.runs), (SELECT n FROM t_runs), 'the failed run left no row in sae.runs (no GPU is visible)')
END;
SELECT throws_ok(pg_temp.train('{"device": "cuda:63"}'), '58000', NULL, 'device cuda:63 is 58000 (no such GPU)');

SELECT lives_ok(pg_temp.train('{"device": "auto"}'), 'device auto trains');
SELECT is(pg_temp.last_device(), CASE WHEN pg_temp.gpu() THEN 'cuda:0' ELSE 'cpu' END,
          'device auto runs on the first GPU, or on the CPU where there is none');

SELECT throws_ok($$SET LOCAL sae.device = 'tpu'$$, '22023', NULL, 'sae.device = tpu is 22023');
SELECT throws_ok($$SET LOCAL sae.device = 'cuda:'$$, '22023', NULL, 'sae.device = cuda: is 22023');

SET LOCAL sae.device = 'auto';
SELECT lives_ok(pg_temp.train('{}'), 'a config without "device" trains on sae.device (auto)');
SELECT is(pg_temp.last_device(), CASE WHEN pg_temp.gpu() THEN 'cuda:0' ELSE 'cpu' END,
          'and runs where sae.device = auto says');
SET LOCAL sae.device = 'cuda:63';
SELECT lives_ok(pg_temp.train('{"device": "cpu", "allow_tf32": true}'),
                'a config''s "device" overrides sae.device (cuda:63 here, which does not exist)');

SELECT * FROM finish();
ROLLBACK;
