/*
 * test_safetensors.c — the safetensors reader: files written by the
 * safetensors library (test/fixtures/models, made by
 * test/golden/make_model_fixtures.py) read back bit-exactly against the
 * float32 values torch gives, a sharded checkpoint through its index, the
 * dtype conversions over every 16-bit pattern, and a long list of broken
 * headers, each of which must be an error that names the file (and the
 * tensor) rather than a crash.
 */
#include "unit.h"
#include "helpers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"

/* out's float32 bits equal the expected ones, element by element. */
static void
check_bits(const char *what, const float *out, const Expected *e)
{
	for (size_t i = 0; i < e->n; i++)
	{
		uint32_t	got;

		memcpy(&got, &out[i], 4);
		CHECK_MSG(got == e->bits[i], "%s[%zu]: got %08x (%g), want %08x", what, i, got,
				  (double) out[i], e->bits[i]);
	}
}

/* A tensor of st against expected.txt: dtype, shape and every value. */
static void
check_tensor(const SaeSafetensors *st, const char *file, const SaeTensorInfo *t)
{
	Expected	e;
	float	   *out;
	SaeError	err;

	REQUIRE(expected_load(file, t->name, &e));
	CHECK_STR_EQ(sae_dtype_name(t->dtype), e.dtype);
	CHECK_INT_EQ(t->ndim, e.ndim);
	for (int d = 0; d < e.ndim; d++)
		CHECK_INT_EQ(t->shape[d], e.shape[d]);
	CHECK_INT_EQ(t->numel, e.n);
	out = malloc(sizeof(float) * (e.n + 1));
	REQUIRE(out != NULL);
	CHECK_INT_EQ(sae_safetensors_read_f32(st, t, out, (size_t) t->numel, &err), SAE_OK);
	check_bits(t->name, out, &e);
	free(out);
}

/* The whole file into memory (malloc'd), or NULL. */
static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE	   *fp = fopen(path, "rb");
	unsigned char *buf;
	long		n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t) n + 1);
	if (buf != NULL && fread(buf, 1, (size_t) n, fp) != (size_t) n)
	{
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	*len = (size_t) n;
	return buf;
}

UNIT_TEST(dtypes_file_matches_torch)
{
	char		path[512];
	SaeSafetensors *st = NULL;
	SaeError	err;
	size_t		checked = 0;

	model_path("dtypes.safetensors", path, sizeof(path));
	REQUIRE(sae_safetensors_open(path, &st, &err) == SAE_OK);
	CHECK_INT_EQ(sae_safetensors_count(st), 10);
	for (size_t i = 0; i < sae_safetensors_count(st); i++)
	{
		const SaeTensorInfo *t = sae_safetensors_tensor(st, i);

		if (i > 0)
			CHECK(strcmp(sae_safetensors_tensor(st, i - 1)->name, t->name) < 0);
		if (t->dtype == SAE_DTYPE_I32)
			continue;
		check_tensor(st, "dtypes.safetensors", t);
		checked++;
	}
	CHECK_INT_EQ(checked, 9);
	CHECK_STR_EQ(sae_safetensors_metadata(st, "format"), "pt");
	CHECK_STR_EQ(sae_safetensors_metadata(st, "note"), "fixture");
	CHECK(sae_safetensors_metadata(st, "missing") == NULL);
	CHECK(sae_safetensors_find(st, "f32.matrix") != NULL);
	CHECK(sae_safetensors_find(st, "f32.matri") == NULL);
	CHECK(sae_safetensors_tensor(st, 10) == NULL);
	CHECK_INT_EQ(sae_safetensors_find(st, "f32.scalar")->ndim, 0);
	CHECK_INT_EQ(sae_safetensors_find(st, "f32.scalar")->numel, 1);
	CHECK_INT_EQ(sae_safetensors_find(st, "f32.empty")->numel, 0);
	sae_safetensors_close(st);
}

UNIT_TEST(integer_tensor_is_not_converted)
{
	char		path[512];
	SaeSafetensors *st = NULL;
	SaeError	err;
	float		out[4];
	const SaeTensorInfo *t;

	model_path("dtypes.safetensors", path, sizeof(path));
	REQUIRE(sae_safetensors_open(path, &st, &err) == SAE_OK);
	t = sae_safetensors_find(st, "i32.ids");
	REQUIRE(t != NULL);
	CHECK_INT_EQ(t->dtype, SAE_DTYPE_I32);
	CHECK_INT_EQ(sae_safetensors_read_f32(st, t, out, 4, &err), SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(err.message, "dtypes.safetensors");
	CHECK_CONTAINS(err.message, "i32.ids");
	CHECK_CONTAINS(err.message, "I32");
	CHECK(err.hint[0] != '\0');
	sae_safetensors_close(st);
}

UNIT_TEST(from_memory_matches_file)
{
	char		path[512];
	size_t		len = 0;
	unsigned char *buf = slurp(model_path("dtypes.safetensors", path, sizeof(path)), &len);
	SaeSafetensors *st = NULL;
	SaeError	err;

	REQUIRE(buf != NULL);
	REQUIRE(sae_safetensors_from_memory(buf, len, "in-memory", &st, &err) == SAE_OK);
	CHECK_STR_EQ(sae_safetensors_name(st), "in-memory");
	for (size_t i = 0; i < sae_safetensors_count(st); i++)
		if (sae_safetensors_tensor(st, i)->dtype != SAE_DTYPE_I32)
			check_tensor(st, "dtypes.safetensors", sae_safetensors_tensor(st, i));
	sae_safetensors_close(st);
	free(buf);
}

UNIT_TEST(sharded_index)
{
	char		path[512];
	SaeSafetensorsIndex *ix = NULL;
	SaeError	err;
	const SaeSafetensors *file = NULL;
	const SaeTensorInfo *t = NULL;

	model_path("sharded/model.safetensors.index.json", path, sizeof(path));
	REQUIRE(sae_safetensors_index_open(path, &ix, &err) == SAE_OK);
	CHECK_INT_EQ(sae_safetensors_index_count(ix), 4);
	CHECK_INT_EQ(sae_safetensors_index_shard_count(ix), 2);
	CHECK_STR_EQ(sae_safetensors_index_name(ix, 0), "a.bias");
	for (size_t i = 0; i < sae_safetensors_index_count(ix); i++)
	{
		const char *name = sae_safetensors_index_name(ix, i);
		char		rel[128];
		const char *fname;

		REQUIRE(sae_safetensors_index_find(ix, name, &file, &t));
		CHECK_STR_EQ(t->name, name);
		fname = strrchr(sae_safetensors_name(file), '/') + 1;
		snprintf(rel, sizeof(rel), "sharded/%s", fname);
		check_tensor(file, rel, t);
	}
	CHECK(sae_safetensors_index_find(ix, "b.weight", &file, &t));
	CHECK_CONTAINS(sae_safetensors_name(file), "model-00002-of-00002.safetensors");
	CHECK_INT_EQ(t->dtype, SAE_DTYPE_F16);
	CHECK(!sae_safetensors_index_find(ix, "c.weight", &file, &t));
	sae_safetensors_index_close(ix);
}

UNIT_TEST(sharded_index_errors)
{
	char		path[512];
	SaeSafetensorsIndex *ix = NULL;
	SaeError	err;

	model_path("sharded/bad_missing.index.json", path, sizeof(path));
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_ERR_INVALID_DATA);
	CHECK(ix == NULL);
	CHECK_CONTAINS(err.message, "bad_missing.index.json");
	CHECK_CONTAINS(err.message, "c.weight");
	CHECK_CONTAINS(err.message, "model-00001-of-00002.safetensors");

	model_path("sharded/bad_escape.index.json", path, sizeof(path));
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "../dtypes.safetensors");
	CHECK_CONTAINS(err.message, "not a relative path");

	model_path("sharded/no_such.index.json", path, sizeof(path));
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(err.message, "no_such.index.json");

	model_path("dtypes.safetensors", path, sizeof(path));
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "JSON");
}

UNIT_TEST(corrupt_fixture_files)
{
	static const struct
	{
		const char *file;
		SaeErrCode	code;
		const char *says;
	}			cases[] = {
		{"corrupt/truncated.safetensors", SAE_ERR_INVALID_DATA, "after the header"},
		{"corrupt/header_past_end.safetensors", SAE_ERR_INVALID_DATA, "runs past the end"},
		{"corrupt/huge_header.safetensors", SAE_ERR_LIMIT, "1099511627776"},
		{"corrupt/bad_dtype.safetensors", SAE_ERR_INVALID_DATA, "unknown dtype \"F31\""},
		{"corrupt/overlap.safetensors", SAE_ERR_INVALID_DATA, "overlap"},
		{"corrupt/not_utf8.safetensors", SAE_ERR_INVALID_DATA, "UTF-8"},
		{"corrupt/no_such_file.safetensors", SAE_ERR_INVALID_PARAMETER, "No such file"},
		{"corrupt", SAE_ERR_INVALID_PARAMETER, "not a regular file"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		path[512];
		SaeSafetensors *st = NULL;
		SaeError	err;
		int			rc = sae_safetensors_open(model_path(cases[i].file, path, sizeof(path)), &st, &err);

		CHECK_MSG(rc == (int) cases[i].code, "%s: code %d, want %d (%s)", cases[i].file, rc,
				  cases[i].code, err.message);
		CHECK(st == NULL);
		CHECK_CONTAINS(err.message, cases[i].file);
		CHECK_CONTAINS(err.message, cases[i].says);
	}
}

/* 8-byte length + header + data_len zero bytes; parsed from memory. */
static int
parse_header(const char *header, size_t data_len, SaeError *err)
{
	size_t		n = strlen(header);
	unsigned char *buf = calloc(1, 8 + n + data_len + 1);
	SaeSafetensors *st = NULL;
	int			rc;

	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char) ((uint64_t) n >> (8 * i));
	memcpy(buf + 8, header, n);
	memset(err, 0, sizeof(*err));
	rc = sae_safetensors_from_memory(buf, 8 + n + data_len, "mem.safetensors", &st, err);
	CHECK(rc == SAE_OK ? st != NULL : st == NULL);
	sae_safetensors_close(st);
	free(buf);
	return rc;
}

#define T(name, dtype, shape, b, e) \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

UNIT_TEST(valid_headers)
{
	static const struct
	{
		const char *header;
		size_t		data;
	}			cases[] = {
		{"{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16},
		{"{}", 0},
		{"{}      ", 0},
		{"{\"__metadata__\":{\"format\":\"pt\"}}", 0},
		{"{\"__metadata__\":null}", 0},
		{"{" T("a", "F32", "[2]", 0, 8) "," T("b", "F16", "[3]", 8, 14) "}", 14},
		{"{" T("b", "F16", "[3]", 8, 14) "," T("a", "F32", "[2]", 0, 8) "}", 14},
		{"{" T("e", "F32", "[0,5]", 0, 0) "," T("a", "F32", "[1]", 0, 4) "," T("z", "BF16", "[5,0]", 4, 4) "}", 4},
		{"{" T("s", "F64", "[]", 0, 8) "}", 8},
		{"{" T("q", "F4", "[2]", 0, 1) "," T("r", "F6_E2M3", "[4]", 1, 4) "}", 4},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4},
		{"{" T("big", "F32", "[0,4294967296,4294967296]", 0, 0) "}", 0},
		{"{" T("\\u00e9", "U8", "[1,1,1,1,1,1,1,1]", 0, 1) "}", 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;

		CHECK_MSG(parse_header(cases[i].header, cases[i].data, &err) == SAE_OK,
				  "case %zu rejected: %s", i, err.message);
	}
}

UNIT_TEST(invalid_headers)
{
	static const struct
	{
		const char *header;
		size_t		data;
		SaeErrCode	code;
		const char *says;
	}			cases[] = {
		{"{}", 4, SAE_ERR_INVALID_DATA, "cover 0 bytes"},
		{" {}", 0, SAE_ERR_INVALID_DATA, "start with '{'"},
		{"[]", 0, SAE_ERR_INVALID_DATA, "start with '{'"},
		{"", 0, SAE_ERR_INVALID_DATA, "start with '{'"},
		{"{", 0, SAE_ERR_INVALID_DATA, "header: invalid JSON at byte 1"},
		{"{" T("a", "F32", "[2]", 8, 0) "}", 8, SAE_ERR_INVALID_DATA, "end before they begin"},
		{"{" T("a", "F32", "[2]", 0, 4) "}", 4, SAE_ERR_INVALID_DATA, "span 4 bytes, but 2 elements of F32 take 8"},
		{"{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, SAE_ERR_INVALID_DATA, "leave a hole"},
		{"{" T("a", "F32", "[1]", 4, 8) "}", 8, SAE_ERR_INVALID_DATA, "leave a hole"},
		{"{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[1]", 4, 8) "}", 8, SAE_ERR_INVALID_DATA, "overlap"},
		{"{" T("a", "F32", "[2]", 0, 8) "}", 4, SAE_ERR_INVALID_DATA, "cover 8 bytes"},
		{"{" T("a", "F32", "[2]", 0, 8) "}", 12, SAE_ERR_INVALID_DATA, "12 bytes after the header"},
		{"{" T("a", "F32", "[4294967296,4294967296,16]", 0, 4) "}", 4, SAE_ERR_INVALID_DATA, "overflows"},
		{"{" T("a", "F64", "[2305843009213693952,8]", 0, 0) "}", 0, SAE_ERR_INVALID_DATA, "overflows"},
		{"{" T("a", "F32", "[-1]", 0, 0) "}", 0, SAE_ERR_INVALID_DATA, "dimension 0"},
		{"{" T("a", "F32", "[2.0]", 0, 8) "}", 8, SAE_ERR_INVALID_DATA, "dimension 0"},
		{"{" T("a", "F32", "[1,\"2\"]", 0, 8) "}", 8, SAE_ERR_INVALID_DATA, "dimension 1"},
		{"{" T("a", "F32", "{}", 0, 8) "}", 8, SAE_ERR_INVALID_DATA, "\"shape\""},
		{"{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, SAE_ERR_NOT_SUPPORTED, "9 dimensions"},
		{"{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, SAE_ERR_INVALID_DATA, "appears twice"},
		{"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SAE_ERR_INVALID_DATA, "given 2 times"},
		{"{" T("a", "F31", "[1]", 0, 4) "}", 4, SAE_ERR_INVALID_DATA, "unknown dtype"},
		{"{" T("a", "f32", "[1]", 0, 4) "}", 4, SAE_ERR_INVALID_DATA, "unknown dtype"},
		{"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SAE_ERR_INVALID_DATA, "\"dtype\""},
		{"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SAE_ERR_INVALID_DATA, "\"dtype\" is missing"},
		{"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SAE_ERR_INVALID_DATA, "\"shape\" is missing"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SAE_ERR_INVALID_DATA, "data_offsets"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, SAE_ERR_INVALID_DATA, "two"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 0, SAE_ERR_INVALID_DATA, "non-negative"},
		{"{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SAE_ERR_INVALID_DATA, "\"dtype\""},
		{"{\"a\":[]}", 0, SAE_ERR_INVALID_DATA, "not an object"},
		{"{\"a\\u0000b\":{}}", 0, SAE_ERR_INVALID_DATA, "NUL"},
		{"{\"__metadata__\":{\"format\":1}}", 0, SAE_ERR_INVALID_DATA, "__metadata__ value \"format\""},
		{"{\"__metadata__\":[\"pt\"]}", 0, SAE_ERR_INVALID_DATA, "__metadata__ is not an object"},
		{"{\"__metadata__\":{},\"__metadata__\":{}}", 0, SAE_ERR_INVALID_DATA, "__metadata__ appears twice"},
		{"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, SAE_ERR_INVALID_DATA, "key \"k\" appears twice"},
		{"{" T("q", "F4", "[3]", 0, 2) "}", 2, SAE_ERR_INVALID_DATA, "whole bytes"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;
		int			rc = parse_header(cases[i].header, cases[i].data, &err);

		CHECK_MSG(rc == (int) cases[i].code, "case %zu: code %d, want %d (%s)", i, rc, cases[i].code, err.message);
		CHECK_MSG(strstr(err.message, cases[i].says) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
				  err.message, cases[i].says);
		CHECK_CONTAINS(err.message, "mem.safetensors");
	}
}

UNIT_TEST(tensor_errors_name_the_tensor)
{
	SaeError	err;

	parse_header("{" T("h.0.attn.weight", "F32", "[2]", 0, 4) "}", 4, &err);
	CHECK_CONTAINS(err.message, "safetensors file \"mem.safetensors\": tensor \"h.0.attn.weight\"");
}

UNIT_TEST(bad_lengths)
{
	unsigned char buf[64];
	SaeSafetensors *st = NULL;
	SaeError	err;

	memset(buf, 0, sizeof(buf));
	CHECK_INT_EQ(sae_safetensors_from_memory(buf, 7, "short", &st, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "too short");
	CHECK_INT_EQ(sae_safetensors_from_memory(buf, 0, "empty", &st, &err), SAE_ERR_INVALID_DATA);
	buf[0] = 57;				/* 57 > 64 - 8 */
	CHECK_INT_EQ(sae_safetensors_from_memory(buf, 64, "past", &st, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "header length 57 runs past the end of the 64-byte file");
	memset(buf, 0xff, 8);		/* 2^64 - 1 */
	CHECK_INT_EQ(sae_safetensors_from_memory(buf, 64, "huge", &st, &err), SAE_ERR_LIMIT);
	CHECK_CONTAINS(err.message, "18446744073709551615");
	memset(buf, 0, 8);
	buf[0] = 0x01;
	buf[1] = 0xe1;
	buf[2] = 0xf5;
	buf[3] = 0x05;				/* 100000001 */
	CHECK_INT_EQ(sae_safetensors_from_memory(buf, 64, "limit", &st, &err), SAE_ERR_LIMIT);
	CHECK(st == NULL);
}

UNIT_TEST(every_truncation_and_byte_flip_is_handled)
{
	char		path[512];
	size_t		len = 0;
	unsigned char *good = slurp(model_path("dtypes.safetensors", path, sizeof(path)), &len);
	unsigned char *buf;
	size_t		accepted = 0;

	REQUIRE(good != NULL);
	buf = malloc(len);
	REQUIRE(buf != NULL);
	for (size_t k = 0; k < len; k++)
	{
		SaeSafetensors *st = NULL;
		SaeError	err;

		memcpy(buf, good, k);
		CHECK_MSG(sae_safetensors_from_memory(buf, k, "cut", &st, &err) != SAE_OK,
				  "a %zu-byte prefix was accepted", k);
	}
	for (size_t k = 0; k < len; k++)
	{
		static const unsigned char flips[] = {0x00, 0x01, 0x80, 0xff, '"', '}', '9'};

		for (size_t f = 0; f < sizeof(flips); f++)
		{
			SaeSafetensors *st = NULL;
			SaeError	err;

			memcpy(buf, good, len);
			buf[k] = flips[f];
			if (sae_safetensors_from_memory(buf, len, "flip", &st, &err) == SAE_OK)
			{
				accepted++;
				for (size_t i = 0; i < sae_safetensors_count(st); i++)
				{
					const SaeTensorInfo *t = sae_safetensors_tensor(st, i);
					float	   *out = malloc(sizeof(float) * ((size_t) t->numel + 1));

					CHECK(t->data + (t->end - t->begin) <= buf + len);
					sae_safetensors_read_f32(st, t, out, (size_t) t->numel, &err);
					free(out);
				}
			}
			sae_safetensors_close(st);
		}
	}
	unit_note("%zu of %zu byte flips still parse (data bytes and harmless header bytes)",
			  accepted, len * 7);
	free(buf);
	free(good);
}

/* The float value of a binary16 pattern, computed independently in double. */
static double
half_value(uint16_t h)
{
	int			e = (h >> 10) & 0x1f;
	int			m = h & 0x3ff;
	double		v;

	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(m + 1024, e - 25);
	return (h & 0x8000) ? -v : v;
}

UNIT_TEST(f16_every_pattern)
{
	uint16_t   *h = malloc(65536 * sizeof(uint16_t));
	float	   *out = malloc(65536 * sizeof(float));
	int			bad = 0;

	REQUIRE(h && out);
	for (uint32_t i = 0; i < 65536; i++)
		h[i] = (uint16_t) i;
	sae_dtype_to_f32(SAE_DTYPE_F16, h, 65536, out);
	for (uint32_t i = 0; i < 65536; i++)
	{
		double		want = half_value((uint16_t) i);
		uint32_t	bits;
		bool		ok;

		memcpy(&bits, &out[i], 4);
		if (isnan(want))		/* NaN with the payload and sign kept */
			ok = isnan(out[i]) && (bits & 0x1fff) == 0 &&
				((bits >> 13) & 0x3ff) == (i & 0x3ff) && (bits >> 31) == (i >> 15);
		else
			ok = (double) out[i] == want && !signbit(out[i]) == !signbit(want);
		if (!ok && bad++ == 0)
			CHECK_MSG(false, "half 0x%04x: got %08x", i, bits);
	}
	CHECK_INT_EQ(bad, 0);
	free(h);
	free(out);
}

UNIT_TEST(bf16_every_pattern_and_f64_rounding)
{
	uint16_t   *h = malloc(65536 * sizeof(uint16_t));
	float	   *out = malloc(65536 * sizeof(float));
	double		d[8] = {0x1.ffffffp127, 0x1.fffffefffffffp127, -0x1.ffffffp127, 1e-50, -0.0,
	0.1, 0x1p-149, 0x1p-150};
	float		f[8];
	int			bad = 0;

	REQUIRE(h && out);
	for (uint32_t i = 0; i < 65536; i++)
		h[i] = (uint16_t) i;
	sae_dtype_to_f32(SAE_DTYPE_BF16, h, 65536, out);
	for (uint32_t i = 0; i < 65536; i++)
	{
		uint32_t	bits;

		memcpy(&bits, &out[i], 4);
		bad += (bits != i << 16);
	}
	CHECK_INT_EQ(bad, 0);
	sae_dtype_to_f32(SAE_DTYPE_F64, d, 8, f);
	CHECK(isinf(f[0]) && f[0] > 0);
	CHECK(f[1] == 0x1.fffffep127f);
	CHECK(isinf(f[2]) && f[2] < 0);
	CHECK(f[3] == 0.0f);
	CHECK(f[4] == 0.0f && signbit(f[4]));
	CHECK(f[5] == 0.1f);
	CHECK(f[6] == 0x1p-149f);
	CHECK(f[7] == 0.0f);		/* a tie rounds to even: zero */
	free(h);
	free(out);
}

UNIT_TEST(dtype_table)
{
	SaeDtype	d;

	for (int i = 0; i < SAE_DTYPE_COUNT; i++)
	{
		CHECK(sae_dtype_from_name(sae_dtype_name((SaeDtype) i), &d));
		CHECK_INT_EQ(d, i);
		CHECK(sae_dtype_bits((SaeDtype) i) > 0);
	}
	CHECK(!sae_dtype_from_name("F31", &d));
	CHECK(!sae_dtype_from_name("", &d));
	CHECK_INT_EQ(sae_dtype_bits(SAE_DTYPE_BF16), 16);
	CHECK_INT_EQ(sae_dtype_bits(SAE_DTYPE_F4), 4);
	CHECK(sae_dtype_is_convertible(SAE_DTYPE_F64));
	CHECK(!sae_dtype_is_convertible(SAE_DTYPE_I64));
	CHECK(!sae_dtype_is_convertible(SAE_DTYPE_F8_E4M3));
}
