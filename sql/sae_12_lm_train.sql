-- Training on a language model: token datasets from queries and files, training on a hook
-- (one layer, several layers in one pass, one head), evaluation, and bad datasets.
-- The tiny fixture models (test/fixtures/lm) and dataset files (test/fixtures/datasets) are
-- copied by scripts/test.sh where the server can read them.
\getenv lm SAE_TEST_LM
\getenv ds SAE_TEST_DATASETS
SET sae.progress_every = 0;
-- training prints numbers (b_dec objective, evaluations) whose last digits depend on the CPU's BLAS
SET client_min_messages = warning;
-- tiny models: one thread (OpenMP teams only cost time at these sizes, more so on a busy machine)
SET sae.threads = 1;
-- errors about server files: SQLSTATE and message, with the fixture folder shown as $DS
CREATE FUNCTION pg_temp.error_of(q text, folder text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || replace(SQLERRM, folder, '$DS');
END $$;

SELECT sae_load_model('tiny-gpt2', :'lm' || '/gpt2') > 0 AS loaded;
SELECT sae_load_model('tiny-neo', :'lm' || '/neo') > 0 AS loaded;

-- from a query: text documents packed into contexts (BOS first, BOS between documents)
CREATE TABLE stories AS
SELECT i AS id, format('Once upon a time, %s had a %s. They played all day and were happy.',
                       (ARRAY['Tom', 'Lily', 'Ben', 'Mia'])[1 + i % 4],
                       (ARRAY['ball', 'cat', 'kite'])[1 + i % 3]) AS text
FROM generate_series(1, 300) i;
SELECT sae_create_dataset('stories', 'tiny-gpt2', 'SELECT text FROM stories ORDER BY id', 32) > 0 AS created;
SELECT name, model, context_size, prepend_bos, sequence_separator, n_contexts, n_tokens, n_documents
FROM sae.datasets;
-- every context starts with BOS (0); documents are separated by BOS
SELECT bool_and(tokens[1] = 0) AS bos_first, bool_and(array_length(tokens, 1) = 32) AS full_contexts
FROM sae.dataset_tokens JOIN sae.datasets USING (dataset_id) WHERE name = 'stories';
SELECT sae_to_string('tiny-gpt2', tokens) FROM sae.dataset_tokens WHERE context_id = 0;
-- without BOS and separator, contexts are the plain token stream
SELECT sae_create_dataset('stories-raw', 'tiny-gpt2', 'SELECT text FROM stories ORDER BY id', 16, false, 'none') > 0;
SELECT (SELECT array_agg(t) FROM (SELECT unnest(tokens) t FROM sae.dataset_tokens
         WHERE dataset_id = d.dataset_id AND context_id = 0) x)
       = (sae_to_tokens('tiny-gpt2', (SELECT text FROM stories WHERE id = 1), false))[1:16] AS plain_stream
FROM sae.datasets d WHERE name = 'stories-raw';
-- pretokenized rows (an int[] column) pass through, cut to context_size
SELECT sae_create_dataset('pretok', 'tiny-gpt2',
                          'SELECT ARRAY[0] || array_agg((i * 7 + j) % 1000) FROM generate_series(1, 5) i, generate_series(1, 40) j GROUP BY i ORDER BY i',
                          24) > 0;
SELECT n_contexts, n_documents FROM sae.datasets WHERE name = 'pretok';

-- from files: JSON lines (text and token ids), plain text, uint16 tokens
SELECT sae_load_dataset_file('f-jsonl', :'ds' || '/stories.jsonl', 'jsonl', 'tiny-neo', 64) > 0;
SELECT sae_load_dataset_file('f-text', :'ds' || '/stories.txt', 'text', 'tiny-neo', 64) > 0;
SELECT sae_load_dataset_file('f-ids', :'ds' || '/tokens.jsonl', 'jsonl', 'tiny-neo', 32) > 0;
SELECT sae_load_dataset_file('f-u16', :'ds' || '/tokens.u16', 'uint16', 'tiny-neo', 32) > 0;
SELECT name, context_size, n_contexts, n_documents FROM sae.datasets WHERE name LIKE 'f-%' ORDER BY name;
-- JSON lines and plain text of the same stories give the same contexts
SELECT count(*) AS differing FROM sae.dataset_tokens a
JOIN sae.dataset_tokens b USING (context_id)
WHERE a.dataset_id = (SELECT dataset_id FROM sae.datasets WHERE name = 'f-jsonl')
  AND b.dataset_id = (SELECT dataset_id FROM sae.datasets WHERE name = 'f-text')
  AND a.tokens <> b.tokens;

-- bad datasets: an ERROR with a hint, nothing recorded
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT text FROM stories WHERE false', 32);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT NULL::text', 32);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT 42', 32);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT ARRAY[0, 5, 1000, 7]', 4);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT ARRAY[0, 5]', 4);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT text FROM stories', 65);
SELECT sae_create_dataset('bad', 'tiny-gpt2', 'SELECT text FROM stories', 32, true, 'comma');
SELECT sae_create_dataset('stories', 'tiny-gpt2', 'SELECT text FROM stories', 32);
SELECT sae_create_dataset('bad', 'no-such-model', 'SELECT text FROM stories');
SELECT sae_load_dataset_file('bad', :'ds' || '/stories.jsonl', 'parquet', 'tiny-neo');
SELECT sae_load_dataset_file('bad', 'relative.jsonl', 'jsonl', 'tiny-neo');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 16)', 'bad', :'ds' || '/bad_no_text.jsonl', 'jsonl', 'tiny-neo'), :'ds');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 16)', 'bad', :'ds' || '/bad_json.jsonl', 'jsonl', 'tiny-neo'), :'ds');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 32)', 'bad', :'ds' || '/bad_vocab.jsonl', 'jsonl', 'tiny-neo'), :'ds');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 16)', 'bad', :'ds' || '/bad_short.jsonl', 'jsonl', 'tiny-neo'), :'ds');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 16)', 'bad', :'ds' || '/bad_odd.u16', 'uint16', 'tiny-neo'), :'ds');
SELECT pg_temp.error_of(format('SELECT sae_load_dataset_file(%L, %L, %L, %L, 16)', 'bad', :'ds' || '/missing.jsonl', 'jsonl', 'tiny-neo'), :'ds');
SELECT count(*) FROM sae.datasets WHERE name = 'bad';

-- train on one hook of the model; evaluation every wandb_log_frequency * eval_every_n_wandb_logs steps
SELECT run_id AS one_run, hook_point, d_in, d_sae, n_steps, n_tokens
FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.hook_mlp_out",
                 "hook_point_layer": 0, "d_in": 32, "expansion_factor": 4, "context_size": 32,
                 "train_batch_size": 256, "store_batch_size": 8, "n_batches_in_buffer": 4,
                 "total_training_tokens": 25600, "l1_coefficient": 0.001, "lr": 0.003, "lr_warm_up_steps": 0,
                 "wandb_log_frequency": 5, "eval_every_n_wandb_logs": 4, "n_eval_batches": 1, "verbose": false}') \gset
SELECT source, config->>'model_name' AS model, config->>'dataset_path' AS dataset FROM sae.runs WHERE run_id = :one_run;
SELECT step, ce_loss_score IS NOT NULL AS has_ce, kl_div_score IS NOT NULL AS has_kl
FROM sae.train_log WHERE run_id = :one_run AND ce_loss_score IS NOT NULL ORDER BY step;
SELECT final_metrics->'eval' ?& ARRAY['ce_loss_score', 'kl_div_score', 'l2_ratio', 'explained_variance', 'l0'] AS evaluated,
       (final_metrics->'eval'->>'kl_div_score')::float > 0 AS kl_recovered
FROM sae.runs WHERE run_id = :one_run;
SELECT count(*) AS features FROM sae.features WHERE run_id = :one_run;
-- sae_evaluate runs the evaluation again on the dataset's first contexts
SELECT metric, value IS NOT NULL AS measured FROM sae_evaluate(:one_run, 2);

-- several layers from one forward pass: one run per layer, each with its layer's hook
SELECT hook_point, d_in, n_steps
FROM sae_train('{"model_name": "tiny-neo", "dataset_path": "f-jsonl", "hook_point": "blocks.{layer}.hook_resid_pre",
                 "hook_point_layer": [0, 1], "d_in": 32, "d_sae": 64, "context_size": 64,
                 "train_batch_size": 256, "store_batch_size": 4, "n_batches_in_buffer": 4,
                 "total_training_tokens": 10240, "lr_warm_up_steps": 0, "eval_every_n_wandb_logs": 0,
                 "verbose": false}') ORDER BY hook_point;
SELECT run_name, hook_point, hook_point_layer FROM sae.runs WHERE config->>'dataset_path' = 'f-jsonl' ORDER BY run_id;

-- one head of hook_z (d_in = d_head), with the seed's tanh_sae keys
SELECT hook_point, d_in, n_steps
FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.1.attn.hook_z",
                 "hook_point_layer": 1, "hook_point_head_index": 2, "d_in": 8, "expansion_factor": 4,
                 "context_size": 32, "train_batch_size": 128, "store_batch_size": 4, "n_batches_in_buffer": 4,
                 "total_training_tokens": 2560, "sae_type": "tanh_sae", "noise_scale": 1,
                 "decoder_orthogonal_init": true, "l1_loss_normalization": "l2_squared", "lr_warm_up_steps": 0,
                 "wandb_log_frequency": 5, "eval_every_n_wandb_logs": 2, "n_eval_batches": 1, "verbose": false}');

-- bad configs on a model
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.hook_mlp_out",
                          "d_in": 64, "context_size": 32}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.hook_mlp_out",
                          "d_in": 32, "context_size": 64}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "nope", "hook_point": "blocks.0.hook_mlp_out",
                          "d_in": 32, "context_size": 32}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.7.hook_mlp_out",
                          "d_in": 32, "context_size": 32}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.attn.hook_pattern",
                          "d_in": 32, "context_size": 32}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.hook_mlp_out",
                          "hook_point_head_index": 1, "d_in": 32, "context_size": 32}');
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.0.hook_mlp_out",
                          "hook_point_layer": [0, 1], "d_in": 32, "context_size": 32}');
SELECT * FROM sae_evaluate(999999);
SELECT count(*) FROM sae.runs WHERE status <> 'completed';

-- cancellation mid-run (statement_timeout) leaves nothing behind
SELECT count(*) AS runs_before FROM sae.runs \gset
SET statement_timeout = '300ms';
SELECT * FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "stories", "hook_point": "blocks.1.hook_resid_post",
                          "hook_point_layer": 1, "d_in": 32, "context_size": 32, "store_batch_size": 8,
                          "total_training_tokens": 100000000, "verbose": false}');
RESET statement_timeout;
SELECT count(*) = :runs_before AS nothing_left FROM sae.runs;
