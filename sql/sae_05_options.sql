-- Training options: the three LR schedules (with warm-up and decay), ghost grads,
-- dense_batch MSE, tanh_sae with noise, l2_squared L1, the orthogonal decoder init, the
-- three b_dec inits and apply_b_dec_to_input false. Each runs, and what it changes shows.
SET sae.progress_every = 0;
SET sae.threads = 1;
SET client_min_messages = warning;
CREATE TABLE opt_acts AS SELECT * FROM sae_synthetic_activations(4096, 8, 16, 2, 11);

-- 100 steps of 64 rows; a log row every 5 steps
\set cfg '{"activations_table": "opt_acts", "activations_column": "activation", "d_in": 8, "d_sae": 32, "train_batch_size": 64, "context_size": 64, "store_batch_size": 2, "n_batches_in_buffer": 4, "total_training_tokens": 6400, "lr": 0.004, "lr_warm_up_steps": 0, "l1_coefficient": 0.002, "feature_sampling_window": 50, "wandb_log_frequency": 5, "seed": 3, "b_dec_init_method": "mean", "verbose": false}'

-- a temp table of run ids by name
CREATE TEMP TABLE r (name text PRIMARY KEY, run_id bigint);
INSERT INTO r SELECT 'constant', run_id FROM sae_train(:'cfg');
INSERT INTO r SELECT 'constant_warmup', run_id FROM sae_train(:'cfg'::jsonb || '{"lr_warm_up_steps": 20}');
INSERT INTO r SELECT 'constant_decay', run_id FROM sae_train(:'cfg'::jsonb || '{"lr_warm_up_steps": 10, "lr_decay_steps": 30}');
INSERT INTO r SELECT 'cosine', run_id FROM sae_train(:'cfg'::jsonb || '{"lr_scheduler_name": "cosineannealing", "lr_warm_up_steps": 10}');
INSERT INTO r SELECT 'cosine_decay', run_id FROM sae_train(:'cfg'::jsonb || '{"lr_scheduler_name": "cosineannealing", "lr_decay_steps": 20, "lr_end": 0.001}');
INSERT INTO r SELECT 'restarts', run_id FROM sae_train(:'cfg'::jsonb || '{"lr_scheduler_name": "cosineannealingwarmrestarts", "n_restart_cycles": 2}');
INSERT INTO r SELECT 'ghost', run_id FROM sae_train(:'cfg'::jsonb || '{"use_ghost_grads": true, "dead_feature_window": 1, "l1_coefficient": 0.3, "d_sae": 128}');
INSERT INTO r SELECT 'no_ghost', run_id FROM sae_train(:'cfg'::jsonb || '{"dead_feature_window": 1, "l1_coefficient": 0.3, "d_sae": 128}');
INSERT INTO r SELECT 'dense_batch', run_id FROM sae_train(:'cfg'::jsonb || '{"mse_loss_normalization": "dense_batch"}');
INSERT INTO r SELECT 'tanh', run_id FROM sae_train(:'cfg'::jsonb || '{"sae_type": "tanh_sae", "noise_scale": 1}');
INSERT INTO r SELECT 'l2_squared', run_id FROM sae_train(:'cfg'::jsonb || '{"l1_loss_normalization": "l2_squared"}');
INSERT INTO r SELECT 'lp_norm_2', run_id FROM sae_train(:'cfg'::jsonb || '{"lp_norm": 2}');
INSERT INTO r SELECT 'orthogonal', run_id FROM sae_train(:'cfg'::jsonb || '{"decoder_orthogonal_init": true}');
INSERT INTO r SELECT 'orthogonal_narrow', run_id FROM sae_train(:'cfg'::jsonb || '{"decoder_orthogonal_init": true, "d_sae": 4}');
INSERT INTO r SELECT 'geometric_median', run_id FROM sae_train(:'cfg'::jsonb || '{"b_dec_init_method": "geometric_median"}');
INSERT INTO r SELECT 'zeros', run_id FROM sae_train(:'cfg'::jsonb || '{"b_dec_init_method": "zeros"}');
INSERT INTO r SELECT 'no_b_dec_input', run_id FROM sae_train(:'cfg'::jsonb || '{"apply_b_dec_to_input": false}');
INSERT INTO r SELECT 'adam_beta1', run_id FROM sae_train(:'cfg'::jsonb || '{"adam_beta1": 0.9}');
-- tiny learning rates, so the final b_dec is the initial one
INSERT INTO r SELECT 'init_mean', run_id FROM sae_train(:'cfg'::jsonb || '{"lr": 1e-12, "total_training_tokens": 64}');
INSERT INTO r SELECT 'init_median', run_id FROM sae_train(:'cfg'::jsonb || '{"lr": 1e-12, "total_training_tokens": 64, "b_dec_init_method": "geometric_median"}');
INSERT INTO r SELECT 'init_zeros', run_id FROM sae_train(:'cfg'::jsonb || '{"lr": 1e-12, "total_training_tokens": 64, "b_dec_init_method": "zeros"}');
RESET client_min_messages;

-- every run completed with the steps and log rows asked for, finite metrics, and EV <= 1
SELECT r.name, s.status, s.architecture, s.n_steps,
       (SELECT count(*) FROM sae.train_log l WHERE l.run_id = r.run_id) AS log_rows,
       (SELECT bool_and(l.overall_loss >= 0 AND l.explained_variance <= 1 AND l.l0 >= 0)
        FROM sae.train_log l WHERE l.run_id = r.run_id) AS sane,
       (SELECT count(*) FROM sae.features f WHERE f.run_id = r.run_id) AS features
FROM r JOIN sae.runs s USING (run_id) ORDER BY r.name;

------------------------------------------------------------------------------------------
-- learning-rate schedules (the lr column; step k counts from 1, so lr of step k is
-- PyTorch's lr for optimizer step k - 1)
------------------------------------------------------------------------------------------
CREATE TEMP VIEW lr_of AS
SELECT r.name, l.step, l.lr FROM r JOIN sae.train_log l USING (run_id);
-- constant: lr throughout
SELECT min(lr) = 0.004 AND max(lr) = 0.004 AS constant FROM lr_of WHERE name = 'constant';
-- linear warm-up over 20 steps from lr / 20, rising strictly, then constant
SELECT step, round(lr::numeric, 8) AS lr FROM lr_of WHERE name = 'constant_warmup' AND step <= 30 ORDER BY step;
SELECT bool_and(lr = 0.004) AS constant_after_warmup FROM lr_of WHERE name = 'constant_warmup' AND step >= 20;
-- warm-up, constant, then a linear decay towards 0 over the last 30 steps
SELECT step, round(lr::numeric, 8) AS lr FROM lr_of WHERE name = 'constant_decay' ORDER BY step;
-- cosine annealing after a 10-step warm-up: rises to lr, then falls monotonically to lr_end
SELECT abs(max(lr) - 0.004) < 1e-12 AS peak_is_lr,
       (SELECT step FROM lr_of WHERE name = 'cosine' ORDER BY lr DESC, step LIMIT 1) AS peak_step,
       bool_and(lr >= 0.0004 - 1e-12) AS floor_is_lr_end
FROM lr_of WHERE name = 'cosine';
SELECT bool_and(a.lr > b.lr) AS decreasing_after_warmup
FROM lr_of a JOIN lr_of b ON b.name = a.name AND b.step = a.step + 5
WHERE a.name = 'cosine' AND a.step >= 10;
SELECT bool_and(a.lr < b.lr) AS rising_in_warmup
FROM lr_of a JOIN lr_of b ON b.name = a.name AND b.step = a.step + 5
WHERE a.name = 'cosine' AND b.step <= 10;
SELECT step, round(lr::numeric, 8) AS lr FROM lr_of WHERE name = 'cosine' AND step IN (5, 10, 15, 55, 95, 100) ORDER BY step;
-- cosine to lr_end 0.001, then a linear decay from lr_end over the last 20 steps
SELECT step, round(lr::numeric, 8) AS lr FROM lr_of WHERE name = 'cosine_decay' AND step >= 75 ORDER BY step;
-- warm restarts, 2 cycles of 50 steps: falls, jumps back to lr at step 51, falls again
SELECT step, round(lr::numeric, 8) AS lr FROM lr_of WHERE name = 'restarts' AND step IN (5, 45, 50, 55, 95, 100) ORDER BY step;
SELECT count(*) FILTER (WHERE b.lr > a.lr) AS rises
FROM lr_of a JOIN lr_of b ON b.name = a.name AND b.step = a.step + 5 WHERE a.name = 'restarts';

------------------------------------------------------------------------------------------
-- ghost grads: with dead features (wide SAE, strong L1, a dead_feature_window of 1 step),
-- a ghost loss is logged and added to the overall loss
------------------------------------------------------------------------------------------
SELECT r.name, max(l.dead_features) > 0 AS had_dead_features,
       count(*) FILTER (WHERE l.ghost_grad_loss > 0) > 0 AS ghost_loss_logged,
       bool_and(l.ghost_grad_loss = 0 OR l.dead_features > 0) AS ghost_only_with_dead,
       bool_and(abs(l.overall_loss - (l.mse_loss + 0.3 * l.l1_loss + l.ghost_grad_loss)) < 1e-4) AS overall_includes_ghost
FROM r JOIN sae.train_log l USING (run_id) WHERE r.name IN ('ghost', 'no_ghost') GROUP BY r.name ORDER BY r.name;

------------------------------------------------------------------------------------------
-- options that change the loss or the SAE: each run differs from the plain one
------------------------------------------------------------------------------------------
SELECT r.name,
       (SELECT l.mse_loss FROM sae.train_log l WHERE l.run_id = r.run_id AND l.step = 100)
    <> (SELECT l.mse_loss FROM sae.train_log l JOIN r p USING (run_id) WHERE p.name = 'constant' AND l.step = 100) AS mse_differs,
       (SELECT l.l1_loss FROM sae.train_log l WHERE l.run_id = r.run_id AND l.step = 100)
    <> (SELECT l.l1_loss FROM sae.train_log l JOIN r p USING (run_id) WHERE p.name = 'constant' AND l.step = 100) AS l1_differs,
       (SELECT array_agg(f.w_dec ORDER BY f.feature_id) FROM sae.features f WHERE f.run_id = r.run_id)
    <> (SELECT array_agg(f.w_dec ORDER BY f.feature_id) FROM sae.features f JOIN r p USING (run_id) WHERE p.name = 'constant') AS weights_differ
FROM r WHERE r.name IN ('dense_batch', 'tanh', 'l2_squared', 'lp_norm_2', 'orthogonal', 'geometric_median',
                        'zeros', 'no_b_dec_input', 'adam_beta1', 'ghost')
ORDER BY r.name;
-- the unit-norm SAE keeps decoder rows at norm 1; the tanh SAE does not
SELECT r.name, bool_and(abs(sqrt((SELECT sum(x * x) FROM unnest(f.w_dec) x)) - 1) < 1e-4) AS unit_rows
FROM r JOIN sae.features f USING (run_id) WHERE r.name IN ('constant', 'tanh', 'orthogonal') GROUP BY r.name ORDER BY r.name;
-- the tanh SAE's features are bounded by 1 (tanh of a ReLU), and the run records its type
SELECT s.architecture, s.config->>'sae_type' AS sae_type, s.config->>'noise_scale' AS noise_scale,
       (SELECT bool_and(x BETWEEN 0 AND 1) FROM opt_acts a, unnest(sae_encode(r.run_id, a.activation)) x WHERE a.row_id <= 50) AS features_in_0_1
FROM r JOIN sae.runs s USING (run_id) WHERE r.name = 'tanh';
-- the normalized config records each option
SELECT r.name, s.config->>'mse_loss_normalization' AS mse_norm, s.config->>'l1_loss_normalization' AS l1_norm,
       s.config->>'decoder_orthogonal_init' AS orthogonal, s.config->>'b_dec_init_method' AS b_dec_init,
       s.config->>'apply_b_dec_to_input' AS apply_b_dec, s.config->>'lr_scheduler_name' AS scheduler
FROM r JOIN sae.runs s USING (run_id) ORDER BY r.name;

------------------------------------------------------------------------------------------
-- b_dec initialisation, read off runs trained with lr 1e-12 (one step of 64 rows): from the
-- first half-buffer, the table's first 256 rows
------------------------------------------------------------------------------------------
CREATE TEMP TABLE first_half AS
SELECT i, avg(x) AS mean FROM (SELECT activation FROM opt_acts ORDER BY row_id LIMIT 256) a,
     unnest(a.activation) WITH ORDINALITY AS u(x, i) GROUP BY i;
CREATE TEMP VIEW b_dec_of AS
SELECT r.name, u.i, u.x FROM r JOIN sae.tensors t USING (run_id), unnest(t.data) WITH ORDINALITY AS u(x, i)
WHERE t.name = 'b_dec';
SELECT (SELECT max(abs(x - mean)) < 1e-5 FROM b_dec_of JOIN first_half USING (i) WHERE name = 'init_mean') AS mean_is_mean,
       (SELECT max(abs(x)) < 1e-6 FROM b_dec_of WHERE name = 'init_zeros') AS zeros_are_zero,
       (SELECT max(abs(x - mean)) > 1e-3 FROM b_dec_of JOIN first_half USING (i) WHERE name = 'init_median') AS median_is_not_mean;
-- the geometric median has a smaller sum of distances to the rows than the mean has
CREATE TEMP VIEW dist_sum AS
SELECT b.name, sum(sqrt(d2)) AS total
FROM (SELECT name, array_agg(x ORDER BY i) AS v FROM b_dec_of GROUP BY name) b,
     LATERAL (SELECT a.row_id, sum((ax - bx)^2) AS d2
              FROM (SELECT * FROM opt_acts ORDER BY row_id LIMIT 256) a,
                   unnest(a.activation, b.v) AS u(ax, bx) GROUP BY a.row_id) d
WHERE b.name IN ('init_mean', 'init_median') GROUP BY b.name;
SELECT (SELECT total FROM dist_sum WHERE name = 'init_median') < (SELECT total FROM dist_sum WHERE name = 'init_mean') AS median_closer;

-- the narrow orthogonal decoder (d_sae 4 < d_in 8) trains and keeps unit rows
SELECT count(*) AS features, bool_and(abs(sqrt((SELECT sum(x * x) FROM unnest(f.w_dec) x)) - 1) < 1e-4) AS unit_rows
FROM r JOIN sae.features f USING (run_id) WHERE r.name = 'orthogonal_narrow';

DELETE FROM sae.runs WHERE run_id IN (SELECT run_id FROM r);
DROP TABLE opt_acts CASCADE;
