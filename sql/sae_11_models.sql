-- Language models: loading (folders, sharded, pytorch_model.bin, the hub cache), the tokenizer,
-- and the tutorial's exploration, on the tiny random fixture models of test/fixtures/lm.
-- scripts/test.sh copies the fixtures where the server can read them (SAE_TEST_LM) and builds a
-- Hugging Face cache holding one of them (SAE_TEST_HUB).
\getenv lm SAE_TEST_LM
\getenv hub SAE_TEST_HUB

SELECT sae_load_model('tiny-gpt2', :'lm' || '/gpt2') AS tiny_gpt2_id \gset
SELECT sae_load_model('tiny-neo', :'lm' || '/neo-bin') > :tiny_gpt2_id AS loaded;
SELECT sae_load_model('tiny-gpt2-sharded', :'lm' || '/gpt2-sharded') > 0 AS loaded;
SELECT sae_load_model('tiny-gpt2-tl', :'lm' || '/gpt2',
                      '{"fold_ln": true, "center_writing_weights": true, "center_unembed": true,
                        "fold_value_biases": true}') > 0 AS loaded;
SELECT name, hf_repo, architecture, config, options, weights_file LIKE '%/pytorch_model.bin' AS bin
FROM sae.models ORDER BY name;

-- loading again replaces the row (same id, new time) rather than adding one
SELECT sae_load_model('tiny-gpt2', :'lm' || '/gpt2') = :tiny_gpt2_id AS same_id;
SELECT count(*) FROM sae.models;

-- a new session loads the models again from the catalogue
\c
SELECT sae_to_tokens('tiny-gpt2-tl', 'Hello world') = sae_to_tokens('tiny-gpt2', 'Hello world') AS same_tokens;
SELECT bool_and(abs(m) < 1e-5) AS still_processed FROM (
    SELECT (SELECT avg(a) FROM unnest(activation) a) AS m
    FROM sae_run_with_cache('tiny-gpt2-tl', 'Hello world', 'blocks.0.hook_resid_pre')) t;

-- errors that name server paths are shown by SQLSTATE only
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- the tokenizer (TransformerLens: BOS first by default)
SELECT sae_to_tokens('tiny-gpt2', 'Hello world');
SELECT sae_to_tokens('tiny-gpt2', 'Hello world', false);
SELECT sae_to_str_tokens('tiny-gpt2', 'Hello world, it''s a test.');
SELECT sae_to_str_tokens('tiny-neo', E'two\n\nlines  and <|endoftext|> too', false);
SELECT sae_to_string('tiny-gpt2', sae_to_tokens('tiny-gpt2', 'round trip: héllo ✓ 日本', false))
       = 'round trip: héllo ✓ 日本' AS round_trip;
SELECT sae_to_string('tiny-gpt2', '{}');
-- to_tokens truncates to the context (64 here), as TransformerLens does
SELECT array_length(sae_to_tokens('tiny-gpt2', repeat('word ', 200)), 1);

-- generation: greedy is deterministic, a seed repeats a sample
SELECT sae_generate('tiny-gpt2', 'Once upon a time', 8, 0);
SELECT sae_generate('tiny-neo', 'Once upon a time', 8, 0.7, 42)
       = sae_generate('tiny-neo', 'Once upon a time', 8, 0.7, 42) AS repeatable;
SELECT sae_generate('tiny-neo', 'Once upon a time', 0);
SELECT length(sae_generate('tiny-neo', 'Once', 5, 1.0, NULL)) > 0 AS sampled;

-- test_prompt: rows per answer token and rank, and the printed report as a NOTICE
SELECT answer_index, answer_token, answer_rank, rank, token,
       round(logit::numeric, 2) AS logit, round(prob::numeric, 3) AS prob
FROM sae_test_prompt('tiny-gpt2', 'The cat sat on the', 'mat', 3);
-- the answer's own row has its logit; probabilities of the top k fall
SELECT bool_and(answer_rank >= 0) AND bool_and(prob <= 1) AND bool_and(prob > 0) AS sane
FROM sae_test_prompt('tiny-neo', 'A story', 'about two', 2);

-- per-token log-probs: the next token's log-prob, its rank, the top 5
SELECT pos, token, next_token, round(log_prob::numeric, 2) AS log_prob, rank,
       top_tokens, (SELECT round(sum(exp(l))::numeric, 2) FROM unnest(top_log_probs) l) AS top5_mass
FROM sae_token_log_probs('tiny-neo', 'The cat sat.');
-- the top prediction is at least as likely as the actual token, and is it exactly when its rank is 0
SELECT bool_and(top_log_probs[1] >= log_prob) AND bool_and((rank = 0) = (top_token_ids[1] = next_token_id))
       AS consistent, count(*) AS positions
FROM sae_token_log_probs('tiny-gpt2', 'Once upon a time there was a cat') WHERE pos < 13;

-- the HTML page: self-contained, escaped, one span per token
SELECT h LIKE '<!DOCTYPE html>%' AS html, h NOT LIKE '%http%' AS offline,
       h LIKE '%&lt;%' AND h LIKE '%&gt;%' AS escaped,
       (length(h) - length(replace(h, 'class="tok"', ''))) / length('class="tok"')
         = array_length(sae_to_tokens('tiny-gpt2', 'The cat <sat>'), 1) AS one_span_per_token
FROM sae_token_log_probs_html('tiny-gpt2', 'The cat <sat>') h;

-- run_with_cache: a hook's activation per position
SELECT pos, token_id, token, array_length(activation, 1) AS width
FROM sae_run_with_cache('tiny-gpt2', 'Hi there', 'blocks.0.hook_mlp_out');
SELECT array_length(activation, 1) AS pattern_width
FROM sae_run_with_cache('tiny-neo', 'Hi there', 'blocks.1.attn.hook_pattern') LIMIT 1;
-- each attention row (head by head) sums to 1
SELECT bool_and(abs(s - 1) < 1e-5) AS rows_sum_to_one FROM (
    SELECT pos, h, sum(a) AS s
    FROM sae_run_with_cache('tiny-neo', 'Hi there friend', 'blocks.1.attn.hook_pattern') c,
         LATERAL unnest(c.activation) WITH ORDINALITY AS u(a, i),
         LATERAL (SELECT (i - 1) / (SELECT array_length(sae_to_tokens('tiny-neo', 'Hi there friend'), 1))) AS hh(h)
    GROUP BY pos, h) t;
-- with TransformerLens's processing the residual stream is centred; unprocessed it is not
SELECT bool_and(abs(m) < 1e-5) AS centred FROM (
    SELECT (SELECT avg(a) FROM unnest(activation) a) AS m
    FROM sae_run_with_cache('tiny-gpt2-tl', 'Hello world', 'blocks.1.hook_resid_post')) t;
SELECT bool_and(abs(m) < 1e-5) AS centred FROM (
    SELECT (SELECT avg(a) FROM unnest(activation) a) AS m
    FROM sae_run_with_cache('tiny-gpt2', 'Hello world', 'blocks.1.hook_resid_post')) t;
-- processing leaves the log-probs alone
SELECT bool_and(abs(a.log_prob - b.log_prob) < 1e-4) AS same_log_probs
FROM sae_token_log_probs('tiny-gpt2', 'The cat sat on the mat') a
JOIN sae_token_log_probs('tiny-gpt2-tl', 'The cat sat on the mat') b USING (pos);
-- the sharded copy is the same model
SELECT bool_and(a.activation = b.activation) AS same
FROM sae_run_with_cache('tiny-gpt2', 'abc', 'hook_embed') a
JOIN sae_run_with_cache('tiny-gpt2-sharded', 'abc', 'hook_embed') b USING (pos);

-- by name through the Hugging Face cache (sae.hub_cache, a snapshot of symlinks to blobs)
SET sae.hub_cache = :'hub';
SELECT sae_load_model('sae-test/tiny-gpt2') > 0 AS loaded;
SELECT hf_repo, source_path LIKE '%/models--sae-test--tiny-gpt2/snapshots/%' AS in_snapshot
FROM sae.models WHERE name = 'sae-test/tiny-gpt2';
SELECT sae_generate('sae-test/tiny-gpt2', 'Once upon a time', 8, 0)
       = sae_generate('tiny-gpt2', 'Once upon a time', 8, 0) AS same_model;
-- not in the cache, downloads off
SELECT pg_temp.sqlstate_of($$SELECT sae_load_model('sae-test/absent')$$);
RESET sae.hub_cache;

-- bad input: an ERROR with a hint, nothing recorded
SELECT sae_load_model('x', 'relative/path');
SELECT sae_load_model('x', '/nonexistent/folder');
SELECT sae_load_model('x', '/nonexistent/folder', '{"fold": true}');
SELECT sae_load_model('x', '/nonexistent/folder', '[1]');
SELECT sae_load_model('', '/nonexistent/folder');
SELECT pg_temp.sqlstate_of(format('SELECT sae_load_model(%L, %L)', 'x', :'lm' || '/ref'));
SELECT count(*) FROM sae.models WHERE name = 'x';
SELECT sae_to_tokens('no-such-model', 'x');
SELECT * FROM sae_run_with_cache('tiny-gpt2', 'x', 'blocks.2.hook_mlp_out');
SELECT * FROM sae_run_with_cache('tiny-gpt2', 'x', 'blocks.0.hook_bogus');
SELECT * FROM sae_run_with_cache('tiny-gpt2', repeat('word ', 100), 'blocks.0.hook_mlp_out');
SELECT * FROM sae_run_with_cache('tiny-gpt2', '', 'blocks.0.hook_mlp_out', false);
SELECT sae_to_string('tiny-gpt2', ARRAY[5, 100000]);
SELECT sae_to_string('tiny-gpt2', ARRAY[5, NULL]);
SELECT sae_generate('tiny-gpt2', 'x', 1000);
SELECT sae_generate('tiny-gpt2', 'x', 5, -1);
SELECT * FROM sae_test_prompt('tiny-gpt2', 'x', 'y', 0);
SELECT * FROM sae_token_log_probs('tiny-gpt2', repeat('word ', 100));

-- reading server files needs pg_read_server_files; downloads need a superuser
CREATE ROLE sae_models_reader;
GRANT USAGE ON SCHEMA sae TO sae_models_reader;
GRANT SELECT ON sae.models TO sae_models_reader;
SET ROLE sae_models_reader;
SELECT sae_load_model('y', '/nonexistent/folder');
SET sae.allow_download = on;
SET sae.hub_cache = '/tmp';
-- a registered model can be used
SELECT sae_to_tokens('tiny-gpt2', 'Hello world');
RESET ROLE;
REVOKE ALL ON sae.models FROM sae_models_reader;
REVOKE ALL ON SCHEMA sae FROM sae_models_reader;
DROP ROLE sae_models_reader;
