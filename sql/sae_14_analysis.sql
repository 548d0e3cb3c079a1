-- Feature analysis: sae_top_logits, sae_feature_activations, sae_analyze and the density
-- histogram, on an SAE trained on the tiny GPT-2 fixture (test/fixtures/lm, copied by
-- scripts/test.sh where the server can read it).
\getenv lm SAE_TEST_LM
SET sae.progress_every = 0;
SET client_min_messages = warning;
SET sae.threads = 1;
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'run \d+', 'run N');
END $$;

SELECT sae_load_model('tiny-gpt2', :'lm' || '/gpt2') > 0 AS loaded;
CREATE TABLE an_stories AS
SELECT i AS id, format('Once upon a time, %s had a %s. They played all day and were happy.',
                       (ARRAY['Tom', 'Lily', 'Ben', 'Mia'])[1 + i % 4],
                       (ARRAY['ball', 'cat', 'kite'])[1 + i % 3]) AS text
FROM generate_series(1, 200) i;
SELECT sae_create_dataset('an-stories', 'tiny-gpt2', 'SELECT text FROM an_stories ORDER BY id', 32) > 0 AS created;
SELECT run_id AS run FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "an-stories",
    "hook_point": "blocks.0.hook_resid_post", "hook_point_layer": 0, "d_in": 32, "d_sae": 64,
    "context_size": 32, "train_batch_size": 128, "store_batch_size": 4, "n_batches_in_buffer": 4,
    "total_training_tokens": 6400, "l1_coefficient": 0.0003, "lr": 0.003, "lr_warm_up_steps": 0,
    "eval_every_n_wandb_logs": 0, "seed": 1}') \gset

-- top logits: k per feature and side, ranked, stored as returned
CREATE TEMP TABLE tl AS SELECT * FROM sae_top_logits(:run, 5);
SELECT count(*) AS rows, count(DISTINCT feature_id) AS features, bool_and(rank BETWEEN 1 AND 5) AS ranks
FROM tl;
SELECT (SELECT count(*) FROM sae.feature_logits WHERE run_id = :run) AS stored,
       (SELECT count(*) FROM tl JOIN sae.feature_logits l
          ON l.run_id = :run AND (l.feature_id, l.bottom, l.rank, l.token_id, l.token, l.logit)
             = (tl.feature_id, tl.bottom, tl.rank, tl.token_id, tl.token, tl.logit)) AS identical;
-- top ranks descend, bottom ranks ascend, and every top logit is above every bottom one
SELECT bool_and(a.logit >= b.logit) AS top_descends
FROM tl a JOIN tl b USING (feature_id, bottom) WHERE NOT a.bottom AND b.rank = a.rank + 1;
SELECT bool_and(a.logit <= b.logit) AS bottom_ascends
FROM tl a JOIN tl b USING (feature_id, bottom) WHERE a.bottom AND b.rank = a.rank + 1;
SELECT bool_and(t.logit > b.logit) AS separated
FROM tl t JOIN tl b USING (feature_id) WHERE NOT t.bottom AND b.bottom;
-- the token text is the token's
SELECT bool_and(token = sae_to_string('tiny-gpt2', ARRAY[token_id])) AS token_texts FROM tl;
-- a second call replaces the stored rows
SELECT count(*) FROM sae_top_logits(:run, 2);
SELECT count(*) AS stored_now FROM sae.feature_logits WHERE run_id = :run;
-- k above the vocabulary ranks every token (the tiny model has 1000)
SET client_min_messages = notice;
SELECT count(*) AS all_ranked, count(DISTINCT token_id) AS distinct_tokens
FROM sae_top_logits(:run, 1500) WHERE feature_id = 0 AND NOT bottom;
SET client_min_messages = warning;
SELECT pg_temp.error_of('SELECT sae_top_logits(' || :run || ', 0)');
SELECT pg_temp.error_of('SELECT sae_top_logits(424242)');

-- what fires on a text: the same as encoding sae_run_with_cache's activations
CREATE TEMP TABLE fa AS
SELECT * FROM sae_feature_activations(:run, 'Once upon a time, Lily had a kite.');
SELECT count(*) AS positions, bool_and(cardinality(feature_ids) = cardinality(activations)) AS paired,
       bool_and(cardinality(feature_ids) > 0) AS something_fires
FROM fa;
SELECT bool_and(ok) AS matches_sae_encode FROM (
    SELECT fa.pos, coalesce((
        SELECT bool_and(abs(e.v - coalesce(a.v, 0)) <= 1e-5 * (1 + abs(e.v)))
               AND count(*) FILTER (WHERE e.v > 0) = cardinality(fa.feature_ids)
        FROM unnest(sae_encode(:run, c.activation)) WITH ORDINALITY e(v, f)
        LEFT JOIN unnest(fa.feature_ids, fa.activations) a(f, v) ON a.f = e.f - 1), false) AS ok
    FROM fa JOIN sae_run_with_cache('tiny-gpt2', 'Once upon a time, Lily had a kite.',
                                    'blocks.0.hook_resid_post') c USING (pos)) x;
SELECT bool_and(activations = (SELECT array_agg(v ORDER BY v DESC) FROM unnest(activations) v)) AS sorted
FROM fa;

-- the analysis over the dataset
SELECT n_tokens, n_contexts, dead_features <= 64 AS dead_counted, mean_l0 > 0 AS fires, seconds >= 0 AS timed
FROM sae_analyze(:run, 2000, 3);
SELECT count(*) AS stats, bool_and(firing_rate BETWEEN 0 AND 1) AS rates,
       bool_and(n_tokens = (SELECT count(*) FROM sae.dataset_tokens d JOIN sae.datasets USING (dataset_id),
                             unnest(d.tokens) t WHERE name = 'an-stories' AND context_id < 63 AND t <> 0)) AS bos_left_out,
       bool_and(mean_activation IS NULL OR (mean_activation > 0 AND mean_activation <= max_activation)) AS means,
       bool_and(max_activation IS NULL OR (histogram_max > max_activation AND histogram_max <= 2 * max_activation)) AS hist_range,
       bool_and((SELECT sum(c) FROM unnest(histogram) c) = round(firing_rate::float8 * n_tokens)) AS hist_counts
FROM sae.feature_stats WHERE run_id = :run;
-- examples: ranked by activation, the top token's activation in its window, windows taken
-- from the dataset's contexts, and the most active example is the feature's max
SELECT bool_and(activations[position - window_start + 1] = activation) AS top_in_window,
       bool_and(cardinality(token_ids) = cardinality(activations) AND cardinality(tokens) = cardinality(token_ids)) AS windows,
       bool_and(token_ids = (SELECT d.tokens[e.window_start + 1 : e.window_start + cardinality(e.token_ids)]
                             FROM sae.dataset_tokens d JOIN sae.datasets USING (dataset_id)
                             WHERE name = 'an-stories' AND d.context_id = e.context_id)) AS from_dataset,
       bool_and(token_ids[position - window_start + 1] <> 0) AS no_bos_top
FROM sae.feature_examples e WHERE run_id = :run;
SELECT bool_and(a.activation >= b.activation) AS ranked
FROM sae.feature_examples a JOIN sae.feature_examples b USING (run_id, feature_id)
WHERE a.run_id = :run AND b.rank = a.rank + 1;
SELECT bool_and(e.activation = s.max_activation) AS best_is_max
FROM sae.feature_examples e JOIN sae.feature_stats s USING (run_id, feature_id)
WHERE e.run_id = :run AND e.rank = 1;
SELECT final_metrics->'analysis'->>'dataset' AS dataset, final_metrics->'analysis'->>'n_contexts' AS contexts
FROM sae.runs WHERE run_id = :run;
-- the density histogram: every feature counted once, dead ones in bin 0
SELECT sum(n_features) AS features, count(*) AS bins FROM sae_feature_density_histogram(:run, 10);
SELECT n_features = (SELECT count(*) FROM sae.feature_stats WHERE run_id = :run AND firing_rate = 0) AS dead_bin
FROM sae_feature_density_histogram(:run, 10) WHERE bin = 0;
-- analysing again replaces the rows
SELECT n_contexts FROM sae_analyze(:run, 64, 2);
SELECT count(*) <= 64 * 2 AS replaced FROM sae.feature_examples WHERE run_id = :run;

-- bad input
SELECT pg_temp.error_of('SELECT sae_analyze(' || :run || ', 0)');
SELECT pg_temp.error_of('SELECT sae_analyze(' || :run || ', 100, 0)');
SELECT pg_temp.error_of('SELECT sae_analyze(' || :run || ', 100, 3, ''no-such-dataset'')');
SELECT pg_temp.error_of('SELECT sae_analyze(424242)');
SELECT pg_temp.error_of('SELECT * FROM sae_feature_activations(424242, ''x'')');
-- an SAE of a table of activations has no model to read features through
CREATE TABLE an_act8 AS SELECT activation FROM sae_synthetic_activations(640, 8, 16);
SELECT run_id AS table_run FROM sae_train('{"activations_table": "an_act8", "activations_column": "activation", "d_in": 8, "d_sae": 16,
    "train_batch_size": 64, "total_training_tokens": 640, "lr_warm_up_steps": 0}') \gset
SELECT pg_temp.error_of('SELECT sae_top_logits(' || :table_run || ')');
SELECT pg_temp.error_of('SELECT sae_analyze(' || :table_run || ')');
-- an SAE of the MLP's hidden layer (128 wide) has no top logits
SELECT run_id AS mlp_run FROM sae_train('{"model_name": "tiny-gpt2", "dataset_path": "an-stories",
    "hook_point": "blocks.0.mlp.hook_post", "hook_point_layer": 0, "d_in": 128, "d_sae": 32,
    "context_size": 32, "train_batch_size": 128, "store_batch_size": 4, "n_batches_in_buffer": 4,
    "total_training_tokens": 1280, "lr_warm_up_steps": 0, "eval_every_n_wandb_logs": 0}') \gset
SELECT pg_temp.error_of('SELECT sae_top_logits(' || :mlp_run || ')');
-- but it can be analysed
SELECT n_contexts FROM sae_analyze(:mlp_run, 320, 2);

-- the pages (rendered and checked in headless Chromium by scripts/test.sh; here their content)
SELECT sae_feature_dashboard(:run, 0) LIKE '<!DOCTYPE html>%</html>' || E'\n' AS dashboard_page,
       (SELECT count(*) FROM regexp_matches(sae_feature_dashboard(:run, 0), '<rect class="bar"', 'g')) AS bars,
       sae_feature_dashboard(:run, 0) !~ '(src|href)=|url\(' AS self_contained;
SELECT (SELECT count(*) FROM regexp_matches(sae_run_report(:run), '<polyline', 'g')) >= 4 AS curves,
       sae_run_report(:run) LIKE '%l1_coefficient%' AS shows_config;
SELECT pg_temp.error_of('SELECT sae_feature_dashboard(' || :run || ', 64)');
SELECT pg_temp.error_of('SELECT sae_feature_dashboard(' || :run || ', -1)');
SELECT pg_temp.error_of('SELECT sae_feature_dashboard(424242, 0)');
SELECT pg_temp.error_of('SELECT sae_run_report(424242)');
-- a run that was never analysed has no dashboard yet
SELECT pg_temp.error_of('SELECT sae_feature_dashboard(' || :table_run || ', 0)');
-- token text in a page is escaped
SELECT sae_feature_dashboard(:run, 0) !~ '<(?!/?(html|head|meta|title|style|body|h1|h2|div|p|table|tr|td|th|span|svg|rect|line|text|br)\M|!DOCTYPE html>)' AS only_our_tags;
