-- Training on the bundled demo model (demo/model, a small GPT-Neo trained on generated stories):
-- an SAE spliced into the model recovers most of the cross-entropy that zero-ablating the hook
-- loses, and the memory budget covers the model. scripts/test.sh copies demo/ to SAE_TEST_DEMO.
\getenv demo SAE_TEST_DEMO
BEGIN;
SELECT plan(8);
SET client_min_messages = warning;

SELECT ok(sae_load_model('demo-stories', :'demo' || '/model') > 0, 'the demo model loads');
SELECT ok(sae_load_dataset_file('demo-stories', :'demo' || '/stories.jsonl', 'jsonl', 'demo-stories', 128) > 0,
          'the demo stories become a token dataset');

CREATE TEMP TABLE r AS
SELECT * FROM sae_train('{"model_name": "demo-stories", "dataset_path": "demo-stories",
    "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "d_in": 128, "expansion_factor": 4,
    "context_size": 128, "l1_coefficient": 0.015, "lr": 0.001, "lr_warm_up_steps": 20,
    "train_batch_size": 2048, "store_batch_size": 16, "n_batches_in_buffer": 8,
    "total_training_tokens": 163840, "eval_every_n_wandb_logs": 0, "verbose": false}');
SELECT is((SELECT count(*)::int FROM r), 1, 'one SAE trained');

-- sae_evaluate: the model clean, with the SAE spliced in, and with the hook zeroed
CREATE TEMP TABLE e AS
SELECT metric, value FROM sae_evaluate((SELECT run_id FROM r), 4);
SELECT cmp_ok((SELECT value FROM e WHERE metric = 'ce_loss_with_sae'), '<',
              (SELECT value FROM e WHERE metric = 'ce_loss_with_ablation'),
              'CE loss with the SAE is below CE loss with the hook zero-ablated');
SELECT cmp_ok((SELECT value FROM e WHERE metric = 'ce_loss_with_sae'), '>',
              (SELECT value FROM e WHERE metric = 'ce_loss_without_sae'),
              'CE loss with the SAE is above the clean CE loss');
SELECT cmp_ok((SELECT value FROM e WHERE metric = 'ce_loss_score'), '>', 0.5::float8,
              'the SAE recovers more than half of the CE loss zero-ablation loses');
SELECT cmp_ok((SELECT (final_metrics->'eval'->>'ce_loss_score')::float8 FROM sae.runs WHERE run_id = (SELECT run_id FROM r)),
              '>', 0.5::float8, 'sae_evaluate stored its numbers in sae.runs.final_metrics');

-- the budget counts the model, its forward pass and the activation queues too
SET LOCAL sae.max_memory = '64MB';
SELECT throws_like($$SELECT * FROM sae_train('{"model_name": "demo-stories", "dataset_path": "demo-stories",
    "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "d_in": 128, "expansion_factor": 8,
    "context_size": 128, "train_batch_size": 4096, "store_batch_size": 64, "n_batches_in_buffer": 32}')$$,
    '%sae.max_memory is 64 MB', 'a run that does not fit sae.max_memory is refused before it starts');

SELECT * FROM finish();
ROLLBACK;
