-- The sae demo (run by scripts/demo.sh): a small GPT-Neo trained on generated stories
-- (demo/model, made by demo/make_demo_model.py), an SAE trained on its residual stream from
-- SQL, and a look at what the SAE's features respond to. :demo is the folder holding a copy of
-- demo/model and demo/stories.jsonl that the server can read.
\set ON_ERROR_STOP 1
\pset footer off
CREATE EXTENSION sae;
SET sae.progress_every = 200;

\echo
\echo '== the model: 2 blocks, width 128, a 2048-token vocabulary'
SELECT sae_load_model('stories', :'demo' || '/model') AS model_id;
SELECT name, architecture, config->'n_layers' AS layers, config->'d_model' AS d_model,
       config->'d_vocab' AS vocab, config->'n_ctx' AS n_ctx
FROM sae.models;

\echo
\echo '== what it does: a greedy continuation, and the next-token test of the tutorial'
SELECT sae_generate('stories', 'Once upon a time, Lily went to the park with her dog.', 40, 0) AS story;
SELECT rank, token, round(prob::numeric, 3) AS prob
FROM sae_test_prompt('stories', 'Tom lost his ball. Lily found the ball and gave it to', 'Tom', 5)
WHERE answer_index = 0;

\echo
\echo '== the stories as token contexts of 128 (BOS first, BOS between stories)'
SELECT sae_load_dataset_file('stories', :'demo' || '/stories.jsonl', 'jsonl', 'stories', 128) AS dataset_id;

\echo
\echo '== training an SAE on blocks.1.hook_resid_pre: 1024 features, 400k tokens (progress as NOTICEs)'
\x on
SELECT * FROM sae_train('{
    "model_name": "stories",
    "dataset_path": "stories",
    "hook_point": "blocks.1.hook_resid_pre",
    "hook_point_layer": 1,
    "d_in": 128,
    "expansion_factor": 8,
    "context_size": 128,
    "l1_coefficient": 0.015,
    "lr": 0.001,
    "lr_warm_up_steps": 50,
    "train_batch_size": 2048,
    "store_batch_size": 16,
    "n_batches_in_buffer": 16,
    "total_training_tokens": 400000,
    "wandb_log_frequency": 10,
    "eval_every_n_wandb_logs": 10,
    "n_eval_batches": 2,
    "seed": 42
}');
\x off
SELECT max(run_id) AS run_id FROM sae.runs \gset

\echo
\echo '== how well the SAE stands in for the residual stream (SAELens''s evaluation)'
SELECT key AS metric, round(value::numeric, 4) AS value
FROM sae.runs, jsonb_each_text(final_metrics->'eval')
WHERE run_id = :run_id AND key IN ('ce_loss_score', 'ce_loss_without_sae', 'ce_loss_with_sae',
                                   'ce_loss_with_ablation', 'kl_div_score', 'explained_variance', 'l0');

\echo
\echo '== reading the features: 200k dataset tokens through the model and the SAE (sae_analyze),'
\echo '   and each decoder direction against the unembedding (sae_top_logits)'
SELECT n_tokens, n_contexts, dead_features, round(mean_l0::numeric, 1) AS mean_l0
FROM sae_analyze(:run_id, 200000, 10);
SELECT count(*) AS logit_rows FROM sae_top_logits(:run_id, 8);

\echo
\echo '== the features that fire most on a new story: the tokens they fire on there, the tokens'
\echo '   they promote, and the dataset context where each fires most'
\set QUIET on
CREATE TEMP TABLE demo_acts AS
SELECT a.pos, a.token, f, v
FROM sae_feature_activations(:run_id,
       'Ben and Mia went to the beach. Ben found a red shell and gave it to Mia. She said, "Thank you, Ben!" They were very happy.') a,
     unnest(a.feature_ids, a.activations) AS u(f, v)
WHERE a.pos > 0;     -- position 0 is BOS, whose residual stands apart
SELECT t.f AS feature, round(t.total::numeric, 1) AS total, t.fires_on,
       (SELECT replace(string_agg(token, ' ' ORDER BY rank), E'\n', '↵') FROM sae.feature_logits l
        WHERE l.run_id = :run_id AND l.feature_id = t.f AND NOT l.bottom AND l.rank <= 5) AS promotes,
       (SELECT replace(array_to_string(tokens, ''), E'\n', '↵') FROM sae.feature_examples e
        WHERE e.run_id = :run_id AND e.feature_id = t.f AND e.rank = 1) AS top_example
FROM (SELECT f, sum(v) AS total,
             string_agg(format('%s(%s)', token, round(v::numeric, 1)), ' ' ORDER BY v DESC) FILTER (WHERE r <= 4) AS fires_on
      FROM (SELECT *, row_number() OVER (PARTITION BY f ORDER BY v DESC) AS r FROM demo_acts) x
      GROUP BY f) t
ORDER BY t.total DESC
LIMIT 10;

\echo
\echo '== pages: a dashboard of the feature that fires most on the story, and the run report'
SELECT f AS top_feature FROM demo_acts GROUP BY f ORDER BY sum(v) DESC LIMIT 1 \gset
\pset tuples_only on
\pset format unaligned
\o :out/feature.html
SELECT sae_feature_dashboard(:run_id, :top_feature);
\o :out/run.html
SELECT sae_run_report(:run_id);
\o
\pset format aligned
\pset tuples_only off
\set QUIET off
\echo 'wrote' :out/feature.html 'and' :out/run.html
