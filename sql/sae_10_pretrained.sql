-- "from_pretrained_run": continue training from a completed run's weights.
SET sae.progress_every = 0;
SET sae.threads = 1;
SET client_min_messages = warning;
SELECT setval('sae.runs_run_id_seq', 2000);
CREATE TABLE pre_acts AS SELECT * FROM sae_synthetic_activations(4096, 16, 32, 2, 9);
\set cfg '{"activations_table": "pre_acts", "activations_column": "activation", "d_in": 16, "d_sae": 64, "train_batch_size": 128, "context_size": 64, "store_batch_size": 4, "n_batches_in_buffer": 4, "total_training_tokens": 25600, "lr": 0.004, "lr_warm_up_steps": 0, "l1_coefficient": 0.005, "seed": 9, "verbose": false}'
SELECT run_id AS base FROM sae_train(:'cfg') \gset

-- one step at a vanishing learning rate: the new run starts where the old one ended
SELECT run_id AS cont, explained_variance > 0.8 AS starts_trained
FROM sae_train(:'cfg'::jsonb || jsonb_build_object('from_pretrained_run', :base, 'lr', 1e-9,
                                                   'total_training_tokens', 128)) \gset
RESET client_min_messages;
SELECT :'starts_trained' AS starts_trained;
SELECT max(abs(a - b)) < 1e-5 AS same_decoder
FROM sae.features f1 JOIN sae.features f2 USING (feature_id),
     unnest(f1.w_dec, f2.w_dec) AS u(a, b)
WHERE f1.run_id = :base AND f2.run_id = :cont;
SELECT max(abs(a - b)) < 1e-5 AS same_b_dec, max(abs(a)) > 0.01 AS b_dec_not_zero
FROM sae.tensors t1, sae.tensors t2, unnest(t1.data, t2.data) AS u(a, b)
WHERE t1.run_id = :base AND t2.run_id = :cont AND t1.name = 'b_dec' AND t2.name = 'b_dec';
SELECT config->'from_pretrained_run' AS recorded FROM sae.runs WHERE run_id = :cont;

-- a run that does not fit, or does not exist
\set VERBOSITY terse
SELECT count(*) AS runs_before FROM sae.runs \gset
SELECT * FROM sae_train(:'cfg'::jsonb || jsonb_build_object('from_pretrained_run', :base, 'd_sae', 32));
\echo :SQLSTATE
SELECT * FROM sae_train(:'cfg'::jsonb || '{"from_pretrained_run": 999999}');
\echo :SQLSTATE
SELECT count(*) = :runs_before AS no_rows_left FROM sae.runs;
