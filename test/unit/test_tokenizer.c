/*
 * test_tokenizer.c — the GPT-2 byte-level BPE tokenizer against HF
 * tokenizers' output (test/fixtures/tokenizer/, made by
 * test/golden/make_tokenizer_fixtures.py): every case encodes to the
 * reference ids, decodes back to its input and shows the reference
 * per-token strings, for GPT-2's own vocabulary and for a small one loaded
 * from each file form.  Then the parts the fixtures can't show: special
 * tokens, prepend_bos, invalid UTF-8, the errors for bad files, and a
 * speed diagnostic.
 */
#include "unit.h"
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Path of test/fixtures/tokenizer/<rel>, whether run from test/unit or the repo root. */
static const char *
tok_fixture(const char *rel, char *buf, size_t size)
{
	static const char *const roots[] = {"../fixtures/tokenizer/", "test/fixtures/tokenizer/"};
	size_t		i;
	FILE	   *fp;

	for (i = 0; i < 2; i++)
	{
		snprintf(buf, size, "%s%s", roots[i], rel);
		if ((fp = fopen(buf, "rb")) != NULL)
		{
			fclose(fp);
			return buf;
		}
	}
	return buf;
}

/* Load a fixture tokenizer: "dir/tokenizer.json" or the slow files of "dir". */
static SaeTokenizer *
load_fixture(const char *dir, const char *json_name)
{
	char		p1[512],
				p2[512],
				rel[256];
	SaeTokenizer *tok = NULL;
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	if (json_name != NULL)
	{
		snprintf(rel, sizeof(rel), "%s/%s", dir, json_name);
		rc = sae_tokenizer_load_json(tok_fixture(rel, p1, sizeof(p1)), &tok, &err);
	}
	else
	{
		snprintf(rel, sizeof(rel), "%s/vocab.json", dir);
		tok_fixture(rel, p1, sizeof(p1));
		snprintf(rel, sizeof(rel), "%s/merges.txt", dir);
		rc = sae_tokenizer_load_files(p1, tok_fixture(rel, p2, sizeof(p2)), &tok, &err);
	}
	CHECK_MSG(rc == SAE_OK, "loading %s/%s: %s", dir, json_name ? json_name : "vocab.json", err.message);
	return tok;
}

/* hex -> bytes (malloc'd, NUL-terminated); *len gets the length. */
static char *
unhex(const char *hex, size_t n, size_t *len)
{
	char	   *out = malloc(n / 2 + 1);
	size_t		i;
	unsigned	v;

	for (i = 0; i + 1 < n; i += 2)
	{
		sscanf(hex + i, "%2x", &v);
		out[i / 2] = (char) v;
	}
	out[n / 2] = '\0';
	*len = n / 2;
	return out;
}

/* Parse "1,2,3" into ids. */
static void
parse_ids(const char *s, size_t n, SaeTokIds *ids)
{
	char	   *copy = strndup(s, n),
			   *p = copy,
			   *end;

	while (*p)
	{
		int32_t		v = (int32_t) strtol(p, &end, 10);

		ids->ids = realloc(ids->ids, (ids->len + 1) * sizeof(int32_t));
		ids->ids[ids->len++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	free(copy);
}

/* ids as "1,2,3" for messages (truncated). */
static const char *
ids_str(const int32_t *ids, size_t n, char *buf, size_t size)
{
	size_t		o = 0,
				i;

	buf[0] = '\0';
	for (i = 0; i < n && o + 16 < size; i++)
		o += (size_t) snprintf(buf + o, size - o, "%s%d", i ? "," : "", ids[i]);
	return buf;
}

/* bytes as hex, for messages (truncated) */
static const char *
hex_str(const char *s, size_t n, char *buf, size_t size)
{
	size_t		i;

	buf[0] = '\0';
	for (i = 0; i < n && 2 * i + 3 < size; i++)
		snprintf(buf + 2 * i, 3, "%02x", (unsigned char) s[i]);
	return buf;
}

/* One case: encode, decode, per-token strings, and prepend_bos. */
static void
check_case(SaeTokenizer *tok, const char *name, int line_no, const char *text, size_t len,
		   const SaeTokIds *want, const char *str_hex, size_t str_hex_len)
{
	SaeTokIds	got = {0},
				bos = {0};
	SaeTokBytes back = {0},
				s = {0};
	SaeError	err;
	char		b1[512],
				b2[512];
	bool		valid = false;
	size_t		i,
				pos = 0;

	memset(&err, 0, sizeof(err));
	REQUIRE(sae_tokenizer_encode(tok, text, len, 0, &got, &err) == SAE_OK);
	CHECK_MSG(got.len == want->len && (got.len == 0 || memcmp(got.ids, want->ids, got.len * sizeof(int32_t)) == 0),
			  "%s line %d: ids %s, want %s", name, line_no, ids_str(got.ids, got.len, b1, sizeof(b1)),
			  ids_str(want->ids, want->len, b2, sizeof(b2)));
	REQUIRE(sae_tokenizer_decode(tok, got.ids, got.len, 0, &back, &valid, &err) == SAE_OK);
	CHECK_MSG(back.len == len && (len == 0 || memcmp(back.data, text, len) == 0) && valid,
			  "%s line %d: decode does not give the input back", name, line_no);
	for (i = 0; i < got.len && i < want->len; i++)
	{
		size_t		n = strcspn(str_hex + pos, ",\n"),
					want_len;
		char	   *want_s = unhex(str_hex + pos, pos + n <= str_hex_len ? n : 0, &want_len);

		s.len = 0;
		CHECK(sae_tokenizer_token_str(tok, got.ids[i], &s, &err) == SAE_OK);
		CHECK_MSG(s.len == want_len && memcmp(s.data, want_s, want_len) == 0,
				  "%s line %d: token %zu (id %d) shows as %s, want %.*s", name, line_no, i,
				  got.ids[i], hex_str(s.data, s.len, b1, sizeof(b1)), (int) n, str_hex + pos);
		free(want_s);
		pos += n + 1;
	}
	if (sae_tokenizer_bos_id(tok) >= 0)
	{
		CHECK(sae_tokenizer_encode(tok, text, len, SAE_TOK_PREPEND_BOS, &bos, &err) == SAE_OK);
		CHECK_MSG(bos.len == got.len + 1 && bos.ids[0] == sae_tokenizer_bos_id(tok) &&
				  (got.len == 0 || memcmp(bos.ids + 1, got.ids, got.len * sizeof(int32_t)) == 0),
				  "%s line %d: prepend_bos is not [bos] + ids", name, line_no);
	}
	sae_tok_ids_free(&got);
	sae_tok_ids_free(&bos);
	sae_tok_bytes_free(&back);
	sae_tok_bytes_free(&s);
}

/* Run every case of dir/cases.tsv through tok; returns how many ran. */
static int
run_cases(SaeTokenizer *tok, const char *dir)
{
	char		path[512],
				rel[256],
				line[65536];
	FILE	   *fp;
	int			line_no = 0,
				n = 0;

	snprintf(rel, sizeof(rel), "%s/cases.tsv", dir);
	fp = fopen(tok_fixture(rel, path, sizeof(path)), "r");
	CHECK_MSG(fp != NULL, "cannot open %s", path);
	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
	{
		char	   *t1 = strchr(line, '\t'),
				   *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		SaeTokIds	want = {0};
		size_t		len;
		char	   *text;

		line_no++;
		if (line[0] == '#' || t2 == NULL)
			continue;
		text = unhex(line, (size_t) (t1 - line), &len);
		parse_ids(t1 + 1, (size_t) (t2 - t1 - 1), &want);
		check_case(tok, dir, line_no, text, len, &want, t2 + 1, strlen(t2 + 1));
		free(text);
		sae_tok_ids_free(&want);
		n++;
	}
	fclose(fp);
	return n;
}

/* The small vocabulary gives the reference ids from each of its three file forms. */
UNIT_TEST(small_vocab_all_file_forms)
{
	static const char *const forms[] = {NULL, "tokenizer.json", "tokenizer_legacy.json"};
	int			i;

	for (i = 0; i < 3; i++)
	{
		SaeTokenizer *tok = load_fixture("small", forms[i]);

		REQUIRE(tok != NULL);
		CHECK_INT_EQ(sae_tokenizer_vocab_size(tok), 1000);
		CHECK_INT_EQ(sae_tokenizer_bos_id(tok), 0);
		CHECK(sae_tokenizer_is_special(tok, 0));
		CHECK(run_cases(tok, "small") > 300);
		sae_tokenizer_free(tok);
	}
}

/* Added tokens beyond the model's vocabulary, leftmost-longest, special or not. */
UNIT_TEST(specials_vocab)
{
	SaeTokenizer *tok = load_fixture("specials", "tokenizer.json");

	REQUIRE(tok != NULL);
	CHECK_INT_EQ(sae_tokenizer_vocab_size(tok), 1004);
	CHECK(sae_tokenizer_is_special(tok, 1000));
	CHECK(!sae_tokenizer_is_special(tok, 1002));
	CHECK(run_cases(tok, "specials") >= 15);
	sae_tokenizer_free(tok);
}

/* GPT-2's real vocabulary: the reference ids of GPT2TokenizerFast for every case. */
UNIT_TEST(gpt2_vocab)
{
	SaeTokenizer *tok = load_fixture("gpt2", NULL);

	REQUIRE(tok != NULL);
	CHECK_INT_EQ(sae_tokenizer_vocab_size(tok), 50257);
	CHECK_INT_EQ(sae_tokenizer_bos_id(tok), 50256);
	CHECK_INT_EQ(sae_tokenizer_eos_id(tok), 50256);
	CHECK(run_cases(tok, "gpt2") > 300);
	sae_tokenizer_free(tok);
}

/* models.md §6: the byte map, the test vector, TransformerLens's to_tokens. */
UNIT_TEST(gpt2_known_values)
{
	SaeTokenizer *tok = load_fixture("gpt2", NULL);
	SaeTokIds	ids = {0};
	SaeError	err;
	size_t		len;
	const char *s;

	REQUIRE(tok != NULL);
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "!", 1), 0);
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc4\x8a", 2), 198); /* Ċ = \n */
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc4\xa0", 2), 220); /* Ġ = space */
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc3\xbf", 2), 187); /* ÿ = 0xFF */
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc4\xa0t", 3), 256);
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc4\xa0the", 5), 262);
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "\xc4\xa0SolidGoldMagikarp", 19), 43453);
	CHECK_INT_EQ(sae_tokenizer_token_to_id(tok, "nope nope", 9), -1);
	s = sae_tokenizer_token_symbol(tok, 995, &len);
	REQUIRE(s != NULL);
	CHECK_STR_EQ(s, "\xc4\xa0world");
	s = sae_tokenizer_token_bytes(tok, 995, &len);
	REQUIRE(s != NULL);
	CHECK(len == 6 && memcmp(s, " world", 6) == 0);
	CHECK(sae_tokenizer_token_bytes(tok, 50257, &len) == NULL);
	CHECK(sae_tokenizer_token_bytes(tok, -1, &len) == NULL);
	REQUIRE(sae_tokenizer_encode(tok, "Hello world", 11, SAE_TOK_PREPEND_BOS, &ids, &err) == SAE_OK);
	REQUIRE(ids.len == 3);
	CHECK_INT_EQ(ids.ids[0], 50256);
	CHECK_INT_EQ(ids.ids[1], 15496);
	CHECK_INT_EQ(ids.ids[2], 995);
	/* encode appends: a second document follows the first */
	REQUIRE(sae_tokenizer_encode(tok, "Hello world", 11, 0, &ids, &err) == SAE_OK);
	CHECK_INT_EQ(ids.len, 5);
	CHECK_INT_EQ(ids.ids[3], 15496);
	sae_tok_ids_free(&ids);
	sae_tokenizer_free(tok);
}

/* "<|endoftext|>" in text: one id by default, its characters with SPECIAL_AS_TEXT. */
UNIT_TEST(special_token_splitting)
{
	SaeTokenizer *tok = load_fixture("gpt2", NULL);
	static const char text[] = "a<|endoftext|>b";
	SaeTokIds	ids = {0};
	SaeTokBytes out = {0};
	SaeError	err;
	size_t		i;

	REQUIRE(tok != NULL);
	REQUIRE(sae_tokenizer_encode(tok, text, strlen(text), 0, &ids, &err) == SAE_OK);
	REQUIRE(ids.len == 3);
	CHECK_INT_EQ(ids.ids[0], 64);
	CHECK_INT_EQ(ids.ids[1], 50256);
	CHECK_INT_EQ(ids.ids[2], 65);
	REQUIRE(sae_tokenizer_decode(tok, ids.ids, ids.len, SAE_TOK_SKIP_SPECIAL, &out, NULL, &err) == SAE_OK);
	CHECK_STR_EQ(out.data, "ab");
	ids.len = 0;
	REQUIRE(sae_tokenizer_encode(tok, text, strlen(text), SAE_TOK_SPECIAL_AS_TEXT, &ids, &err) == SAE_OK);
	CHECK(ids.len > 3);
	for (i = 0; i < ids.len; i++)
		CHECK(ids.ids[i] != 50256);
	out.len = 0;
	REQUIRE(sae_tokenizer_decode(tok, ids.ids, ids.len, 0, &out, NULL, &err) == SAE_OK);
	CHECK_STR_EQ(out.data, text);
	sae_tok_ids_free(&ids);
	sae_tok_bytes_free(&out);
	sae_tokenizer_free(tok);
}

/* Invalid UTF-8: each bad sequence pre-tokenises like U+FFFD and round-trips. */
UNIT_TEST(invalid_utf8_round_trips)
{
	SaeTokenizer *tok = load_fixture("gpt2", NULL);
	SaeTokIds	ids = {0};
	SaeTokBytes out = {0};
	SaeError	err;
	bool		valid = true;
	uint64_t	x = 12345;
	char		buf[256];
	int			round,
				i;

	REQUIRE(tok != NULL);
	REQUIRE(sae_tokenizer_encode(tok, "a\xff" "b", 3, 0, &ids, &err) == SAE_OK);
	REQUIRE(ids.len == 3);
	CHECK_INT_EQ(ids.ids[0], 64);
	CHECK_INT_EQ(ids.ids[1], 187);
	CHECK_INT_EQ(ids.ids[2], 65);
	REQUIRE(sae_tokenizer_decode(tok, ids.ids + 1, 1, 0, &out, &valid, &err) == SAE_OK);
	CHECK(!valid);
	out.len = 0;
	CHECK(sae_tokenizer_token_str(tok, 187, &out, &err) == SAE_OK);
	CHECK_STR_EQ(out.data, "\xef\xbf\xbd");
	for (round = 0; round < 2000; round++)
	{
		size_t		n = (size_t) (round % 97) + 1;

		for (i = 0; i < (int) n; i++)
		{
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			buf[i] = (char) (round % 3 == 0 ? "a \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80'sx1\n"[(x >> 33) % 17] : (int) (x >> 56));
		}
		ids.len = 0;
		out.len = 0;
		REQUIRE(sae_tokenizer_encode(tok, buf, n, 0, &ids, &err) == SAE_OK);
		REQUIRE(sae_tokenizer_decode(tok, ids.ids, ids.len, 0, &out, &valid, &err) == SAE_OK);
		CHECK_MSG(out.len == n && memcmp(out.data, buf, n) == 0, "round %d does not round-trip", round);
		CHECK_MSG(valid == sae_utf8_valid(buf, n), "round %d: valid flag %d", round, valid);
	}
	sae_tok_ids_free(&ids);
	sae_tok_bytes_free(&out);
	sae_tokenizer_free(tok);
}

/* sae_utf8_lossy replaces exactly as Python's errors='replace' (values from Python). */
UNIT_TEST(utf8_lossy_matches_python)
{
	static const char *const cases[][2] = {
		{"\xe0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
		{"\xf0\x9f\x98", "\xef\xbf\xbd"},
		{"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
		{"a\xc3", "a\xef\xbf\xbd"},
		{"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
		{"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
		{"\xe2\x82\xac", "\xe2\x82\xac"},
		{"\xf0\x9f\x98\x80x\x80", "\xf0\x9f\x98\x80x\xef\xbf\xbd"},
	};
	SaeTokBytes out = {0};
	SaeError	err;
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		out.len = 0;
		CHECK(sae_utf8_lossy(cases[i][0], strlen(cases[i][0]), &out, &err) == SAE_OK);
		CHECK_MSG(strcmp(out.data, cases[i][1]) == 0, "case %zu", i);
		CHECK(sae_utf8_valid(cases[i][0], strlen(cases[i][0])) == (strcmp(cases[i][0], cases[i][1]) == 0));
	}
	sae_tok_bytes_free(&out);
}

/* Decoding an id that is no token names it and leaves the output as it was. */
UNIT_TEST(decode_unknown_id)
{
	SaeTokenizer *tok = load_fixture("small", NULL);
	SaeTokBytes out = {0};
	SaeError	err;
	int32_t		ids[] = {5, 1000};

	REQUIRE(tok != NULL);
	memset(&err, 0, sizeof(err));
	CHECK_INT_EQ(sae_tokenizer_decode(tok, ids, 2, 0, &out, NULL, &err), SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(err.message, "1000");
	CHECK_INT_EQ(out.len, 0);
	sae_tok_bytes_free(&out);
	sae_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * Bad files.  A base vocabulary is built here: the 256 byte tokens, "ab"
 * and "<|endoftext|>", with the one merge "a b"; each test breaks one thing.
 * ------------------------------------------------------------------------ */

/* GPT-2's byte -> code point map, independently of tokenizer.c. */
static unsigned
test_byte_cp(int b)
{
	int			n = 0,
				k;

	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return (unsigned) b;
	for (k = 0; k < b; k++)
		if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255)))
			n++;
	return 256 + (unsigned) n;
}

/* Append the JSON string for byte b's symbol. */
static size_t
put_symbol(char *out, int b)
{
	unsigned	cp = test_byte_cp(b);

	if (cp == '"' || cp == '\\')
		return (size_t) sprintf(out, "\"\\%c\"", (char) cp);
	if (cp < 0x80)
		return (size_t) sprintf(out, "\"%c\"", (char) cp);
	return (size_t) sprintf(out, "\"%c%c\"", (char) (0xC0 | (cp >> 6)), (char) (0x80 | (cp & 0x3F)));
}

/*
 * The base vocab.json, skipping byte `skip` (-1: none), with `extra`
 * appended inside the object (e.g. ", \"x\": 7").
 */
static char *
base_vocab(int skip, const char *extra)
{
	char	   *v = malloc(8192 + strlen(extra));
	size_t		o = 0;
	int			b;

	v[o++] = '{';
	for (b = 0; b < 256; b++)
	{
		if (b == skip)
			continue;
		o += put_symbol(v + o, b);
		o += (size_t) sprintf(v + o, ": %d, ", b);
	}
	o += (size_t) sprintf(v + o, "\"ab\": 256, \"<|endoftext|>\": 257%s}", extra);
	return v;
}

/* Load (vocab, merges) from memory expecting failure with code; returns the message. */
static SaeError
expect_slow_error(const char *vocab, const char *merges, SaeErrCode code)
{
	SaeTokenizer *tok = NULL;
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	rc = sae_tokenizer_from_files_text(vocab, strlen(vocab), "v.json", merges, strlen(merges),
									   "m.txt", &tok, &err);
	CHECK_MSG(rc == (int) code && tok == NULL, "got %d, want %d (message \"%s\")", rc, code, err.message);
	sae_tokenizer_free(tok);
	return err;
}

/* The base files load, merge "ab", and encode like the tokenizer they describe. */
UNIT_TEST(base_vocab_loads)
{
	char	   *vocab = base_vocab(-1, "");
	SaeTokenizer *tok = NULL;
	SaeTokIds	ids = {0};
	SaeError	err;

	memset(&err, 0, sizeof(err));
	REQUIRE(sae_tokenizer_from_files_text(vocab, strlen(vocab), "v.json", "#version: 0.2\r\na b\r\n", 20,
										  "m.txt", &tok, &err) == SAE_OK);
	CHECK_INT_EQ(sae_tokenizer_vocab_size(tok), 258);
	CHECK(sae_tokenizer_encode(tok, "abab a", 6, SAE_TOK_PREPEND_BOS, &ids, &err) == SAE_OK);
	REQUIRE(ids.len == 5);
	CHECK_INT_EQ(ids.ids[0], 257);
	CHECK_INT_EQ(ids.ids[1], 256);
	CHECK_INT_EQ(ids.ids[2], 256);
	CHECK_INT_EQ(ids.ids[3], 32);
	CHECK_INT_EQ(ids.ids[4], 97);
	CHECK(sae_tokenizer_set_bos_eos(tok, 5, 6, &err) == SAE_OK);
	CHECK_INT_EQ(sae_tokenizer_bos_id(tok), 5);
	CHECK(sae_tokenizer_set_bos_eos(tok, 999, 6, &err) == SAE_ERR_INVALID_PARAMETER);
	sae_tok_ids_free(&ids);
	sae_tokenizer_free(tok);
	free(vocab);
}

/* No "<|endoftext|>": no BOS, so prepend_bos is an error, not a silent no-op. */
UNIT_TEST(prepend_bos_without_bos)
{
	char	   *vocab = base_vocab(-1, "");
	SaeTokenizer *tok = NULL;
	SaeTokIds	ids = {0};
	SaeError	err;
	char	   *p = strstr(vocab, ", \"<|endoftext|>\": 257");

	memmove(p, p + strlen(", \"<|endoftext|>\": 257"), strlen(p + strlen(", \"<|endoftext|>\": 257")) + 1);
	memset(&err, 0, sizeof(err));
	REQUIRE(sae_tokenizer_from_files_text(vocab, strlen(vocab), "v.json", "a b\n", 4, "m.txt", &tok, &err) == SAE_OK);
	CHECK_INT_EQ(sae_tokenizer_bos_id(tok), -1);
	CHECK_INT_EQ(sae_tokenizer_encode(tok, "ab", 2, SAE_TOK_PREPEND_BOS, &ids, &err), SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(err.message, "BOS");
	CHECK(sae_tokenizer_encode(tok, "a<|endoftext|>", 14, 0, &ids, &err) == SAE_OK);
	CHECK(ids.len > 2);
	sae_tok_ids_free(&ids);
	sae_tokenizer_free(tok);
	free(vocab);
}

/* Missing files and malformed JSON name the file. */
UNIT_TEST(missing_and_malformed_files)
{
	SaeTokenizer *tok = NULL;
	SaeError	err;
	SaeError	e;

	memset(&err, 0, sizeof(err));
	CHECK_INT_EQ(sae_tokenizer_load_files("/nonexistent/vocab.json", "/nonexistent/merges.txt", &tok, &err),
				 SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(err.message, "/nonexistent/vocab.json");
	CHECK(tok == NULL);
	CHECK_INT_EQ(sae_tokenizer_load_json("/nonexistent/tokenizer.json", &tok, &err), SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(err.message, "could not open");
	e = expect_slow_error("{\"a\": 1,", "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "v.json");
	CHECK_CONTAINS(e.message, "JSON");
	e = expect_slow_error("[1, 2]", "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "not a JSON object");
	CHECK_INT_EQ(sae_tokenizer_from_json_text("{\"model\": 5}", 12, "t.json", &tok, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "t.json");
	CHECK_CONTAINS(err.message, "model");
}

/* Duplicate ids, duplicate strings, bad ids: each names the entry. */
UNIT_TEST(bad_vocab_entries)
{
	char	   *v;
	SaeError	e;

	v = base_vocab(-1, ", \"xyz\": 256");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "id 256 is used by both");
	CHECK_CONTAINS(e.message, "xyz");
	free(v);
	v = base_vocab(-1, ", \"ab\": 300");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "\"ab\" appears twice");
	free(v);
	v = base_vocab(-1, ", \"huge\": 99999999999");
	e = expect_slow_error(v, "", SAE_ERR_LIMIT);
	CHECK_CONTAINS(e.message, "\"huge\": id 99999999999 is out of range");
	free(v);
	v = base_vocab(-1, ", \"neg\": -1");
	e = expect_slow_error(v, "", SAE_ERR_LIMIT);
	CHECK_CONTAINS(e.message, "\"neg\"");
	free(v);
	v = base_vocab(-1, ", \"half\": 3.5");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "\"half\": the id is not an integer");
	free(v);
	v = base_vocab(-1, ", \"str\": \"7\"");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	free(v);
	v = base_vocab(-1, ", \"\": 400");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "empty");
	free(v);
	v = base_vocab('Q', "");
	e = expect_slow_error(v, "", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "no token for byte 0x51");
	free(v);
}

/* A token string over the size limit. */
UNIT_TEST(overlong_token)
{
	char	   *extra = malloc(SAE_TOK_MAX_TOKEN_BYTES + 64);
	char	   *v;
	SaeError	e;

	strcpy(extra, ", \"");
	memset(extra + 3, 'x', SAE_TOK_MAX_TOKEN_BYTES + 1);
	strcpy(extra + 3 + SAE_TOK_MAX_TOKEN_BYTES + 1, "\": 400");
	v = base_vocab(-1, extra);
	e = expect_slow_error(v, "", SAE_ERR_LIMIT);
	CHECK_CONTAINS(e.message, "more than the 4096 allowed");
	free(v);
	free(extra);
}

/* Merges with unknown halves, an unknown result, or a malformed line name the line. */
UNIT_TEST(bad_merges)
{
	char	   *v = base_vocab(-1, "");
	SaeError	e;

	e = expect_slow_error(v, "#version: 0.2\na b\nqq b\n", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "m.txt: line 3");
	CHECK_CONTAINS(e.message, "\"qq\" is not in the vocabulary");
	e = expect_slow_error(v, "a c\n", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "line 1: the merged token \"ac\" is not in the vocabulary");
	e = expect_slow_error(v, "a b\nab\n", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "line 2");
	CHECK_CONTAINS(e.message, "two tokens separated by one space");
	e = expect_slow_error(v, "a  b\n", SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "line 1");
	free(v);
}

/* Build a tokenizer.json around the base vocabulary. */
static char *
base_json(const char *merges, const char *model_extra, const char *top_extra)
{
	char	   *vocab = base_vocab(-1, "");
	char	   *j = malloc(strlen(vocab) + strlen(merges) + strlen(model_extra) + strlen(top_extra) + 512);

	sprintf(j, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 257, \"content\": \"<|endoftext|>\", "
			"\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
			"\"add_prefix_space\": false, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"}%s, "
			"\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": %s, \"merges\": %s%s}}",
			top_extra, vocab, merges, model_extra);
	free(vocab);
	return j;
}

/* Load a tokenizer.json text expecting code; returns the error. */
static SaeError
expect_json_error(char *text, SaeErrCode code)
{
	SaeTokenizer *tok = NULL;
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	rc = sae_tokenizer_from_json_text(text, strlen(text), "t.json", &tok, &err);
	CHECK_MSG(rc == (int) code, "got %d, want %d (message \"%s\")", rc, code, err.message);
	sae_tokenizer_free(tok);
	free(text);
	return err;
}

/* tokenizer.json: both merge forms, and what it refuses. */
UNIT_TEST(tokenizer_json_checks)
{
	SaeError	e;

	expect_json_error(base_json("[\"a b\"]", "", ""), SAE_OK);
	expect_json_error(base_json("[[\"a\", \"b\"]]", "", ""), SAE_OK);
	e = expect_json_error(base_json("[[\"a\", \"zz\"]]", "", ""), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "t.json: model.merges[0]: \"zz\" is not in the vocabulary");
	e = expect_json_error(base_json("[[\"a\"]]", "", ""), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "model.merges[0] is neither");
	e = expect_json_error(base_json("{}", "", ""), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "model.merges is not an array");
	e = expect_json_error(base_json("[]", ", \"continuing_subword_prefix\": \"##\"", ""), SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(e.message, "continuing_subword_prefix");
	e = expect_json_error(base_json("[]", ", \"dropout\": 0.1", ""), SAE_ERR_NOT_SUPPORTED);
	e = expect_json_error(base_json("[]", ", \"type\": \"WordPiece\"", ""), SAE_ERR_NOT_SUPPORTED);
	e = expect_json_error(base_json("[]", "", ", \"normalizer\": {\"type\": \"NFC\"}"), SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(e.message, "normalizer");
	e = expect_json_error(base_json("[]", "", ", \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}"),
						  SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(e.message, "add_prefix_space");
	e = expect_json_error(base_json("[]", "", ", \"added_tokens\": [{\"id\": 257, \"content\": \"<|endoftext|>\", \"lstrip\": true}]"),
						  SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(e.message, "added_tokens[0]");
	e = expect_json_error(base_json("[]", "", ", \"added_tokens\": [{\"id\": 256, \"content\": \"<|x|>\"}]"),
						  SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(e.message, "id 256 is used by both \"ab\" and \"<|x|>\"");
	e = expect_json_error(base_json("[]", "", ", \"added_tokens\": [{\"id\": 9000000, \"content\": \"<|x|>\"}]"),
						  SAE_ERR_LIMIT);
	CHECK_CONTAINS(e.message, "added_tokens[0] \"<|x|>\": id 9000000 is out of range");
}

/* ignore_merges: a piece that is itself a token needs no merge path. */
UNIT_TEST(ignore_merges)
{
	char	   *vocab = base_vocab(-1, ", \"abc\": 258");
	char	   *j = malloc(strlen(vocab) + 1024);
	SaeTokenizer *tok = NULL;
	SaeTokIds	ids = {0};
	SaeError	err;
	int			pass;

	memset(&err, 0, sizeof(err));
	for (pass = 0; pass < 2; pass++)
	{
		sprintf(j, "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": %s, "
				"\"merges\": [\"a b\"], \"ignore_merges\": %s}}", vocab, pass ? "true" : "false");
		REQUIRE(sae_tokenizer_from_json_text(j, strlen(j), "t.json", &tok, &err) == SAE_OK);
		ids.len = 0;
		CHECK(sae_tokenizer_encode(tok, "abc", 3, 0, &ids, &err) == SAE_OK);
		if (pass)
			CHECK(ids.len == 1 && ids.ids[0] == 258);
		else
			CHECK(ids.len == 2 && ids.ids[0] == 256 && ids.ids[1] == 'c');
		sae_tokenizer_free(tok);
	}
	sae_tok_ids_free(&ids);
	free(vocab);
	free(j);
}

/* ------------------------------------------------------------------------
 * Speed (a diagnostic, no assertion on time)
 * ------------------------------------------------------------------------ */

/* About n bytes of varied text: words, numbers, punctuation, other scripts. */
static char *
speed_text(size_t n, size_t *len)
{
	static const char *const words[] = {
		"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "with", "as", "was", "on",
		"Lily", "once", "upon", "time", "little", "girl", "happy", "played", "tokenizer",
		"activation", "sparse", "autoencoder", "feature", "1234", "3.14", "don't", "we're",
		"Привет", "мир", "你好", "世界", "naïve", "café", "😀", ",", ".", "!", "?", "\n", "\n\n", "  ",
	};
	char	   *t = malloc(n + 64);
	size_t		o = 0;
	uint64_t	x = 42;

	while (o < n)
	{
		const char *w;

		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		w = words[(x >> 33) % (sizeof(words) / sizeof(words[0]))];
		if (((x >> 20) & 3) != 0 && w[0] != '\n')
			t[o++] = ' ';
		if (((x >> 40) & 63) == 0)
			o += (size_t) sprintf(t + o, "w%u", (unsigned) (x >> 45) % 100000);	/* rare words */
		else
		{
			memcpy(t + o, w, strlen(w));
			o += strlen(w);
		}
	}
	*len = o;
	return t;
}

/* Encode ~1 MB with GPT-2's vocabulary; print tokens/s; check it round-trips. */
UNIT_TEST(speed_diagnostic)
{
	SaeTokenizer *tok = load_fixture("gpt2", NULL);
	SaeTokenizer *fresh = load_fixture("gpt2", NULL);
	size_t		len;
	char	   *text = speed_text(1 << 20, &len);
	SaeTokIds	ids = {0},
				again = {0};
	SaeTokBytes out = {0};
	SaeError	err;
	struct timespec t0,
				t1;
	double		secs;

	REQUIRE(tok != NULL && fresh != NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	REQUIRE(sae_tokenizer_encode(tok, text, len, 0, &ids, &err) == SAE_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double) (t1.tv_sec - t0.tv_sec) + 1e-9 * (double) (t1.tv_nsec - t0.tv_nsec);
	unit_note("encoded %zu bytes into %zu GPT-2 tokens in %.3f s: %.2f M tokens/s, %.1f MB/s",
			  len, ids.len, secs, (double) ids.len / secs / 1e6, (double) len / secs / 1e6);
	REQUIRE(sae_tokenizer_decode(tok, ids.ids, ids.len, 0, &out, NULL, &err) == SAE_OK);
	CHECK(out.len == len && memcmp(out.data, text, len) == 0);
	/* a warm cache and a fresh one give the same ids */
	REQUIRE(sae_tokenizer_encode(tok, text, len, 0, &again, &err) == SAE_OK);
	REQUIRE(sae_tokenizer_encode(fresh, text, len, 0, &again, &err) == SAE_OK);
	REQUIRE(again.len == 2 * ids.len);
	CHECK(memcmp(again.ids, ids.ids, ids.len * sizeof(int32_t)) == 0);
	CHECK(memcmp(again.ids + ids.len, ids.ids, ids.len * sizeof(int32_t)) == 0);
	sae_tok_ids_free(&ids);
	sae_tok_ids_free(&again);
	sae_tok_bytes_free(&out);
	sae_tokenizer_free(tok);
	sae_tokenizer_free(fresh);
	free(text);
}
