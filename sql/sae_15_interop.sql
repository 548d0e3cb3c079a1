-- SAELens folders: sae_import of SAELens-written fixtures (v6 and the v1.x format) gives
-- SAELens's activations, sae_export writes what sae_import reads back exactly, and bad folders,
-- paths and permissions are errors that leave nothing behind.  The fixtures
-- (test/fixtures/saelens, made by test/golden/make_saelens_fixtures.py) and a directory the
-- server may write (SAE_TEST_EXPORT) come from scripts/test.sh.
\getenv lm SAE_TEST_LM
\getenv sl SAE_TEST_SAELENS
\getenv out SAE_TEST_EXPORT
SET client_min_messages = warning;
SET sae.threads = 1;
CREATE FUNCTION pg_temp.error_of(q text, folder text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(replace(SQLERRM, folder, '$DIR'), 'run \d+', 'run N');
END $$;
-- a text file of rows of floats as real[]
CREATE FUNCTION pg_temp.rows_of(path text) RETURNS TABLE (i int, v real[]) LANGUAGE sql AS $$
    SELECT (n - 1)::int, string_to_array(line, ' ')::real[]
    FROM unnest(string_to_array(rtrim(pg_read_file(path), E'\n'), E'\n')) WITH ORDINALITY AS t(line, n)
$$;
-- whether a run encodes the fixture inputs as SAELens did
CREATE FUNCTION pg_temp.matches_saelens(run bigint, expected text) RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and((SELECT bool_and(abs(a - b) <= 1e-5 * (1 + abs(b)))
                     FROM unnest(sae_encode(run, x.v), w.v) AS p(a, b)))
    FROM pg_temp.rows_of(current_setting('sae_test.sl') || '/inputs.txt') x
    JOIN pg_temp.rows_of(expected) w USING (i)
$$;
SELECT set_config('sae_test.sl', :'sl', false) IS NOT NULL AS set;

SELECT sae_load_model('tiny-gpt2', :'lm' || '/gpt2') > 0 AS loaded;

-- SAELens 6's own folder
SELECT sae_import(:'sl' || '/v6') AS v6 \gset
SELECT run_name, status, hook_point, hook_point_layer, d_in, d_sae, architecture, source = 'saelens:' || :'sl' || '/v6' AS source,
       config->>'model_name' AS model, config->>'dataset_path' AS dataset, config->>'context_size' AS context,
       final_metrics->>'saelens_format' AS format
FROM sae.runs WHERE run_id = :v6;
SELECT pg_temp.matches_saelens(:v6, :'sl' || '/v6.txt') AS v6_encodes_as_saelens;
SELECT count(firing_rate) AS rates, bool_and(firing_rate BETWEEN 0 AND 0.2) AS from_sparsity
FROM sae.features WHERE run_id = :v6;
-- the v1.x format, bound to a model by name
SELECT sae_import(:'sl' || '/v1', 'tiny-gpt2') AS v1 \gset
SELECT run_name, hook_point, d_in, d_sae, config->>'model_name' AS model, final_metrics->>'saelens_format' AS format
FROM sae.runs WHERE run_id = :v1;
SELECT pg_temp.matches_saelens(:v1, :'sl' || '/v1.txt') AS v1_encodes_as_saelens;
-- imported SAEs work with the analysis functions
SELECT count(*) AS logits FROM sae_top_logits(:v6, 3);
SELECT count(*) AS positions FROM sae_feature_activations(:v6, 'Once upon a time');

-- and with sae_evaluate, over a dataset of the model (cfg.json's dataset is not one here)
CREATE TABLE io_stories AS
SELECT i AS id, format('Once upon a time, %s had a %s.', (ARRAY['Tom', 'Lily'])[1 + i % 2],
                       (ARRAY['ball', 'cat', 'kite'])[1 + i % 3]) AS text
FROM generate_series(1, 100) i;
SELECT sae_create_dataset('io-stories', 'tiny-gpt2', 'SELECT text FROM io_stories ORDER BY id', 32) > 0 AS created;
SELECT count(*) AS metrics, bool_and(value IS NOT NULL) AS measured FROM sae_evaluate(:v1, 1, 'io-stories');
SELECT final_metrics->'eval' ? 'ce_loss_score' AS stored FROM sae.runs WHERE run_id = :v1;

-- export -> import is exact
SELECT sae_export(:v6, :'out' || '/v6-copy') = :'out' || '/v6-copy' AS exported;
SELECT sae_import(:'out' || '/v6-copy') AS back \gset
SELECT count(*) AS features,
       bool_and(a.w_enc = b.w_enc AND a.w_dec = b.w_dec AND a.b_enc = b.b_enc
                AND a.log10_sparsity = b.log10_sparsity) AS exact
FROM sae.features a JOIN sae.features b USING (feature_id) WHERE a.run_id = :v6 AND b.run_id = :back;
SELECT (SELECT data FROM sae.tensors WHERE run_id = :v6 AND name = 'b_dec')
     = (SELECT data FROM sae.tensors WHERE run_id = :back AND name = 'b_dec') AS b_dec_exact;
SELECT pg_temp.matches_saelens(:back, :'sl' || '/v6.txt') AS copy_encodes_as_saelens;
-- a run trained here, out and back in
SELECT run_id AS trained FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "io-stories",
    "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "d_in": 32, "d_sae": 64,
    "context_size": 32, "train_batch_size": 128, "store_batch_size": 4, "n_batches_in_buffer": 4,
    "total_training_tokens": 1280, "lr_warm_up_steps": 0, "eval_every_n_wandb_logs": 0}') \gset
SELECT sae_export(:trained, :'out' || '/trained') IS NOT NULL AS exported;
SELECT sae_import(:'out' || '/trained') AS trained_back \gset
SELECT hook_point, hook_point_layer, config->>'dataset_path' AS dataset, config->>'context_size' AS context
FROM sae.runs WHERE run_id = :trained_back;
SELECT bool_and(a.w_enc = b.w_enc AND a.w_dec = b.w_dec AND a.b_enc = b.b_enc) AS trained_exact
FROM sae.features a JOIN sae.features b USING (feature_id) WHERE a.run_id = :trained AND b.run_id = :trained_back;
SELECT sae_encode(:trained, x.v) = sae_encode(:trained_back, x.v) AS same_encoding
FROM pg_temp.rows_of(:'sl' || '/inputs.txt') x WHERE i = 0;

-- bad exports: nothing written
SELECT count(*) AS runs_before FROM sae.runs \gset
SELECT pg_temp.error_of(format('SELECT sae_export(%s, %L)', :v6, :'out' || '/v6-copy'), :'out');
SELECT pg_temp.error_of(format('SELECT sae_export(%s, %L)', :v6, 'relative/dir'), :'out');
SELECT pg_temp.error_of(format('SELECT sae_export(%s, %L)', :v6, :'out' || '/no/such/parent'), :'out');
SELECT pg_temp.error_of(format('SELECT sae_export(%s, %L)', 424242, :'out' || '/x'), :'out');
CREATE TABLE io_act8 AS SELECT activation FROM sae_synthetic_activations(640, 8, 16);
SELECT run_id AS tanh_run FROM sae_train('{"activations_table": "io_act8", "activations_column": "activation", "d_in": 8, "d_sae": 16,
    "train_batch_size": 64, "total_training_tokens": 640, "lr_warm_up_steps": 0, "sae_type": "tanh_sae", "noise_scale": 1}') \gset
SELECT pg_temp.error_of(format('SELECT sae_export(%s, %L)', :tanh_run, :'out' || '/tanh'), :'out');
SELECT (pg_stat_file(:'out' || '/tanh', true)).size IS NULL AS tanh_not_written;
-- bad imports: nothing stored
SELECT pg_temp.error_of(format('SELECT sae_import(%L)', :'sl' || '/' || f), :'sl') AS error, f AS folder
FROM unnest(ARRAY['bad_missing', 'bad_arch', 'bad_shape', 'bad_corrupt', 'bad_scaling', 'no_such_folder']) f;
SELECT pg_temp.error_of(format('SELECT sae_import(%L)', 'relative/v6'), :'sl');
SELECT pg_temp.error_of(format('SELECT sae_import(%L, %L)', :'sl' || '/v6', 'no-such-model'), :'sl');
SELECT pg_temp.error_of('SELECT sae_import(NULL)', :'sl');
SELECT count(*) - :runs_before AS new_runs FROM sae.runs;

-- permissions: reading and writing server files need pg_read_server_files / pg_write_server_files
CREATE ROLE sae_interop_user;
SET ROLE sae_interop_user;
SELECT sae_import('/nonexistent/v6');
SELECT sae_export(1, '/nonexistent/out');
RESET ROLE;
DROP ROLE sae_interop_user;
