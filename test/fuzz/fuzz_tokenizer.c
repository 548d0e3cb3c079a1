/*
 * fuzz_tokenizer.c — libFuzzer target for the GPT-2 byte-level BPE
 * tokenizer (src/core/tokenizer.c) on arbitrary bytes.
 *
 * The input is text, valid UTF-8 or not.  With the small fixture
 * vocabulary (test/fixtures/tokenizer/small, loaded once from the
 * repository root, or from $SAE_FUZZ_TOKENIZER_DIR) it checks:
 *   - decode(encode(x)) == x, with added tokens split out or not, and with
 *     the added tokens of the "specials" fixture;
 *   - every id is a token, and the valid-UTF-8 flag agrees with the input;
 *   - vocab.json + merges.txt and tokenizer.json give the same ids;
 *   - SAE_TOK_SPECIAL_AS_TEXT never yields an added token, and
 *     SAE_TOK_PREPEND_BOS is the BOS followed by the same ids;
 *   - each token's lossy string is valid UTF-8.
 *
 * Good seeds are the inputs of test/fixtures/tokenizer/small/cases.tsv
 * (hex, first column); good dictionary words are "<|endoftext|>", "<|end",
 * "<|pad|>", "xyzzy", " hello", the contractions ('s 't 're 've 'm 'll 'd),
 * and multi-byte spaces, marks and emoji ("Â ", "ã",
 * "Ì", "â", "ð").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SaeTokenizer *slow_tok,
		   *json_tok,
		   *special_tok;

/* Load one fixture tokenizer or stop: a fuzz run without it tests nothing. */
static SaeTokenizer *
load(const char *dir, const char *a, const char *b)
{
	char		p1[1024],
				p2[1024];
	SaeTokenizer *tok = NULL;
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	snprintf(p1, sizeof(p1), "%s/%s", dir, a);
	if (b != NULL)
	{
		snprintf(p2, sizeof(p2), "%s/%s", dir, b);
		rc = sae_tokenizer_load_files(p1, p2, &tok, &err);
	}
	else
		rc = sae_tokenizer_load_json(p1, &tok, &err);
	if (rc != SAE_OK)
	{
		fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root or set SAE_FUZZ_TOKENIZER_DIR)\n",
				err.message);
		abort();
	}
	return tok;
}

/* The three tokenizers, loaded on first use. */
static void
setup(void)
{
	const char *root = getenv("SAE_FUZZ_TOKENIZER_DIR");
	char		small[1024],
				specials[1024];

	if (slow_tok != NULL)
		return;
	if (root == NULL)
		root = "test/fixtures/tokenizer";
	snprintf(small, sizeof(small), "%s/small", root);
	snprintf(specials, sizeof(specials), "%s/specials", root);
	slow_tok = load(small, "vocab.json", "merges.txt");
	json_tok = load(small, "tokenizer.json", NULL);
	special_tok = load(specials, "tokenizer.json", NULL);
}

/* Encode with flags (must succeed), check the ids are tokens, decode back to the input. */
static void
round_trip(SaeTokenizer *tok, const char *text, size_t n, int flags, SaeTokIds *ids)
{
	SaeTokBytes out = {0};
	SaeError	err;
	bool		valid;
	size_t		i,
				start = (flags & SAE_TOK_PREPEND_BOS) ? 1 : 0;

	ids->len = 0;
	if (sae_tokenizer_encode(tok, text, n, flags, ids, &err) != SAE_OK)
		abort();
	for (i = 0; i < ids->len; i++)
		if (ids->ids[i] < 0 || ids->ids[i] >= sae_tokenizer_vocab_size(tok) ||
			sae_tokenizer_token_bytes(tok, ids->ids[i], &(size_t) {0}) == NULL)
			abort();
	if (sae_tokenizer_decode(tok, ids->len > start ? ids->ids + start : NULL, ids->len - start, 0,
							 &out, &valid, &err) != SAE_OK)
		abort();
	if (out.len != n || (n > 0 && memcmp(out.data, text, n) != 0))
		abort();
	if (valid != sae_utf8_valid(text, n))
		abort();
	sae_tok_bytes_free(&out);
}

/* SPECIAL_AS_TEXT never produces an added token; PREPEND_BOS is bos + the same ids. */
static void
check_flags(SaeTokenizer *tok, const char *text, size_t n, const SaeTokIds *plain)
{
	SaeTokIds	ids = {0};
	size_t		i;

	round_trip(tok, text, n, SAE_TOK_SPECIAL_AS_TEXT, &ids);
	for (i = 0; i < ids.len; i++)
		if (sae_tokenizer_is_special(tok, ids.ids[i]))
			abort();
	round_trip(tok, text, n, SAE_TOK_PREPEND_BOS, &ids);
	if (ids.len != plain->len + 1 || ids.ids[0] != sae_tokenizer_bos_id(tok) ||
		(plain->len > 0 && memcmp(ids.ids + 1, plain->ids, plain->len * sizeof(int32_t)) != 0))
		abort();
	sae_tok_ids_free(&ids);
}

/* Each token's to_str_tokens string is valid UTF-8. */
static void
check_strs(SaeTokenizer *tok, const SaeTokIds *ids)
{
	SaeTokBytes s = {0};
	SaeError	err;
	size_t		i;

	for (i = 0; i < ids->len; i++)
	{
		s.len = 0;
		if (sae_tokenizer_token_str(tok, ids->ids[i], &s, &err) != SAE_OK || !sae_utf8_valid(s.data, s.len))
			abort();
	}
	sae_tok_bytes_free(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *) data;
	SaeTokIds	a = {0},
				b = {0},
				c = {0};

	setup();
	round_trip(slow_tok, text, size, 0, &a);
	round_trip(json_tok, text, size, 0, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.ids, b.ids, a.len * sizeof(int32_t)) != 0))
		abort();
	check_flags(slow_tok, text, size, &a);
	check_strs(slow_tok, &a);
	round_trip(special_tok, text, size, 0, &c);
	sae_tok_ids_free(&a);
	sae_tok_ids_free(&b);
	sae_tok_ids_free(&c);
	return 0;
}
