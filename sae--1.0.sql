-- sae 1.0: train and study sparse autoencoders from SQL.
\echo Use "CREATE EXTENSION sae" to load this file. \quit

CREATE SCHEMA sae;
COMMENT ON SCHEMA sae IS 'tables of the sae extension: runs, training logs, features, tensors';

CREATE TABLE sae.runs (
    run_id            bigserial PRIMARY KEY,
    run_name          text NOT NULL,
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    config            jsonb NOT NULL,
    hook_point        text NOT NULL,
    hook_point_layer  int NOT NULL,
    d_in              int NOT NULL,
    d_sae             int NOT NULL,
    architecture      text NOT NULL,
    device            text NOT NULL,
    source            text NOT NULL,
    n_steps           bigint,
    n_tokens          bigint,
    seconds           real,
    tokens_per_second real,
    final_metrics     jsonb,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
COMMENT ON TABLE sae.runs IS 'one row per trained SAE; config is normalized with every default filled in';
COMMENT ON COLUMN sae.runs.status IS 'running while sae_train works (visible to other sessions only after commit), then completed; a failed or cancelled sae_train rolls its rows back, so failed and cancelled are reserved for runs outside the caller''s transaction';
COMMENT ON COLUMN sae.runs.final_metrics IS 'metrics of the last step and the last feature-density window; explained_variance is 1 - SSE/SST about the batch mean, explained_variance_legacy the mean of per-token ratios (SAELens v1)';

CREATE TABLE sae.train_log (
    run_id                       bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    step                         bigint NOT NULL,
    n_tokens                     bigint NOT NULL,
    lr                           double precision,
    mse_loss                     real,
    l1_loss                      real,
    ghost_grad_loss              real,
    overall_loss                 real,
    l0                           real,
    explained_variance           real,
    explained_variance_legacy    real,
    explained_variance_std       real,
    l2_norm                      real,
    l2_ratio                     real,
    dead_features                int,
    mean_log10_feature_sparsity  real,
    below_1e_5                   int,
    below_1e_6                   int,
    -- evaluation steps of runs on a model (every wandb_log_frequency * eval_every_n_wandb_logs steps)
    ce_loss_score                real,
    ce_loss_without_sae          real,
    ce_loss_with_sae             real,
    ce_loss_with_ablation        real,
    kl_div_score                 real,
    kl_div_with_sae              real,
    kl_div_with_ablation         real,
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE sae.train_log IS 'SAELens''s W&B metrics: every wandb_log_frequency steps, and the feature-density summary every feature_sampling_window steps';
COMMENT ON COLUMN sae.train_log.step IS 'optimizer step, counted from 1';
COMMENT ON COLUMN sae.train_log.l1_loss IS 'mean over the batch of ||f||_p, without l1_coefficient (losses/l1_loss)';
COMMENT ON COLUMN sae.train_log.explained_variance IS 'conventional: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the batch';
COMMENT ON COLUMN sae.train_log.explained_variance_legacy IS 'SAELens v1 metrics/explained_variance: the mean over tokens of 1 - ||x - x_hat||^2 / ||x - mean(x)||^2';

CREATE TABLE sae.features (
    run_id          bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    feature_id      int NOT NULL,
    w_enc           real[] NOT NULL,
    w_dec           real[] NOT NULL,
    b_enc           real NOT NULL,
    firing_rate     real,
    log10_sparsity  real,
    PRIMARY KEY (run_id, feature_id)
);
ALTER TABLE sae.features ALTER COLUMN w_enc SET STORAGE EXTERNAL,
                         ALTER COLUMN w_dec SET STORAGE EXTERNAL;
COMMENT ON TABLE sae.features IS 'one row per SAE feature: its encoder column, decoder row and bias';
COMMENT ON COLUMN sae.features.firing_rate IS 'fraction of tokens with a positive activation, over the last feature_sampling_window';
COMMENT ON COLUMN sae.features.log10_sparsity IS 'log10(firing_rate + 1e-10), as SAELens''s sparsity.safetensors';

CREATE TABLE sae.tensors (
    run_id  bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    name    text NOT NULL,
    chunk   int NOT NULL,
    shape   int[] NOT NULL,
    data    real[] NOT NULL,
    PRIMARY KEY (run_id, name, chunk)
);
ALTER TABLE sae.tensors ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE sae.tensors IS 'SAE-level tensors (b_dec, checkpoints) in row-major chunks of at most 16M floats (64 MB); shape is the whole tensor''s';

SELECT pg_catalog.pg_extension_config_dump('sae.runs', '');
SELECT pg_catalog.pg_extension_config_dump('sae.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sae.train_log', '');
SELECT pg_catalog.pg_extension_config_dump('sae.features', '');
SELECT pg_catalog.pg_extension_config_dump('sae.tensors', '');

CREATE FUNCTION sae_train(config jsonb)
RETURNS TABLE (run_id bigint, run_name text, hook_point text, d_in int, d_sae int,
               n_steps bigint, n_tokens bigint, l0 real, explained_variance real,
               mse real, l1_loss real, dead_features int, tokens_per_second real,
               seconds real)
AS 'MODULE_PATHNAME', 'sae_train' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sae_train(jsonb) IS 'train an SAE with a SAELens-style config; one row per trained SAE';

CREATE FUNCTION sae_encode(run_id bigint, activation real[])
RETURNS real[] AS 'MODULE_PATHNAME', 'sae_encode' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sae_encode(bigint, real[]) IS 'feature activations of a trained SAE for one activation vector';

CREATE FUNCTION sae_reconstruct(run_id bigint, activation real[])
RETURNS real[] AS 'MODULE_PATHNAME', 'sae_reconstruct' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sae_reconstruct(bigint, real[]) IS 'the SAE''s reconstruction of one activation vector';

CREATE FUNCTION sae_synthetic_dictionary(d_in int, n_features int, seed bigint DEFAULT 0)
RETURNS TABLE (feature_id int, direction real[])
AS 'MODULE_PATHNAME', 'sae_synthetic_dictionary_srf' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION sae_synthetic_dictionary(int, int, bigint) IS 'the random unit directions behind sae_synthetic_activations';

CREATE FUNCTION sae_synthetic_activations(n_rows bigint, d_in int, n_features int,
                                          active_per_row real DEFAULT 3, seed bigint DEFAULT 0)
RETURNS TABLE (row_id bigint, activation real[])
AS 'MODULE_PATHNAME', 'sae_synthetic_activations_srf' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION sae_synthetic_activations(bigint, int, int, real, bigint) IS 'toy activations: sparse combinations of sae_synthetic_dictionary(d_in, n_features, seed)';

-- GPUs (src/pg/device.c): what the CUDA backend sees; no rows, with a NOTICE saying why, where none.
CREATE FUNCTION sae_device_info(
    OUT device text, OUT name text, OUT compute_capability text, OUT multiprocessors int,
    OUT memory_total_mb bigint, OUT memory_free_mb bigint, OUT driver_version text, OUT cuda_runtime_version text)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'sae_device_info' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sae_device_info() IS 'the GPUs sae can train on ("cuda:N" in a config or sae.device), with their memory and compute capability';

-- Language models (src/pg/model.c): one row per name given to sae_load_model.
CREATE TABLE sae.models (
    model_id     bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    hf_repo      text,                  -- the Hugging Face repo, when loaded by name
    architecture text NOT NULL,         -- gpt2 or gpt_neo
    config       jsonb NOT NULL,        -- sizes from config.json, with HF's defaults filled in
    options      jsonb NOT NULL,        -- TransformerLens weight processing, n_ctx, repo, revision
    source_path  text NOT NULL,         -- the folder the files were read from
    weights_file text NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE sae.models IS 'language models registered with sae_load_model';
SELECT pg_catalog.pg_extension_config_dump('sae.models', '');
SELECT pg_catalog.pg_extension_config_dump('sae.models_model_id_seq', '');

CREATE FUNCTION sae_load_model(name text, path text DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS bigint AS 'MODULE_PATHNAME', 'sae_load_model' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
COMMENT ON FUNCTION sae_load_model(text, text, jsonb) IS 'load a GPT-2 or GPT-Neo model from a folder or the Hugging Face cache and record it in sae.models';

CREATE FUNCTION sae_to_tokens(model text, input text, prepend_bos boolean DEFAULT true)
RETURNS int[] AS 'MODULE_PATHNAME', 'sae_to_tokens' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_to_tokens(text, text, boolean) IS 'token ids of a text, as TransformerLens to_tokens (truncated to the context)';

CREATE FUNCTION sae_to_string(model text, tokens int[])
RETURNS text AS 'MODULE_PATHNAME', 'sae_to_string' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_to_string(text, int[]) IS 'the text of token ids';

CREATE FUNCTION sae_to_str_tokens(model text, input text, prepend_bos boolean DEFAULT true)
RETURNS text[] AS 'MODULE_PATHNAME', 'sae_to_str_tokens' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_to_str_tokens(text, text, boolean) IS 'the tokens of a text, each as text';

CREATE FUNCTION sae_generate(model text, prompt text, max_new_tokens int DEFAULT 50,
                             temperature real DEFAULT 1.0, seed bigint DEFAULT NULL,
                             stop_at_eos boolean DEFAULT true)
RETURNS text AS 'MODULE_PATHNAME', 'sae_generate' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
COMMENT ON FUNCTION sae_generate(text, text, int, real, bigint, boolean) IS 'the prompt continued by sampling (temperature 0: greedy); repeatable with a seed';

CREATE FUNCTION sae_test_prompt(model text, prompt text, answer text, k int DEFAULT 10,
                                prepend_space_to_answer boolean DEFAULT true)
RETURNS TABLE (answer_index int, answer_token text, answer_rank int, answer_logit real,
               answer_prob real, rank int, token text, logit real, prob real)
AS 'MODULE_PATHNAME', 'sae_test_prompt' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_test_prompt(text, text, text, int, boolean) IS 'TransformerLens test_prompt: the answer''s rank and probability and the top k tokens; the printed report comes as a NOTICE';

CREATE FUNCTION sae_token_log_probs(model text, input text, prepend_bos boolean DEFAULT true)
RETURNS TABLE (pos int, token_id int, token text, next_token_id int, next_token text,
               log_prob real, rank int, top_token_ids int[], top_tokens text[], top_log_probs real[])
AS 'MODULE_PATHNAME', 'sae_token_log_probs' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_token_log_probs(text, text, boolean) IS 'per position: the log-probability and rank of the next token, and the 5 likeliest tokens';

CREATE FUNCTION sae_token_log_probs_html(model text, input text, prepend_bos boolean DEFAULT true)
RETURNS text AS 'MODULE_PATHNAME', 'sae_token_log_probs_html' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_token_log_probs_html(text, text, boolean) IS 'a self-contained HTML page of the tokens shaded by probability, top 5 on hover';

CREATE FUNCTION sae_run_with_cache(model text, input text, hook_point text, prepend_bos boolean DEFAULT true)
RETURNS TABLE (pos int, token_id int, token text, activation real[])
AS 'MODULE_PATHNAME', 'sae_run_with_cache' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_run_with_cache(text, text, text, boolean) IS 'the activation at a TransformerLens hook point for each position of a text';

-- Token datasets (src/pg/datasets.c): contexts of context_size tokens, packed as SAELens does.
CREATE TABLE sae.datasets (
    dataset_id         bigserial PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    model              text NOT NULL,        -- whose tokenizer made it
    context_size       int NOT NULL,
    prepend_bos        boolean NOT NULL,
    sequence_separator text NOT NULL,        -- bos, eos or none
    source             text NOT NULL,        -- the query or the file
    n_contexts         bigint,
    n_tokens           bigint,
    n_documents        bigint,
    created_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sae.datasets IS 'token datasets made by sae_create_dataset and sae_load_dataset_file';

CREATE TABLE sae.dataset_tokens (
    dataset_id bigint NOT NULL REFERENCES sae.datasets ON DELETE CASCADE,
    context_id bigint NOT NULL,
    tokens     int[] NOT NULL,
    PRIMARY KEY (dataset_id, context_id)
);
COMMENT ON TABLE sae.dataset_tokens IS 'one row per context of a token dataset, in training order';
SELECT pg_catalog.pg_extension_config_dump('sae.datasets', '');
SELECT pg_catalog.pg_extension_config_dump('sae.datasets_dataset_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sae.dataset_tokens', '');

CREATE FUNCTION sae_create_dataset(name text, model text, query text, context_size int DEFAULT 128,
                                   prepend_bos boolean DEFAULT true, sequence_separator text DEFAULT 'bos')
RETURNS bigint AS 'MODULE_PATHNAME', 'sae_create_dataset' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sae_create_dataset(text, text, text, int, boolean, text) IS 'tokenize the first column of a query (text, or int[] token ids) into a dataset of contexts';

CREATE FUNCTION sae_load_dataset_file(name text, path text, format text, model text, context_size int DEFAULT 128,
                                      prepend_bos boolean DEFAULT true, sequence_separator text DEFAULT 'bos')
RETURNS bigint AS 'MODULE_PATHNAME', 'sae_load_dataset_file' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sae_load_dataset_file(text, text, text, text, int, boolean, text) IS 'a token dataset from a server file: jsonl, text or uint16';

-- Evaluation of SAEs trained on a model (src/pg/evaluate.c), as SAELens's run_evals.
COMMENT ON COLUMN sae.train_log.ce_loss_score IS 'evaluation steps only (every wandb_log_frequency * eval_every_n_wandb_logs steps): (CE zero-ablated - CE with SAE) / (CE zero-ablated - CE clean)';

CREATE FUNCTION sae_evaluate(run_id bigint, n_batches int DEFAULT 10, dataset text DEFAULT NULL)
RETURNS TABLE (metric text, value double precision)
AS 'MODULE_PATHNAME', 'sae_evaluate' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
COMMENT ON FUNCTION sae_evaluate(bigint, int, text) IS 'evaluate a run on a model over a token dataset (the run''s by default): CE loss recovered, KL, L2, explained variance, L0; also stored in sae.runs.final_metrics->''eval''';

-- ---------------------------------------------------------------- feature analysis

CREATE TABLE sae.feature_logits (
    run_id      bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    feature_id  int NOT NULL,
    bottom      boolean NOT NULL,     -- false: the k largest logits; true: the k most negative
    rank        int NOT NULL,         -- 1 = the largest (or, for bottom, the most negative)
    token_id    int NOT NULL,
    token       text NOT NULL,
    logit       real NOT NULL,
    PRIMARY KEY (run_id, feature_id, bottom, rank)
);
COMMENT ON TABLE sae.feature_logits IS 'sae_top_logits: the tokens each feature''s decoder row promotes and suppresses, the entries of W_dec @ W_U (W_U without its bias)';

CREATE TABLE sae.feature_stats (
    run_id          bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    feature_id      int NOT NULL,
    n_tokens        bigint NOT NULL,  -- tokens analysed (BOS tokens left out)
    firing_rate     real NOT NULL,    -- fraction of those with activation > 0
    log10_density   real NOT NULL,    -- log10(firing_rate + 1e-10), as SAELens's sparsity
    mean_activation real,             -- over the tokens it fires on; NULL if it never fired
    max_activation  real,
    histogram_max   real,             -- the histogram covers [0, histogram_max): a power of two, < 2 x max
    histogram       bigint[] NOT NULL, -- 32 equal bins of the positive activations
    PRIMARY KEY (run_id, feature_id)
);
COMMENT ON TABLE sae.feature_stats IS 'sae_analyze: each feature''s firing rate and activations over a dataset';

CREATE TABLE sae.feature_examples (
    run_id       bigint NOT NULL REFERENCES sae.runs ON DELETE CASCADE,
    feature_id   int NOT NULL,
    rank         int NOT NULL,        -- 1 = the highest activation
    activation   real NOT NULL,       -- at the top token
    context_id   bigint NOT NULL,     -- sae.dataset_tokens.context_id of the analysed dataset
    position     int NOT NULL,        -- of the top token in its context
    window_start int NOT NULL,        -- position of tokens[1]
    token_ids    int[] NOT NULL,      -- up to 15 tokens before the top token and 5 after
    tokens       text[] NOT NULL,
    activations  real[] NOT NULL,     -- the feature's activation on each token of the window
    PRIMARY KEY (run_id, feature_id, rank)
);
COMMENT ON TABLE sae.feature_examples IS 'sae_analyze: the contexts where each feature fires most (ties: the earlier token)';

SELECT pg_catalog.pg_extension_config_dump('sae.feature_logits', '');
SELECT pg_catalog.pg_extension_config_dump('sae.feature_stats', '');
SELECT pg_catalog.pg_extension_config_dump('sae.feature_examples', '');

CREATE FUNCTION sae_top_logits(run_id bigint, k int DEFAULT 10)
RETURNS TABLE (feature_id int, rank int, token_id int, token text, logit real, bottom boolean)
AS 'MODULE_PATHNAME', 'sae_top_logits' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sae_top_logits(bigint, int) IS 'for every feature the k tokens of W_dec @ W_U with the largest logits and (bottom) the k most negative; stored in sae.feature_logits';

CREATE FUNCTION sae_analyze(run_id bigint, n_tokens bigint DEFAULT 1000000, k int DEFAULT 20,
                            dataset text DEFAULT NULL)
RETURNS TABLE (n_tokens bigint, n_contexts bigint, dead_features int, mean_l0 real, seconds real)
AS 'MODULE_PATHNAME', 'sae_analyze' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
COMMENT ON FUNCTION sae_analyze(bigint, bigint, int, text) IS 'run the model and the SAE over a token dataset (the run''s by default): firing rates and activations in sae.feature_stats, top examples in sae.feature_examples';

CREATE FUNCTION sae_feature_activations(run_id bigint, input text)
RETURNS TABLE (pos int, token_id int, token text, feature_ids int[], activations real[])
AS 'MODULE_PATHNAME', 'sae_feature_activations' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_feature_activations(bigint, text) IS 'per token of a text: the features that fire and their activations, largest first';

CREATE FUNCTION sae_feature_density_histogram(run_id bigint, n_bins int DEFAULT 20)
RETURNS TABLE (bin int, log10_density_from real, log10_density_to real, n_features bigint)
LANGUAGE sql STABLE STRICT
BEGIN ATOMIC
    WITH s AS (
        SELECT fs.log10_density FROM sae.feature_stats fs WHERE fs.run_id = sae_feature_density_histogram.run_id
    ), live AS (
        SELECT min(log10_density) AS lo, max(log10_density) AS hi FROM s WHERE log10_density > -10
    ), binned AS (
        SELECT CASE WHEN s.log10_density <= -10 THEN 0
                    ELSE least(greatest(width_bucket(s.log10_density, live.lo, live.hi + 1e-6, n_bins), 1), n_bins)
               END AS bin
        FROM s, live
    )
    SELECT g.bin,
           CASE WHEN g.bin = 0 THEN -10 ELSE (live.lo + (g.bin - 1) * (live.hi + 1e-6 - live.lo) / n_bins)::real END,
           CASE WHEN g.bin = 0 THEN -10 ELSE (live.lo + g.bin * (live.hi + 1e-6 - live.lo) / n_bins)::real END,
           count(binned.bin)
    FROM live, generate_series(0, n_bins) AS g(bin)
    LEFT JOIN binned ON binned.bin = g.bin
    GROUP BY g.bin, live.lo, live.hi
    ORDER BY g.bin;
END;
COMMENT ON FUNCTION sae_feature_density_histogram(bigint, int) IS 'the run''s log10 feature density histogram from sae_analyze: bin 0 holds the dead features, bins 1..n_bins split the live range equally';

-- ---------------------------------------------------------------- SAELens folders

CREATE FUNCTION sae_export(run_id bigint, directory text)
RETURNS text AS 'MODULE_PATHNAME', 'sae_export' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sae_export(bigint, text) IS 'write the run as a SAELens 6 folder (cfg.json, sae_weights.safetensors, sparsity.safetensors) into a new server directory; needs pg_write_server_files';

CREATE FUNCTION sae_import(path text, model text DEFAULT NULL)
RETURNS bigint AS 'MODULE_PATHNAME', 'sae_import' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
COMMENT ON FUNCTION sae_import(text, text) IS 'read a SAELens SAE folder (v1.x or v6 format, standard architecture) into sae.runs and sae.features; needs pg_read_server_files';

-- ---------------------------------------------------------------- pages

CREATE FUNCTION sae_feature_dashboard(run_id bigint, feature_id int)
RETURNS text AS 'MODULE_PATHNAME', 'sae_feature_dashboard' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_feature_dashboard(bigint, int) IS 'a self-contained HTML page of one feature: activation histogram, top and bottom logits, top examples (from sae_analyze and sae_top_logits)';

CREATE FUNCTION sae_run_report(run_id bigint)
RETURNS text AS 'MODULE_PATHNAME', 'sae_run_report' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION sae_run_report(bigint) IS 'a self-contained HTML page of a run: training curves as SVG plots, config and final metrics';
