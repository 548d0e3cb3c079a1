/*
 * test_json.c — the JSON parser: a corpus of valid and invalid documents
 * in the spirit of JSONTestSuite (written here, case by case), the decoded
 * values of strings and numbers, nesting limits, duplicate keys, and error
 * messages that name the byte offset.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>

#include "json.h"

typedef struct JsonCase
{
	const char *text;
	size_t		len;
} JsonCase;

/* A case is its bytes, NULs included, without the literal's terminator. */
#define LIT(s) {s, sizeof(s) - 1}

/* Parse text, returning the code; the tree is freed. */
static int
parse_code(const char *text, size_t len, SaeError *err)
{
	SaeJson    *j = NULL;
	int			rc;

	memset(err, 0, sizeof(*err));
	rc = sae_json_parse(text, len, &j, err);
	if (rc == SAE_OK)
		CHECK(j != NULL);
	else
		CHECK(j == NULL);
	sae_json_free(j);
	return rc;
}

/* Print a case readably in a failure message (non-ASCII as \xNN). */
static const char *
show(const char *text, size_t len, char *buf, size_t size)
{
	size_t		o = 0;

	for (size_t i = 0; i < len && o + 5 < size; i++)
	{
		unsigned char c = (unsigned char) text[i];

		if (c >= 0x20 && c < 0x7f)
			buf[o++] = (char) c;
		else
			o += snprintf(buf + o, size - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

UNIT_TEST(accepts_valid_corpus)
{
	static const JsonCase cases[] = {
		LIT("[]"), LIT("{}"), LIT(" [1] "), LIT("\t\r\n[\t1\r,\n2 ]\n"), LIT("\"abc\""), LIT("123"),
		LIT("-0"), LIT("0"), LIT("0.5"), LIT("-0.0"), LIT("1e10"), LIT("1E+2"), LIT("1e-2"), LIT("-1.5e-3"),
		LIT("0e0"), LIT("true"), LIT("false"), LIT("null"), LIT("[1,[2,[3]]]"), LIT("{\"a\":{\"b\":[]}}"),
		LIT("[true,false,null]"), LIT("{\"\":0}"), LIT("[\"\"]"), LIT("\"\\u0000\""),
		LIT("\"\\ud83d\\ude00\""), LIT("\"\\u00e9\\u00E9\""), LIT("\"\xc3\xa9\""),
		LIT("\"\\/\\\\\\\"\\b\\f\\n\\r\\t\""), LIT("[1e-400]"), LIT("{\"a\":1,\"a\":2}"),
		LIT("\"\xef\xbf\xbf\""), LIT("\"\xf0\x9f\x98\x80\""), LIT("\"\xf4\x8f\xbf\xbf\""),
		LIT("[-9223372036854775808]"), LIT("9223372036854775808"),
		LIT("1.7976931348623157e308"), LIT("[[],{},[{}]]"), LIT("{\"a\" : [ ] , \"b\" : { } }"),
		LIT("\"\\u2028\\u2029\""), LIT("\"\x7f\""), LIT("[123456789012345678901234567890]"),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;
		char		buf[256];
		size_t		len = cases[i].len;
		int			rc = parse_code(cases[i].text, len, &err);

		CHECK_MSG(rc == SAE_OK, "valid case %zu '%s' rejected: %s", i,
				  show(cases[i].text, len, buf, sizeof(buf)), err.message);
	}
}

UNIT_TEST(rejects_invalid_corpus)
{
	static const JsonCase cases[] = {
		LIT(""), LIT(" "), LIT("["), LIT("]"), LIT("[1,]"), LIT("[,1]"), LIT("[,]"), LIT("{\"a\":1,}"), LIT("{\"a\")"),
		LIT("{a:1}"), LIT("{'a':1}"), LIT("{\"a\" 1}"), LIT("[1 2]"), LIT("01"), LIT("-01"), LIT("-"), LIT("1."),
		LIT(".5"), LIT("1e"), LIT("1e+"), LIT("+1"), LIT("0x10"), LIT("NaN"), LIT("Infinity"), LIT("-Infinity"),
		LIT("1e400"), LIT("-1e400"), LIT("tru"), LIT("True"), LIT("nul"), LIT("\"abc"), LIT("\"\\x\""),
		LIT("\"\\u12\""), LIT("\"\\u12G4\""), LIT("\"\\ud800\""), LIT("\"\\udc00\""),
		LIT("\"\\ud800\\u0041\""), LIT("\"\\ud800x\""), LIT("\"\\ud800\\\""), LIT("\"a\tb\""),
		LIT("\"a\nb\""), LIT("\"a\0b\""), LIT("\"\xc0\x80\""), LIT("\"\xc1\xbf\""),
		LIT("\"\xe0\x80\xaf\""), LIT("\"\xed\xa0\x80\""), LIT("\"\xf0\x80\x80\xaf\""),
		LIT("\"\xf4\x90\x80\x80\""), LIT("\"\xf5\x80\x80\x80\""), LIT("\"\xff\""), LIT("\"\x80\""),
		LIT("\"\xe2\x82\""), LIT("\"\xe2\x82\"x"), LIT("\xef\xbb\xbf[]"), LIT("[1]x"), LIT("[1] [2]"),
		LIT("{\"a\":1}}"), LIT("\0"), LIT("[1]\0"), LIT("//c\n[]"), LIT("[1,2"), LIT("{\"a\":1 \"b\":2}"),
		LIT("[\"a\" \"b\"]"), LIT("[\x0b]"), LIT("\xc2\xa0[]"), LIT("[1.0e]"), LIT("[- 1]"), LIT("[1e1.5]"),
		LIT("{\"a\":}"), LIT("{:1}"), LIT("{\"a\"::1}"), LIT("[\"\\u00\"]"), LIT("[\"\\"), LIT("\"\\"),
		LIT("{\"a\":1"), LIT("{1:1}"), LIT("[null,]"), LIT("[1,,2]"), LIT("'a'"), LIT("[\"a\\\"]"),
		LIT("[0.]"), LIT("[.0]"), LIT("[00]"), LIT("[1e-]"), LIT("[-]"), LIT("[--1]"), LIT("truefalse"),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;
		char		buf[256];
		size_t		len = cases[i].len;
		int			rc = parse_code(cases[i].text, len, &err);

		CHECK_MSG(rc != SAE_OK, "invalid case %zu '%s' accepted", i,
				  show(cases[i].text, len, buf, sizeof(buf)));
		CHECK_MSG(rc == SAE_OK || rc == (int) err.code, "case %zu: code %d, err.code %d", i, rc, err.code);
		CHECK_MSG(rc == SAE_OK || strstr(err.message, "byte") != NULL,
				  "case %zu: message has no byte offset: %s", i, err.message);
	}
}

UNIT_TEST(error_names_byte_offset)
{
	SaeError	err;

	CHECK_INT_EQ(parse_code("[1,]", 4, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "byte 3");
	CHECK_CONTAINS(err.message, "']'");
	CHECK_INT_EQ(parse_code("{\"k\": tru}", 10, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "byte 6");
	CHECK_INT_EQ(parse_code("[\"ab\xff\"]", 6, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "byte 4");
	CHECK_CONTAINS(err.message, "UTF-8");
	CHECK_INT_EQ(parse_code("  [1", 4, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "end of the text");
	CHECK_INT_EQ(parse_code("[\"x\\ud800\"]", 11, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "surrogate");
	CHECK_CONTAINS(err.message, "byte 3");
}

UNIT_TEST(every_truncation_fails)
{
	const char *doc = "{\"a\":[1,2.5,\"x\\u00e9\\ud83d\\ude00\",true],\"b\":{\"c\":null}}";
	size_t		n = strlen(doc);

	CHECK_INT_EQ(parse_code(doc, n, &(SaeError) {0}), SAE_OK);
	for (size_t k = 0; k < n; k++)
	{
		SaeError	err;

		CHECK_MSG(parse_code(doc, k, &err) != SAE_OK, "prefix of %zu bytes accepted", k);
	}
}

UNIT_TEST(strings_decode)
{
	SaeJson    *j = NULL;
	SaeError	err;
	const char *text = "[\"\\ud83d\\ude00\", \"\\u00e9\xc3\xa9\", \"a\\u0000b\", "
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u20AC\", \"\"]";

	REQUIRE(sae_json_parse(text, strlen(text), &j, &err) == SAE_OK);
	REQUIRE(j->type == SAE_JSON_ARRAY && j->count == 6);
	CHECK_INT_EQ(j->items[0].length, 4);
	CHECK(memcmp(j->items[0].string, "\xf0\x9f\x98\x80", 5) == 0);
	CHECK_STR_EQ(j->items[1].string, "\xc3\xa9\xc3\xa9");
	CHECK_INT_EQ(j->items[2].length, 3);
	CHECK(memcmp(j->items[2].string, "a\0b", 4) == 0);
	CHECK_STR_EQ(j->items[3].string, "\"\\/\b\f\n\r\t");
	CHECK_STR_EQ(j->items[4].string, "\xe2\x82\xac");
	CHECK_INT_EQ(j->items[5].length, 0);
	CHECK_STR_EQ(j->items[5].string, "");
	sae_json_free(j);
}

UNIT_TEST(numbers_decode)
{
	SaeJson    *j = NULL;
	SaeError	err;
	const char *text = "[0, -0, 42, -7, 0.1, 1e2, 2.5E-3, 9007199254740993, "
		"-9223372036854775808, 9223372036854775808, 4.9e-324, 1e-400]";

	REQUIRE(sae_json_parse(text, strlen(text), &j, &err) == SAE_OK);
	REQUIRE(j->count == 12);
	CHECK(j->items[0].is_integer && j->items[0].integer == 0);
	CHECK(j->items[1].is_integer && j->items[1].integer == 0 && signbit(j->items[1].number));
	CHECK(j->items[2].is_integer && j->items[2].integer == 42 && j->items[2].number == 42.0);
	CHECK(j->items[3].is_integer && j->items[3].integer == -7);
	CHECK(!j->items[4].is_integer && j->items[4].number == 0.1);
	CHECK(!j->items[5].is_integer && j->items[5].number == 100.0);
	CHECK(!j->items[6].is_integer && j->items[6].number == 2.5e-3);
	CHECK(j->items[7].is_integer && j->items[7].integer == 9007199254740993LL);
	CHECK(j->items[8].is_integer && j->items[8].integer == (-9223372036854775807LL - 1));
	CHECK_MSG(!j->items[9].is_integer, "2^63 does not fit a long long");
	CHECK(j->items[9].number == 9223372036854775808.0);
	CHECK(j->items[10].number == 4.9e-324);
	CHECK(j->items[11].number == 0.0);
	for (size_t i = 0; i < j->count; i++)
		CHECK_INT_EQ(j->items[i].type, SAE_JSON_NUMBER);
	sae_json_free(j);
}

UNIT_TEST(literals_and_types)
{
	SaeJson    *j = NULL;
	SaeError	err;
	const char *text = "{\"t\":true,\"f\":false,\"n\":null,\"s\":\"x\",\"a\":[1],\"o\":{}}";

	REQUIRE(sae_json_parse(text, strlen(text), &j, &err) == SAE_OK);
	CHECK_INT_EQ(j->type, SAE_JSON_OBJECT);
	CHECK_INT_EQ(j->count, 6);
	CHECK(sae_json_get(j, "t")->type == SAE_JSON_BOOL && sae_json_get(j, "t")->boolean);
	CHECK(sae_json_get(j, "f")->type == SAE_JSON_BOOL && !sae_json_get(j, "f")->boolean);
	CHECK_INT_EQ(sae_json_get(j, "n")->type, SAE_JSON_NULL);
	CHECK_INT_EQ(sae_json_get(j, "s")->type, SAE_JSON_STRING);
	CHECK_INT_EQ(sae_json_get(j, "a")->type, SAE_JSON_ARRAY);
	CHECK_INT_EQ(sae_json_get(j, "o")->type, SAE_JSON_OBJECT);
	CHECK(sae_json_get(j, "missing") == NULL);
	CHECK(sae_json_get(sae_json_get(j, "a"), "x") == NULL);
	CHECK(sae_json_get(NULL, "x") == NULL);
	CHECK_STR_EQ(j->keys[3], "s");
	CHECK_INT_EQ(j->key_lengths[3], 1);
	sae_json_free(j);
}

UNIT_TEST(duplicate_keys_keep_all_get_last)
{
	SaeJson    *j = NULL;
	SaeError	err;
	const char *text = "{\"a\":1,\"b\":2,\"a\":3}";

	REQUIRE(sae_json_parse(text, strlen(text), &j, &err) == SAE_OK);
	CHECK_INT_EQ(j->count, 3);
	CHECK_INT_EQ(sae_json_get(j, "a")->integer, 3);
	CHECK_INT_EQ(sae_json_get(j, "b")->integer, 2);
	CHECK_INT_EQ(j->items[0].integer, 1);
	sae_json_free(j);
}

UNIT_TEST(keys_with_nul_are_compared_by_length)
{
	SaeJson    *j = NULL;
	SaeError	err;
	const char *text = "{\"a\\u0000b\":1,\"a\":2}";

	REQUIRE(sae_json_parse(text, strlen(text), &j, &err) == SAE_OK);
	CHECK_INT_EQ(j->key_lengths[0], 3);
	CHECK_INT_EQ(sae_json_get(j, "a")->integer, 2);
	sae_json_free(j);
}

/* n '[' then n ']' */
static char *
nested_arrays(size_t n)
{
	char	   *s = malloc(2 * n + 1);

	if (s == NULL)
		return NULL;
	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\0';
	return s;
}

UNIT_TEST(nesting_limit)
{
	char	   *ok = nested_arrays(SAE_JSON_MAX_DEPTH);
	char	   *deep = nested_arrays(SAE_JSON_MAX_DEPTH + 1);
	char	   *huge = nested_arrays(1000000);
	SaeError	err;

	REQUIRE(ok && deep && huge);
	CHECK_INT_EQ(parse_code(ok, strlen(ok), &err), SAE_OK);
	CHECK_INT_EQ(parse_code(deep, strlen(deep), &err), SAE_ERR_LIMIT);
	CHECK_CONTAINS(err.message, "nesting deeper than 256");
	CHECK_CONTAINS(err.message, "byte 256");
	CHECK_INT_EQ(parse_code(huge, strlen(huge), &err), SAE_ERR_LIMIT);
	memset(huge, '{', 300);
	CHECK_INT_EQ(parse_code(huge, 300, &err), SAE_ERR_INVALID_DATA);
	for (int i = 0; i < 300; i++)
		memcpy(huge + 5 * i, "{\"\":", 4), huge[5 * i + 4] = ' ';
	CHECK_INT_EQ(parse_code(huge, 1500, &err), SAE_ERR_LIMIT);
	free(ok);
	free(deep);
	free(huge);
}

UNIT_TEST(large_array_and_long_number)
{
	size_t		n = 200000;
	char	   *s = malloc(2 * n + 2);
	char		num[1100];
	SaeJson    *j = NULL;
	SaeError	err;

	REQUIRE(s != NULL);
	s[0] = '[';
	for (size_t i = 0; i < n; i++)
	{
		s[1 + 2 * i] = (char) ('0' + i % 10);
		s[2 + 2 * i] = (i + 1 < n) ? ',' : ']';
	}
	REQUIRE(sae_json_parse(s, 2 * n + 1, &j, &err) == SAE_OK);
	CHECK_INT_EQ(j->count, n);
	CHECK_INT_EQ(j->items[n - 1].integer, (long long) ((n - 1) % 10));
	sae_json_free(j);
	free(s);

	memset(num, '1', sizeof(num));
	CHECK_INT_EQ(parse_code(num, 1024, &err), SAE_ERR_INVALID_DATA);	/* 1.1e1023: too big */
	CHECK_INT_EQ(parse_code(num, 1025, &err), SAE_ERR_LIMIT);
	CHECK_CONTAINS(err.message, "1025 characters");
	num[0] = '0';
	num[1] = '.';
	CHECK_INT_EQ(parse_code(num, 1000, &err), SAE_OK);
}
