-- The GPU path end to end, on the CUDA kernels emulated on the CPU (test/cuda_emu; scripts/test.sh
-- copies the module to SAE_TEST_CUDA_EMU): sae_device_info() sees it, and training on a table and
-- on a model, evaluation, top logits and feature statistics give on "cuda" what they give on "cpu"
-- (same seed, same data), within float rounding. Model activations reach the SAE through the
-- device-resident queue here, as on a GPU.
\getenv emu SAE_TEST_CUDA_EMU
\getenv lm SAE_TEST_LM
BEGIN;
SELECT plan(13);
SET LOCAL client_min_messages = warning;
SET LOCAL sae.progress_every = 0;
SET LOCAL sae.threads = 1;
SET LOCAL sae.cuda_module = :'emu';

SELECT is((SELECT count(*) FROM sae_device_info()), 1::bigint, 'sae_device_info() lists the emulated GPU');
SELECT is((SELECT name FROM sae_device_info()), 'CUDA emulated on the CPU (test/cuda_emu)', 'by its name');

-- max |a - b| over the weights of two runs
CREATE FUNCTION pg_temp.weight_diff(a bigint, b bigint) RETURNS real LANGUAGE sql AS $$
SELECT max(greatest(abs(x1 - y1), abs(x2 - y2), abs(fa.b_enc - fb.b_enc)))
FROM sae.features fa JOIN sae.features fb USING (feature_id),
     unnest(fa.w_enc, fb.w_enc, fa.w_dec, fb.w_dec) AS u(x1, y1, x2, y2)
WHERE fa.run_id = a AND fb.run_id = b
$$;
CREATE FUNCTION pg_temp.train(config jsonb, device text) RETURNS bigint LANGUAGE sql AS $$
SELECT run_id FROM sae_train(config || jsonb_build_object('device', device))
$$;

-- on a table
CREATE TEMP TABLE t_acts AS SELECT * FROM sae_synthetic_activations(2048, 16, 32, 2, 5);
CREATE TEMP TABLE tbl AS SELECT '{"activations_table": "t_acts", "activations_column": "activation",
    "d_in": 16, "d_sae": 64, "train_batch_size": 128, "total_training_tokens": 3840, "context_size": 64,
    "store_batch_size": 4, "n_batches_in_buffer": 4, "lr_warm_up_steps": 5, "verbose": false,
    "use_ghost_grads": true, "dead_feature_window": 5, "seed": 7}'::jsonb AS config;
CREATE TEMP TABLE runs AS
SELECT pg_temp.train(config, 'cpu') AS cpu, pg_temp.train(config, 'cuda') AS gpu FROM tbl;
SELECT is((SELECT device FROM sae.runs WHERE run_id = (SELECT gpu FROM runs)), 'cuda:0', 'the table run ran on cuda:0');
SELECT cmp_ok(pg_temp.weight_diff(cpu, gpu), '<', 1e-4::real,
              'table run: the weights on cuda match those on cpu (same seed, same rows)') FROM runs;
SELECT cmp_ok((SELECT max(abs(a.mse_loss - b.mse_loss) / a.mse_loss) FROM sae.train_log a JOIN sae.train_log b USING (step)
               WHERE a.run_id = cpu AND b.run_id = gpu), '<', 1e-4::real,
              'table run: the logged MSE losses match step for step') FROM runs;

-- on a model: activations from the model on the device, straight into the SAE's buffer
SELECT ok(sae_load_model('emu-gpt2', :'lm' || '/gpt2') > 0, 'the tiny GPT-2 loads');
SELECT ok(sae_create_dataset('emu-ds', 'emu-gpt2',
          $$SELECT 'story number ' || i || ': the cat sat on the mat and looked at the dog' FROM generate_series(1, 300) i$$, 32) > 0,
          'a dataset of its tokens');
CREATE TEMP TABLE lmcfg AS SELECT '{"model_name": "emu-gpt2", "dataset_path": "emu-ds",
    "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "d_in": 32, "expansion_factor": 4,
    "context_size": 32, "train_batch_size": 256, "store_batch_size": 8, "n_batches_in_buffer": 4,
    "total_training_tokens": 2560, "lr_warm_up_steps": 2, "eval_every_n_wandb_logs": 0, "verbose": false,
    "seed": 3}'::jsonb AS config;
CREATE TEMP TABLE lmruns AS
SELECT pg_temp.train(config, 'cpu') AS cpu, pg_temp.train(config, 'cuda') AS gpu FROM lmcfg;
SELECT cmp_ok(pg_temp.weight_diff(cpu, gpu), '<', 1e-4::real,
              'model run: the weights on cuda match those on cpu') FROM lmruns;

-- the model passes of sae_evaluate, sae_top_logits and sae_analyze on sae.device = cuda
SET LOCAL sae.device = 'cuda';
CREATE TEMP TABLE ev_gpu AS SELECT metric, value FROM sae_evaluate((SELECT gpu FROM lmruns), 2);
CREATE TEMP TABLE top_gpu AS SELECT * FROM sae_top_logits((SELECT gpu FROM lmruns), 3);
SELECT count(*) FROM sae_analyze((SELECT gpu FROM lmruns), 512, 3) \g /dev/null
CREATE TEMP TABLE an_gpu AS SELECT * FROM sae.feature_stats WHERE run_id = (SELECT gpu FROM lmruns);
SET LOCAL sae.device = 'cpu';
CREATE TEMP TABLE ev_cpu AS SELECT metric, value FROM sae_evaluate((SELECT gpu FROM lmruns), 2);
CREATE TEMP TABLE top_cpu AS SELECT * FROM sae_top_logits((SELECT gpu FROM lmruns), 3);
SELECT count(*) FROM sae_analyze((SELECT gpu FROM lmruns), 512, 3) \g /dev/null
CREATE TEMP TABLE an_cpu AS SELECT * FROM sae.feature_stats WHERE run_id = (SELECT gpu FROM lmruns);
SELECT cmp_ok((SELECT max(abs(g.value - c.value) / greatest(abs(c.value), 1e-3)) FROM ev_gpu g JOIN ev_cpu c USING (metric)),
              '<', 1e-4::float8, 'sae_evaluate gives the same numbers on cuda and cpu');
SELECT is((SELECT count(*) FROM ev_gpu), (SELECT count(*) FROM ev_cpu), 'and the same metrics');
SELECT cmp_ok((SELECT max(abs(g.logit - c.logit)) FROM top_gpu g JOIN top_cpu c USING (feature_id, rank, bottom)),
              '<', 1e-4::real, 'sae_top_logits gives the same logits on cuda and cpu');
SELECT is((SELECT count(*) FROM top_gpu), (SELECT count(*) FROM top_cpu), 'and the same number of rows');
SELECT is((SELECT count(*) FROM an_gpu g JOIN an_cpu c USING (feature_id)
           WHERE abs(g.max_activation - c.max_activation) > 1e-4 OR abs(g.firing_rate - c.firing_rate) > 1e-3
              OR (g.max_activation IS NULL) <> (c.max_activation IS NULL)),
          0::bigint, 'sae_analyze gives the same firing rates and maxima on cuda and cpu');

SELECT * FROM finish();
ROLLBACK;
