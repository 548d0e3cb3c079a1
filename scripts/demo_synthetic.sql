-- The sae demo (run by scripts/demo.sh): train a sparse autoencoder on a synthetic activation
-- set whose true features are known, then check how many of them it found.
\set ON_ERROR_STOP 1
\pset footer off

CREATE EXTENSION sae;

\echo
\echo '== 200,000 activation vectors of width 64, each a sparse mix of about 3 of 256 known unit directions'
CREATE TABLE demo_acts AS
SELECT * FROM sae_synthetic_activations(200000, 64, 256, 3, 1);
CREATE TABLE demo_dict AS
SELECT * FROM sae_synthetic_dictionary(64, 256, 1);

\echo
\echo '== training: SAELens config, 512 features, 2M tokens (progress as NOTICEs)'
\x on
SELECT * FROM sae_train('{
    "activations_table": "demo_acts",
    "activations_column": "activation",
    "d_in": 64,
    "expansion_factor": 8,
    "l1_coefficient": 0.005,
    "lr": 0.003,
    "lr_warm_up_steps": 100,
    "train_batch_size": 1024,
    "total_training_tokens": 2000000,
    "context_size": 128,
    "store_batch_size": 16,
    "n_batches_in_buffer": 20,
    "seed": 42
}');
\x off

SELECT max(run_id) AS run_id FROM sae.runs \gset

\echo
\echo '== training log, about every 10% of the steps'
SELECT DISTINCT ON (decile)
       step, n_tokens,
       round(lr::numeric, 6) AS lr,
       round(mse_loss::numeric, 6) AS mse_loss,
       round(l1_loss::numeric, 6) AS l1_loss,
       round(l0::numeric, 2) AS l0,
       round(explained_variance::numeric, 4) AS explained_variance,
       dead_features
FROM (SELECT *, ntile(10) OVER (ORDER BY step) AS decile
      FROM sae.train_log WHERE run_id = :run_id AND mse_loss IS NOT NULL) AS log
ORDER BY decile, step DESC;

-- Cosine similarity of every true direction with every learned decoder row, element by element
-- (8M products: enough work_mem keeps the aggregate off disk).
SET work_mem = '64MB';
CREATE TEMP TABLE demo_cosines AS
WITH truth AS (
    SELECT d.feature_id AS true_id, u.i,
           u.v / sqrt(sum(u.v * u.v) OVER (PARTITION BY d.feature_id)) AS v
    FROM demo_dict d,
         LATERAL unnest(d.direction::float8[]) WITH ORDINALITY AS u(v, i)
), learned AS (
    SELECT f.feature_id, u.i,
           u.v / nullif(sqrt(sum(u.v * u.v) OVER (PARTITION BY f.feature_id)), 0) AS v
    FROM sae.features f,
         LATERAL unnest(f.w_dec::float8[]) WITH ORDINALITY AS u(v, i)
    WHERE f.run_id = :run_id
)
SELECT t.true_id, l.feature_id, sum(t.v * l.v) AS cosine
FROM truth t JOIN learned l USING (i)
GROUP BY t.true_id, l.feature_id;

\echo
\echo '== top 10 features by firing rate, with the true direction each one is closest to'
SELECT f.feature_id,
       round(f.firing_rate::numeric, 5) AS firing_rate,
       round(f.log10_sparsity::numeric, 3) AS log10_sparsity,
       round(f.b_enc::numeric, 4) AS b_enc,
       best.true_id AS closest_true_direction,
       round(best.cosine::numeric, 4) AS cosine
FROM (SELECT * FROM sae.features WHERE run_id = :run_id
      ORDER BY firing_rate DESC, feature_id LIMIT 10) AS f
LEFT JOIN LATERAL (
    SELECT c.true_id, c.cosine FROM demo_cosines c
    WHERE c.feature_id = f.feature_id
    ORDER BY c.cosine DESC LIMIT 1
) AS best ON true
ORDER BY f.firing_rate DESC, f.feature_id;

\echo
\echo '== recovery of the known dictionary: for each true direction, its best cosine with any decoder row'
SELECT count(*) AS true_directions,
       round(avg(best)::numeric, 4) AS mean_max_cosine,
       round(avg((best > 0.9)::int)::numeric, 4) AS fraction_above_0_9
FROM (SELECT true_id, max(cosine) AS best FROM demo_cosines GROUP BY true_id) AS per_direction;
