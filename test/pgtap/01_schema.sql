-- The shape of the sae extension: schema, tables, key columns, constraints, functions and
-- their signatures, and the pg_dump registration of the tables.
BEGIN;
SELECT plan(111);

SELECT has_extension('sae', 'extension sae is installed');
SELECT has_schema('sae', 'schema sae exists');
SELECT tables_are('sae', ARRAY['runs', 'train_log', 'features', 'tensors', 'models', 'datasets', 'dataset_tokens',
                              'feature_logits', 'feature_stats', 'feature_examples'],
                  'schema sae has exactly the ten tables');
SELECT sequences_are('sae', ARRAY['runs_run_id_seq', 'models_model_id_seq', 'datasets_dataset_id_seq'], 'schema sae has the run_id, model_id and dataset_id sequences');

-- sae.runs
SELECT has_table('sae', 'runs', 'sae.runs exists');
SELECT col_is_pk('sae', 'runs', 'run_id', 'sae.runs primary key is run_id');
SELECT col_type_is('sae', 'runs', 'run_id', 'bigint', 'sae.runs.run_id is bigint');
SELECT col_type_is('sae', 'runs', 'run_name', 'text', 'sae.runs.run_name is text');
SELECT col_type_is('sae', 'runs', 'status', 'text', 'sae.runs.status is text');
SELECT col_default_is('sae', 'runs', 'status', 'running', 'sae.runs.status defaults to running');
SELECT col_type_is('sae', 'runs', 'config', 'jsonb', 'sae.runs.config is jsonb');
SELECT col_not_null('sae', 'runs', 'config', 'sae.runs.config is NOT NULL');
SELECT col_type_is('sae', 'runs', 'hook_point', 'text', 'sae.runs.hook_point is text');
SELECT col_type_is('sae', 'runs', 'hook_point_layer', 'integer', 'sae.runs.hook_point_layer is integer');
SELECT col_type_is('sae', 'runs', 'd_in', 'integer', 'sae.runs.d_in is integer');
SELECT col_type_is('sae', 'runs', 'd_sae', 'integer', 'sae.runs.d_sae is integer');
SELECT col_type_is('sae', 'runs', 'architecture', 'text', 'sae.runs.architecture is text');
SELECT col_type_is('sae', 'runs', 'device', 'text', 'sae.runs.device is text');
SELECT col_type_is('sae', 'runs', 'source', 'text', 'sae.runs.source is text');
SELECT col_type_is('sae', 'runs', 'n_steps', 'bigint', 'sae.runs.n_steps is bigint');
SELECT col_type_is('sae', 'runs', 'n_tokens', 'bigint', 'sae.runs.n_tokens is bigint');
SELECT col_type_is('sae', 'runs', 'final_metrics', 'jsonb', 'sae.runs.final_metrics is jsonb');
SELECT col_type_is('sae', 'runs', 'started_at', 'timestamp with time zone', 'sae.runs.started_at is timestamptz');
SELECT col_type_is('sae', 'runs', 'finished_at', 'timestamp with time zone', 'sae.runs.finished_at is timestamptz');
SELECT has_check('sae', 'runs', 'sae.runs has a CHECK constraint (status)');
SELECT throws_ok($$INSERT INTO sae.runs (run_name, status, config, hook_point, hook_point_layer, d_in, d_sae,
                                         architecture, device, source)
                   VALUES ('x', 'exploded', '{}', 'h', 0, 1, 1, 'unit_norm_sae', 'cpu', 's')$$,
                 '23514', NULL, 'sae.runs.status accepts only running, completed, failed, cancelled');

-- sae.train_log
SELECT has_table('sae', 'train_log', 'sae.train_log exists');
SELECT col_is_pk('sae', 'train_log', ARRAY['run_id', 'step'], 'sae.train_log primary key is (run_id, step)');
SELECT fk_ok('sae', 'train_log', 'run_id', 'sae', 'runs', 'run_id', 'sae.train_log.run_id references sae.runs');
SELECT col_type_is('sae', 'train_log', 'step', 'bigint', 'sae.train_log.step is bigint');
SELECT col_type_is('sae', 'train_log', 'n_tokens', 'bigint', 'sae.train_log.n_tokens is bigint');
SELECT col_type_is('sae', 'train_log', 'lr', 'double precision', 'sae.train_log.lr is double precision');
SELECT col_type_is('sae', 'train_log', 'mse_loss', 'real', 'sae.train_log.mse_loss is real');
SELECT col_type_is('sae', 'train_log', 'overall_loss', 'real', 'sae.train_log.overall_loss is real');
SELECT col_type_is('sae', 'train_log', 'explained_variance', 'real', 'sae.train_log.explained_variance is real');
SELECT col_type_is('sae', 'train_log', 'dead_features', 'integer', 'sae.train_log.dead_features is integer');
SELECT col_type_is('sae', 'train_log', 'mean_log10_feature_sparsity', 'real', 'sae.train_log.mean_log10_feature_sparsity is real');
SELECT col_type_is('sae', 'train_log', 'below_1e_5', 'integer', 'sae.train_log.below_1e_5 is integer');
SELECT col_type_is('sae', 'train_log', 'below_1e_6', 'integer', 'sae.train_log.below_1e_6 is integer');

-- sae.features
SELECT has_table('sae', 'features', 'sae.features exists');
SELECT col_is_pk('sae', 'features', ARRAY['run_id', 'feature_id'], 'sae.features primary key is (run_id, feature_id)');
SELECT fk_ok('sae', 'features', 'run_id', 'sae', 'runs', 'run_id', 'sae.features.run_id references sae.runs');
SELECT col_type_is('sae', 'features', 'feature_id', 'integer', 'sae.features.feature_id is integer');
SELECT col_type_is('sae', 'features', 'w_enc', 'real[]', 'sae.features.w_enc is real[]');
SELECT col_type_is('sae', 'features', 'w_dec', 'real[]', 'sae.features.w_dec is real[]');
SELECT col_type_is('sae', 'features', 'b_enc', 'real', 'sae.features.b_enc is real');
SELECT col_type_is('sae', 'features', 'firing_rate', 'real', 'sae.features.firing_rate is real');
SELECT col_type_is('sae', 'features', 'log10_sparsity', 'real', 'sae.features.log10_sparsity is real');
SELECT col_not_null('sae', 'features', 'w_dec', 'sae.features.w_dec is NOT NULL');

-- sae.tensors
SELECT has_table('sae', 'tensors', 'sae.tensors exists');
SELECT col_is_pk('sae', 'tensors', ARRAY['run_id', 'name', 'chunk'], 'sae.tensors primary key is (run_id, name, chunk)');
SELECT fk_ok('sae', 'tensors', 'run_id', 'sae', 'runs', 'run_id', 'sae.tensors.run_id references sae.runs');
SELECT col_type_is('sae', 'tensors', 'shape', 'integer[]', 'sae.tensors.shape is integer[]');
SELECT col_type_is('sae', 'tensors', 'data', 'real[]', 'sae.tensors.data is real[]');

-- deleting a run cascades
SELECT is((SELECT count(*)::int FROM pg_constraint
           WHERE connamespace = 'sae'::regnamespace AND contype = 'f' AND confdeltype = 'c'), 7,
          'the foreign keys (six to sae.runs, one to sae.datasets) are ON DELETE CASCADE');

-- registered for pg_dump: the four tables and the sequence
SELECT set_eq($$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'sae'$$,
              ARRAY['sae.runs', 'sae.runs_run_id_seq', 'sae.train_log', 'sae.features', 'sae.tensors',
                    'sae.models', 'sae.models_model_id_seq', 'sae.datasets', 'sae.datasets_dataset_id_seq',
                    'sae.dataset_tokens', 'sae.feature_logits', 'sae.feature_stats', 'sae.feature_examples'],
              'pg_extension.extconfig holds every sae table and sequence');
SELECT is((SELECT array_length(extcondition, 1) FROM pg_extension WHERE extname = 'sae'), 13,
          'each config table is dumped whole (an empty condition each)');
SELECT ok((SELECT bool_and(c = '') FROM pg_extension, unnest(extcondition) c WHERE extname = 'sae'),
          'no config table has a dump filter');

-- functions: signatures, results, volatility, strictness
SELECT has_function('public', 'sae_train', ARRAY['jsonb'], 'sae_train(jsonb) exists');
SELECT function_returns('public', 'sae_train', ARRAY['jsonb'], 'setof record', 'sae_train returns a set of rows');
SELECT volatility_is('public', 'sae_train', ARRAY['jsonb'], 'volatile', 'sae_train is VOLATILE');
SELECT is_strict('public', 'sae_train', ARRAY['jsonb'], 'sae_train is STRICT');
SELECT is((SELECT array_agg(a ORDER BY n)::text FROM pg_proc p,
                  unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY AS u(a, m, n)
           WHERE p.oid = 'sae_train(jsonb)'::regprocedure AND m = 't'),
          '{run_id,run_name,hook_point,d_in,d_sae,n_steps,n_tokens,l0,explained_variance,mse,l1_loss,dead_features,tokens_per_second,seconds}',
          'sae_train returns the documented columns, in order');

SELECT has_function('public', 'sae_encode', ARRAY['bigint', 'real[]'], 'sae_encode(bigint, real[]) exists');
SELECT function_returns('public', 'sae_encode', ARRAY['bigint', 'real[]'], 'real[]', 'sae_encode returns real[]');
SELECT volatility_is('public', 'sae_encode', ARRAY['bigint', 'real[]'], 'stable', 'sae_encode is STABLE');
SELECT is_strict('public', 'sae_encode', ARRAY['bigint', 'real[]'], 'sae_encode is STRICT');
SELECT is((SELECT proparallel::text FROM pg_proc WHERE oid = 'sae_encode(bigint, real[])'::regprocedure), 's',
          'sae_encode is PARALLEL SAFE');

SELECT has_function('public', 'sae_reconstruct', ARRAY['bigint', 'real[]'], 'sae_reconstruct(bigint, real[]) exists');
SELECT function_returns('public', 'sae_reconstruct', ARRAY['bigint', 'real[]'], 'real[]', 'sae_reconstruct returns real[]');
SELECT volatility_is('public', 'sae_reconstruct', ARRAY['bigint', 'real[]'], 'stable', 'sae_reconstruct is STABLE');

SELECT has_function('public', 'sae_synthetic_dictionary', ARRAY['integer', 'integer', 'bigint'],
                    'sae_synthetic_dictionary(int, int, bigint) exists');
SELECT function_returns('public', 'sae_synthetic_dictionary', ARRAY['integer', 'integer', 'bigint'], 'setof record',
                        'sae_synthetic_dictionary returns a set of rows');
SELECT volatility_is('public', 'sae_synthetic_dictionary', ARRAY['integer', 'integer', 'bigint'], 'immutable',
                     'sae_synthetic_dictionary is IMMUTABLE');
SELECT has_function('public', 'sae_synthetic_activations', ARRAY['bigint', 'integer', 'integer', 'real', 'bigint'],
                    'sae_synthetic_activations(bigint, int, int, real, bigint) exists');
SELECT function_returns('public', 'sae_synthetic_activations', ARRAY['bigint', 'integer', 'integer', 'real', 'bigint'],
                        'setof record', 'sae_synthetic_activations returns a set of rows');
SELECT volatility_is('public', 'sae_synthetic_activations', ARRAY['bigint', 'integer', 'integer', 'real', 'bigint'],
                     'immutable', 'sae_synthetic_activations is IMMUTABLE');
SELECT is((SELECT pronargdefaults::int FROM pg_proc
           WHERE oid = 'sae_synthetic_activations(bigint, int, int, real, bigint)'::regprocedure), 2,
          'sae_synthetic_activations has defaults for active_per_row and seed');
SELECT is((SELECT count(*)::int FROM sae_synthetic_activations(10, 8, 16)), 10,
          'sae_synthetic_activations(10, 8, 16) gives 10 rows with the defaults');

-- language models
SELECT col_is_pk('sae', 'models', 'model_id', 'sae.models primary key is model_id');
SELECT col_is_unique('sae', 'models', 'name', 'sae.models.name is unique');
SELECT col_type_is('sae', 'models', 'config', 'jsonb', 'sae.models.config is jsonb');
SELECT has_function('public', 'sae_load_model', ARRAY['text', 'text', 'jsonb'], 'sae_load_model(text, text, jsonb) exists');
SELECT function_returns('public', 'sae_load_model', ARRAY['text', 'text', 'jsonb'], 'bigint', 'sae_load_model returns the model_id');
SELECT has_function('public', 'sae_generate', ARRAY['text', 'text', 'integer', 'real', 'bigint', 'boolean'],
                    'sae_generate(text, text, int, real, bigint, boolean) exists');
SELECT isnt_strict('public', 'sae_generate', ARRAY['text', 'text', 'integer', 'real', 'bigint', 'boolean'],
                   'sae_generate is not STRICT (seed may be NULL)');
SELECT has_function('public', 'sae_run_with_cache', ARRAY['text', 'text', 'text', 'boolean'],
                    'sae_run_with_cache(text, text, text, boolean) exists');

-- token datasets and evaluation
SELECT col_is_pk('sae', 'dataset_tokens', ARRAY['dataset_id', 'context_id'], 'sae.dataset_tokens primary key is (dataset_id, context_id)');
SELECT has_function('public', 'sae_create_dataset', ARRAY['text', 'text', 'text', 'integer', 'boolean', 'text'],
                    'sae_create_dataset(text, text, text, int, boolean, text) exists');
SELECT has_function('public', 'sae_load_dataset_file', ARRAY['text', 'text', 'text', 'text', 'integer', 'boolean', 'text'],
                    'sae_load_dataset_file(text, text, text, text, int, boolean, text) exists');
SELECT has_function('public', 'sae_evaluate', ARRAY['bigint', 'integer', 'text'], 'sae_evaluate(bigint, int, text) exists');

-- feature analysis and SAELens folders
SELECT col_is_pk('sae', 'feature_logits', ARRAY['run_id', 'feature_id', 'bottom', 'rank'],
                 'sae.feature_logits primary key is (run_id, feature_id, bottom, rank)');
SELECT col_is_pk('sae', 'feature_stats', ARRAY['run_id', 'feature_id'], 'sae.feature_stats primary key is (run_id, feature_id)');
SELECT col_is_pk('sae', 'feature_examples', ARRAY['run_id', 'feature_id', 'rank'],
                 'sae.feature_examples primary key is (run_id, feature_id, rank)');
SELECT has_function('public', 'sae_top_logits', ARRAY['bigint', 'integer'], 'sae_top_logits(bigint, int) exists');
SELECT has_function('public', 'sae_analyze', ARRAY['bigint', 'bigint', 'integer', 'text'], 'sae_analyze(bigint, bigint, int, text) exists');
SELECT has_function('public', 'sae_feature_activations', ARRAY['bigint', 'text'], 'sae_feature_activations(bigint, text) exists');
SELECT has_function('public', 'sae_feature_density_histogram', ARRAY['bigint', 'integer'], 'sae_feature_density_histogram(bigint, int) exists');
SELECT has_function('public', 'sae_feature_dashboard', ARRAY['bigint', 'integer'], 'sae_feature_dashboard(bigint, int) exists');
SELECT has_function('public', 'sae_run_report', ARRAY['bigint'], 'sae_run_report(bigint) exists');
SELECT has_function('public', 'sae_export', ARRAY['bigint', 'text'], 'sae_export(bigint, text) exists');
SELECT has_function('public', 'sae_import', ARRAY['text', 'text'], 'sae_import(text, text) exists');

-- the settings, once the library is loaded
LOAD 'sae';
SELECT is(current_setting('sae.max_memory'), '4GB', 'sae.max_memory defaults to 4GB');
SELECT is(current_setting('sae.progress_every'), '100', 'sae.progress_every defaults to 100');
SELECT is(current_setting('sae.threads'), '0', 'sae.threads defaults to 0 (all cores)');
SELECT is(current_setting('sae.allow_download'), 'off', 'sae.allow_download defaults to off');
SELECT is((SELECT context FROM pg_settings WHERE name = 'sae.allow_download'), 'superuser',
          'only a superuser can turn on sae.allow_download');
SELECT is((SELECT array_agg(context ORDER BY name) FROM pg_settings WHERE name IN ('sae.hub_cache', 'sae.hub_endpoint')),
          ARRAY['superuser', 'superuser'], 'only a superuser can point the server at another hub cache or endpoint');
SELECT is(current_setting('sae.hub_cache'), '', 'sae.hub_cache defaults to empty (the server''s HF_HUB_CACHE or ~/.cache/huggingface/hub)');
SELECT throws_ok($$SET sae.max_memory = '100kB'$$, '22023', NULL, 'sae.max_memory has a 1MB minimum');
SELECT throws_ok($$SET sae.nonexistent = 1$$, '42602', NULL, 'the sae. prefix is reserved');

SELECT * FROM finish();
ROLLBACK;
