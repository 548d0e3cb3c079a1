-- Dictionary recovery: an SAE trained on sparse combinations of 32 known unit directions in
-- 16 dimensions (about 2 active per row) finds them: every true direction has a decoder row
-- close to it, and the SAE explains most of the variance, on the training batches and on
-- rows it never saw.
BEGIN;
SELECT plan(9);

SET LOCAL sae.progress_every = 0;
SET LOCAL sae.threads = 1;
SET LOCAL client_min_messages = warning;

CREATE TEMP TABLE rec_acts AS SELECT * FROM sae_synthetic_activations(65536, 16, 32, 2, 42);
-- rows 65537..67536 of the same generator: not trained on
CREATE TEMP TABLE rec_holdout AS
SELECT * FROM sae_synthetic_activations(67536, 16, 32, 2, 42) WHERE row_id > 65536;

-- 4000 steps of 256 rows (1,024,000 tokens, about 16 epochs), 4x overcomplete, cosine LR
CREATE TEMP TABLE rec_run AS
SELECT * FROM sae_train('{"activations_table": "rec_acts", "activations_column": "activation",
  "d_in": 16, "d_sae": 128, "train_batch_size": 256, "total_training_tokens": 1024000,
  "context_size": 128, "store_batch_size": 8, "n_batches_in_buffer": 8,
  "lr": 0.003, "lr_scheduler_name": "cosineannealing", "lr_warm_up_steps": 100,
  "l1_coefficient": 0.02, "seed": 1, "verbose": false}');

-- for each true direction, the best cosine similarity with any decoder row
CREATE TEMP TABLE rec_match AS
SELECT d.feature_id,
       max((SELECT sum(a * b) FROM unnest(d.direction, f.w_dec) AS u(a, b))
           / nullif(sqrt((SELECT sum(b * b) FROM unnest(f.w_dec) AS b)), 0)) AS best_cos
FROM sae_synthetic_dictionary(16, 32, 42) d, sae.features f
WHERE f.run_id = (SELECT run_id FROM rec_run)
GROUP BY d.feature_id;

-- explained variance on the held-out rows: 1 - SSE / SST about their mean
CREATE TEMP TABLE rec_holdout_ev AS
WITH x AS (SELECT row_id, activation AS a, sae_reconstruct((SELECT run_id FROM rec_run), activation) AS r
           FROM rec_holdout),
     m AS (SELECT i, avg(ai) AS mean FROM x, unnest(a) WITH ORDINALITY AS u(ai, i) GROUP BY i)
SELECT 1 - (SELECT sum((ai - ri) ^ 2) FROM x, unnest(a, r) AS u(ai, ri))
         / (SELECT sum((ai - mean) ^ 2) FROM x, unnest(a) WITH ORDINALITY AS u(ai, i) JOIN m USING (i)) AS ev,
       (SELECT avg((SELECT count(*) FROM unnest(sae_encode((SELECT run_id FROM rec_run), activation)) f WHERE f > 0))
        FROM rec_holdout) AS l0;

SELECT diag(format('recovery: mean best cosine %s, min %s, %s of 32 directions >= 0.9; final batch EV %s, held-out EV %s; L0 train %s, held-out %s; %s dead features',
                   round(avg(best_cos)::numeric, 4), round(min(best_cos)::numeric, 4),
                   count(*) FILTER (WHERE best_cos >= 0.9),
                   round((SELECT explained_variance FROM rec_run)::numeric, 4),
                   round((SELECT ev FROM rec_holdout_ev)::numeric, 4),
                   round((SELECT l0 FROM rec_run)::numeric, 2), round((SELECT l0 FROM rec_holdout_ev)::numeric, 2),
                   (SELECT dead_features FROM rec_run)))
FROM rec_match;

SELECT is((SELECT n_steps FROM rec_run), 4000::bigint, 'the run took 4000 steps');
SELECT is((SELECT status FROM sae.runs WHERE run_id = (SELECT run_id FROM rec_run)), 'completed', 'the run completed');
SELECT is((SELECT count(*)::int FROM rec_match), 32, 'every true direction was compared');
SELECT cmp_ok((SELECT avg(best_cos) FROM rec_match), '>=', 0.9::float8,
              'mean over the true directions of the best cosine with a decoder row is >= 0.9');
SELECT cmp_ok((SELECT min(best_cos) FROM rec_match), '>=', 0.8::float8,
              'every true direction has a decoder row with cosine >= 0.8');
SELECT cmp_ok((SELECT explained_variance FROM rec_run), '>=', 0.85::real,
              'the final explained variance is >= 0.85');
SELECT cmp_ok((SELECT ev FROM rec_holdout_ev), '>=', 0.85::float8,
              'the explained variance on 2000 held-out rows is >= 0.85');
SELECT cmp_ok((SELECT l0 FROM rec_holdout_ev), '<', 16::numeric,
              'on held-out rows fewer than 16 of the 128 features fire on average');
-- a random decoder of the same width does much worse: the score is not reached by chance
SELECT cmp_ok((SELECT avg(m) FROM (
                 SELECT d.feature_id,
                        max((SELECT sum(a * b) FROM unnest(d.direction, r.direction) AS u(a, b))) AS m
                 FROM sae_synthetic_dictionary(16, 32, 42) d, sae_synthetic_dictionary(16, 128, 7) r
                 GROUP BY d.feature_id) s), '<', 0.8::float8,
              'for comparison, 128 random directions reach a mean best cosine below 0.8');

SELECT * FROM finish();
ROLLBACK;
