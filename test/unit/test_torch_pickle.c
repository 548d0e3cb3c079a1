/*
 * test_torch_pickle.c — the pytorch_model.bin reader: state dicts written
 * by torch.save (test/fixtures/models, made by
 * test/golden/make_model_fixtures.py) read back bit-exactly, including a
 * storage shared by two views, a transposed weight, protocol 4 and a
 * hand-made ZIP64 archive under another folder name; then pickles and
 * archives built here, opcode by opcode, that must each fail with an error
 * naming what is wrong, never run anything and never crash.
 */
#include "unit.h"
#include "helpers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "torch_pickle.h"

/* A tensor against expected.txt: dtype, shape and every value's bits. */
static void
check_tensor(const SaeTorchFile *tf, const char *file, const SaeTorchTensor *t)
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
	CHECK_INT_EQ(sae_torch_read_f32(tf, t, out, (size_t) t->numel, &err), SAE_OK);
	for (size_t i = 0; i < e.n; i++)
	{
		uint32_t	got;

		memcpy(&got, &out[i], 4);
		CHECK_MSG(got == e.bits[i], "%s %s[%zu]: got %08x (%g), want %08x", file, t->name, i, got,
				  (double) out[i], e.bits[i]);
	}
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

/* Every float tensor of a fixture file against expected.txt. */
static void
check_torch_file(const char *file)
{
	char		path[512];
	SaeTorchFile *tf = NULL;
	SaeError	err;
	size_t		checked = 0;

	memset(&err, 0, sizeof(err));
	CHECK_MSG(sae_torch_open(model_path(file, path, sizeof(path)), &tf, &err) == SAE_OK,
			  "%s: %s", file, err.message);
	if (tf == NULL)
		return;
	CHECK_INT_EQ(sae_torch_count(tf), 9);
	for (size_t i = 0; i < sae_torch_count(tf); i++)
	{
		const SaeTorchTensor *t = sae_torch_tensor(tf, i);

		if (i > 0)
			CHECK(strcmp(sae_torch_tensor(tf, i - 1)->name, t->name) < 0);
		if (t->dtype == SAE_DTYPE_I64)
			continue;
		check_tensor(tf, file, t);
		checked++;
	}
	CHECK_INT_EQ(checked, 8);
	sae_torch_close(tf);
}

UNIT_TEST(torch_save_files_match_torch)
{
	check_torch_file("torch_f32.bin");
	check_torch_file("torch_f16.bin");
	check_torch_file("torch_bf16.bin");
}

UNIT_TEST(protocol4_and_zip64_other_prefix)
{
	check_torch_file("torch_proto4.bin");
	check_torch_file("torch_zip64_prefix.bin");
}

UNIT_TEST(views_strides_and_shared_storage)
{
	char		path[512];
	SaeTorchFile *tf = NULL;
	SaeError	err;
	const SaeTorchTensor *base,
			   *view,
			   *tr,
			   *steps;
	float		out[1];

	REQUIRE(sae_torch_open(model_path("torch_f32.bin", path, sizeof(path)), &tf, &err) == SAE_OK);
	base = sae_torch_find(tf, "shared.base");
	view = sae_torch_find(tf, "shared.view");
	tr = sae_torch_find(tf, "transposed");
	steps = sae_torch_find(tf, "steps");
	REQUIRE(base && view && tr && steps);
	CHECK(sae_torch_find(tf, "nope") == NULL);
	CHECK_STR_EQ(view->storage_key, base->storage_key);
	CHECK_INT_EQ(view->storage_offset, 2);
	CHECK_INT_EQ(view->storage_numel, 12);
	CHECK(view->contiguous && base->contiguous);
	CHECK(!tr->contiguous);
	CHECK_INT_EQ(tr->shape[0], 4);
	CHECK_INT_EQ(tr->shape[1], 3);
	CHECK_INT_EQ(tr->stride[0], 1);
	CHECK_INT_EQ(tr->stride[1], 4);
	CHECK_INT_EQ(steps->dtype, SAE_DTYPE_I64);
	CHECK_INT_EQ(steps->ndim, 0);
	CHECK_INT_EQ(sae_torch_read_f32(tf, steps, out, 1, &err), SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(err.message, "torch_f32.bin");
	CHECK_CONTAINS(err.message, "\"steps\"");
	CHECK_CONTAINS(err.message, "I64");
	CHECK_CONTAINS(sae_torch_name(tf), "torch_f32.bin");
	sae_torch_close(tf);
}

UNIT_TEST(from_memory_matches_file)
{
	char		path[512];
	size_t		len = 0;
	unsigned char *buf = slurp(model_path("torch_bf16.bin", path, sizeof(path)), &len);
	SaeTorchFile *tf = NULL;
	SaeError	err;

	REQUIRE(buf != NULL);
	REQUIRE(sae_torch_from_memory(buf, len, "mem.bin", &tf, &err) == SAE_OK);
	for (size_t i = 0; i < sae_torch_count(tf); i++)
		if (sae_torch_tensor(tf, i)->dtype != SAE_DTYPE_I64)
			check_tensor(tf, "torch_bf16.bin", sae_torch_tensor(tf, i));
	sae_torch_close(tf);
	free(buf);
}

UNIT_TEST(corrupt_fixture_files)
{
	static const struct
	{
		const char *file;
		SaeErrCode	code;
		const char *says;
	}			cases[] = {
		{"corrupt/truncated.bin", SAE_ERR_INVALID_DATA, "end-of-central-directory"},
		{"corrupt/compressed.bin", SAE_ERR_NOT_SUPPORTED, "is compressed (method 8)"},
		{"corrupt/legacy.bin", SAE_ERR_NOT_SUPPORTED, "legacy torch.save format"},
		{"corrupt/bad_global.bin", SAE_ERR_INVALID_DATA, "data.pkl at byte 2 (opcode 'c'): global os.system is not allowed"},
		{"corrupt/short_storage.bin", SAE_ERR_INVALID_DATA, "storage \"0\" has 44 bytes, not 12 elements of F32"},
		{"dtypes.safetensors", SAE_ERR_INVALID_DATA, "no ZIP end-of-central-directory"},
		{"corrupt/no_such.bin", SAE_ERR_INVALID_PARAMETER, "No such file"},
		{"corrupt", SAE_ERR_INVALID_PARAMETER, "not a regular file"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		path[512];
		SaeTorchFile *tf = NULL;
		SaeError	err;
		int			rc = sae_torch_open(model_path(cases[i].file, path, sizeof(path)), &tf, &err);

		CHECK_MSG(rc == (int) cases[i].code, "%s: code %d, want %d (%s)", cases[i].file, rc,
				  cases[i].code, err.message);
		CHECK(tf == NULL);
		CHECK_CONTAINS(err.message, cases[i].file);
		CHECK_CONTAINS(err.message, cases[i].says);
	}
}

/* --- archives and pickles built here --- */

typedef struct Buf
{
	unsigned char b[8192];
	size_t		n;
} Buf;

/* Append n bytes (counted but not stored past the buffer, which REQUIREs catch). */
static void
put_bytes(Buf *p, const void *s, size_t n)
{
	if (p->n + n <= sizeof(p->b))
		memcpy(p->b + p->n, s, n);
	p->n += n;
}

/* Append v as `bytes` little-endian bytes (zeros past the eighth). */
static void
put_le(Buf *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
	{
		unsigned char c = (i < 8) ? (unsigned char) (v >> (8 * i)) : 0;

		put_bytes(p, &c, 1);
	}
}

static uint32_t
crc32_of(const unsigned char *s, size_t n)
{
	uint32_t	crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++)
	{
		crc ^= s[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

typedef struct ZipItem
{
	const char *name;
	const unsigned char *data;
	size_t		len;
} ZipItem;

/* A plain STORED zip of items; flags and a wrong CRC to break it on purpose. */
static void
make_zip(Buf *z, const ZipItem *items, int n, uint16_t flags, bool bad_crc)
{
	size_t		offs[8],
				cd,
				cd_size;

	z->n = 0;
	for (int i = 0; i < n; i++)
	{
		offs[i] = z->n;
		put_le(z, 0x04034b50, 4);
		put_le(z, 20, 2);
		put_le(z, flags, 2);
		put_le(z, 0, 6);
		put_le(z, crc32_of(items[i].data, items[i].len) ^ bad_crc, 4);
		put_le(z, items[i].len, 4);
		put_le(z, items[i].len, 4);
		put_le(z, strlen(items[i].name), 2);
		put_le(z, 0, 2);
		put_bytes(z, items[i].name, strlen(items[i].name));
		put_bytes(z, items[i].data, items[i].len);
	}
	cd = z->n;
	for (int i = 0; i < n; i++)
	{
		put_le(z, 0x02014b50, 4);
		put_le(z, 20, 2);
		put_le(z, 20, 2);
		put_le(z, flags, 2);
		put_le(z, 0, 6);
		put_le(z, crc32_of(items[i].data, items[i].len) ^ bad_crc, 4);
		put_le(z, items[i].len, 4);
		put_le(z, items[i].len, 4);
		put_le(z, strlen(items[i].name), 2);
		put_le(z, 0, 12);
		put_le(z, offs[i], 4);
		put_bytes(z, items[i].name, strlen(items[i].name));
	}
	cd_size = z->n - cd;
	put_le(z, 0x06054b50, 4);
	put_le(z, 0, 4);
	put_le(z, (uint64_t) n, 2);
	put_le(z, (uint64_t) n, 2);
	put_le(z, cd_size, 4);
	put_le(z, cd, 4);
	put_le(z, 0, 2);
}

/* Pickle writing, one opcode at a time. */
static void
pk_op(Buf *p, int op)
{
	unsigned char c = (unsigned char) op;

	put_bytes(p, &c, 1);
}

/* BINUNICODE s */
static void
pk_str(Buf *p, const char *s)
{
	pk_op(p, 'X');
	put_le(p, strlen(s), 4);
	put_bytes(p, s, strlen(s));
}

/* The shortest int opcode for v, as pickle does. */
static void
pk_int(Buf *p, long long v)
{
	if (v >= 0 && v < 256)
	{
		pk_op(p, 'K');
		put_le(p, (uint64_t) v, 1);
	}
	else if (v >= 0 && v < 65536)
	{
		pk_op(p, 'M');
		put_le(p, (uint64_t) v, 2);
	}
	else if (v >= INT32_MIN && v <= INT32_MAX)
	{
		pk_op(p, 'J');
		put_le(p, (uint64_t) v, 4);
	}
	else
	{
		pk_op(p, 0x8a);
		put_le(p, 8, 1);
		put_le(p, (uint64_t) v, 8);
	}
}

/* GLOBAL module.name */
static void
pk_global(Buf *p, const char *module, const char *name)
{
	pk_op(p, 'c');
	put_bytes(p, module, strlen(module));
	pk_op(p, '\n');
	put_bytes(p, name, strlen(name));
	pk_op(p, '\n');
}

/* A tuple of n ints: MARK, ints, TUPLE. */
static void
pk_ints(Buf *p, int n, const long long *v)
{
	pk_op(p, '(');
	for (int i = 0; i < n; i++)
		pk_int(p, v[i]);
	pk_op(p, 't');
}

typedef struct TensorSpec
{
	const char *name;
	const char *storage_class;
	const char *key;
	long long	numel;			/* of the storage */
	long long	offset;
	int			ndim;
	long long	shape[10];
	long long	stride[10];
} TensorSpec;

/* name, then _rebuild_tensor_v2(persistent storage, offset, size, stride, False, {}) */
static void
pk_tensor(Buf *p, const TensorSpec *t)
{
	pk_str(p, t->name);
	pk_global(p, "torch._utils", "_rebuild_tensor_v2");
	pk_op(p, '(');
	pk_op(p, '(');
	pk_str(p, "storage");
	pk_global(p, "torch", t->storage_class);
	pk_str(p, t->key);
	pk_str(p, "cpu");
	pk_int(p, t->numel);
	pk_op(p, 't');
	pk_op(p, 'Q');
	pk_int(p, t->offset);
	pk_ints(p, t->ndim, t->shape);
	pk_ints(p, t->ndim, t->stride);
	pk_op(p, 0x89);
	pk_op(p, '}');
	pk_op(p, 't');
	pk_op(p, 'R');
}

/* PROTO 2, EMPTY_DICT, MARK, the tensors, SETITEMS, STOP */
static void
pk_state_dict(Buf *p, const TensorSpec *ts, int n)
{
	p->n = 0;
	pk_op(p, 0x80);
	pk_op(p, 2);
	pk_op(p, '}');
	pk_op(p, '(');
	for (int i = 0; i < n; i++)
		pk_tensor(p, &ts[i]);
	pk_op(p, 'u');
	pk_op(p, '.');
}

/* Storage "0": the floats 0, 1, ..., 11. */
static const unsigned char *
storage12(void)
{
	static float s[12];

	for (int i = 0; i < 12; i++)
		s[i] = (float) i;
	return (const unsigned char *) s;
}

/* Zip "archive/data.pkl" + "archive/data/0" (48 bytes), open it, return the code. */
static int
open_pickle(const Buf *pkl, SaeTorchFile **tf, Buf *z, SaeError *err)
{
	ZipItem		items[2] = {
		{"archive/data.pkl", pkl->b, pkl->n},
		{"archive/data/0", storage12(), 48},
	};

	make_zip(z, items, 2, 0, false);
	memset(err, 0, sizeof(*err));
	return sae_torch_from_memory(z->b, z->n, "made.bin", tf, err);
}

/* open_pickle, expecting failure; the error is in err. */
static int
pickle_rc(const Buf *pkl, SaeError *err)
{
	Buf		   *z = malloc(sizeof(Buf));
	SaeTorchFile *tf = NULL;
	int			rc = open_pickle(pkl, &tf, z, err);

	CHECK(rc == SAE_OK ? tf != NULL : tf == NULL);
	sae_torch_close(tf);
	free(z);
	return rc;
}

static const TensorSpec W22 = {"w", "FloatStorage", "0", 12, 0, 2, {2, 2}, {2, 1}};

UNIT_TEST(made_state_dict_reads)
{
	Buf		   *p = malloc(sizeof(Buf)),
			   *z = malloc(sizeof(Buf));
	TensorSpec	ts[3] = {W22, W22, W22};
	SaeTorchFile *tf = NULL;
	SaeError	err;
	float		out[12];

	ts[1].name = "t";			/* 3x2 at offset 5, transposed: element (i,j) at 5 + i + 3j */
	ts[1].offset = 5;
	ts[1].shape[0] = 3;
	ts[1].shape[1] = 2;
	ts[1].stride[0] = 1;
	ts[1].stride[1] = 3;
	ts[2].name = "b";			/* a broadcast row: stride 0 */
	ts[2].offset = 7;
	ts[2].stride[0] = 0;
	pk_state_dict(p, ts, 3);
	REQUIRE(open_pickle(p, &tf, z, &err) == SAE_OK);
	CHECK_INT_EQ(sae_torch_count(tf), 3);
	REQUIRE(sae_torch_read_f32(tf, sae_torch_find(tf, "w"), out, 4, &err) == SAE_OK);
	CHECK(out[0] == 0 && out[1] == 1 && out[2] == 2 && out[3] == 3);
	REQUIRE(sae_torch_read_f32(tf, sae_torch_find(tf, "t"), out, 6, &err) == SAE_OK);
	CHECK(out[0] == 5 && out[1] == 8 && out[2] == 6 && out[3] == 9 && out[4] == 7 && out[5] == 10);
	REQUIRE(sae_torch_read_f32(tf, sae_torch_find(tf, "b"), out, 4, &err) == SAE_OK);
	CHECK(out[0] == 7 && out[1] == 8 && out[2] == 7 && out[3] == 8);
	CHECK_INT_EQ(sae_torch_read_f32(tf, sae_torch_find(tf, "w"), out, 5, &err), SAE_ERR_INTERNAL);
	sae_torch_close(tf);
	free(p);
	free(z);
}

UNIT_TEST(bad_views_and_storages)
{
	static const struct
	{
		TensorSpec	t;
		SaeErrCode	code;
		const char *says;
	}			cases[] = {
		{{"w", "FloatStorage", "0", 12, 9, 2, {2, 2}, {2, 1}}, SAE_ERR_INVALID_DATA, "runs past its storage"},
		{{"w", "FloatStorage", "0", 12, 0, 2, {2, 2}, {11, 1}}, SAE_ERR_INVALID_DATA, "reaching element 12"},
		{{"w", "FloatStorage", "0", 12, 0, 2, {3, 2}, {4611686018427387904LL, 1}}, SAE_ERR_INVALID_DATA, "a stride overflows"},
		{{"w", "FloatStorage", "0", 12, 0, 3, {4294967296LL, 4294967296LL, 4}, {0, 0, 0}}, SAE_ERR_INVALID_DATA, "overflow"},
		{{"w", "FloatStorage", "0", 13, 0, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "has 48 bytes, not 13 elements of F32"},
		{{"w", "HalfStorage", "0", 12, 0, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "not 12 elements of F16"},
		{{"w", "FloatStorage", "7", 12, 0, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "no entry for its storage \"7\""},
		{{"w", "FloatStorage", "0", 12, 0, 9, {1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1}}, SAE_ERR_INVALID_DATA, "at most 8"},
		{{"w", "FloatStorage", "0", 12, -1, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "_rebuild_tensor_v2 needs"},
		{{"w", "FloatStorage", "0", 12, 0, 1, {-2}, {1}}, SAE_ERR_INVALID_DATA, "non-negative"},
		{{"w", "FloatStorage", "0", 12, 0, 1, {2}, {-1}}, SAE_ERR_INVALID_DATA, "non-negative"},
		{{"w", "FloatStorage", "0", -12, 0, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "persistent id"},
		{{"w", "ComplexFloatStorage", "0", 12, 0, 1, {2}, {1}}, SAE_ERR_INVALID_DATA, "torch.ComplexFloatStorage is not allowed"},
		{{"w", "FloatStorage", "0", 12, 12, 1, {0}, {1}}, SAE_OK, ""},
		{{"w", "FloatStorage", "0", 12, 11, 0, {0}, {0}}, SAE_OK, ""},
		{{"w", "ByteStorage", "0", 48, 0, 1, {48}, {1}}, SAE_OK, ""},
	};
	Buf		   *p = malloc(sizeof(Buf));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;
		int			rc;

		pk_state_dict(p, &cases[i].t, 1);
		rc = pickle_rc(p, &err);
		CHECK_MSG(rc == (int) cases[i].code, "case %zu: code %d, want %d (%s)", i, rc, cases[i].code, err.message);
		CHECK_MSG(strstr(err.message, cases[i].says) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
				  err.message, cases[i].says);
	}
	free(p);
}

/* Append a string literal's bytes (without its NUL). */
#define PUT(p, lit) put_bytes(p, lit, sizeof(lit) - 1)

/* A pickle from raw bytes (protocol header included). */
static void
pk_raw(Buf *p, const char *bytes, size_t n)
{
	p->n = 0;
	put_bytes(p, bytes, n);
}

UNIT_TEST(bad_pickles)
{
	static const struct
	{
		const char *bytes;
		size_t		len;
		SaeErrCode	code;
		const char *says;
	}			cases[] = {
#define C(s, code, says) {s, sizeof(s) - 1, code, says}
		C("\x80\x02" "c__builtin__\neval\n" "X\x02\x00\x00\x00" "1+" "\x85R.", SAE_ERR_INVALID_DATA, "global __builtin__.eval is not allowed"),
		C("\x80\x04\x8c\x02os\x8c\x06system\x93.", SAE_ERR_INVALID_DATA, "byte 14 (opcode 0x93): global os.system is not allowed"),
		C("\x80\x02" "cposix\nsystem\n.", SAE_ERR_INVALID_DATA, "posix.system"),
		C("\x80\x02" "ctorch\nload\n.", SAE_ERR_INVALID_DATA, "torch.load is not allowed"),
		C("\x80\x02" "ccollections\nOrderedDict\n" "K\x01\x85R.", SAE_ERR_INVALID_DATA, "OrderedDict is called with arguments"),
		C("\x80\x02" "ctorch\nFloatStorage\n)R.", SAE_ERR_INVALID_DATA, "a storage class cannot be called"),
		C("\x80\x02" "ccollections\nOrderedDict\n" "\n" ")R.", SAE_ERR_INVALID_DATA, "opcode 0x0a"),
		C("\x80\x02" "cos\x01\nsystem\n.", SAE_ERR_INVALID_DATA, "non-printable"),
		C("\x80\x02" "cos", SAE_ERR_INVALID_DATA, "unterminated"),
		C("\x80\x02}0.", SAE_ERR_INVALID_DATA, "byte 3 (opcode '0'): this opcode is not supported"),
		C("\x80\x02}i.", SAE_ERR_INVALID_DATA, "opcode 'i'"),
		C("\x80\x02}", SAE_ERR_INVALID_DATA, "ends without STOP"),
		C("", SAE_ERR_INVALID_DATA, "ends without STOP"),
		C("\x80\x02}.}", SAE_ERR_INVALID_DATA, "1 bytes follow STOP"),
		C("\x80\x02}}.", SAE_ERR_INVALID_DATA, "2 values on the stack"),
		C("\x80\x02.", SAE_ERR_INVALID_DATA, "0 values on the stack"),
		C("\x80\x02(.", SAE_ERR_INVALID_DATA, "instead of one"),
		C("\x80\x02K\x01.", SAE_ERR_INVALID_DATA, "holds a int, not a state dict"),
		C("\x80\x02h\x05NNNN.", SAE_ERR_INVALID_DATA, "memo key 5 was never stored"),
		C("\x80\x02}r\xff\xff\xff\x7f.", SAE_ERR_INVALID_DATA, "memo key 2147483647 is out of range"),
		C("\x80\x02q\x00.", SAE_ERR_INVALID_DATA, "no value"),
		C("\x80\x02X\xff\xff\xff\x7f", SAE_ERR_INVALID_DATA, "ends inside the opcode's argument"),
		C("\x80\x02J\x01\x02", SAE_ERR_INVALID_DATA, "ends inside"),
		C("\x80\x02X\x02\x00\x00\x00\xc3(.", SAE_ERR_INVALID_DATA, "not valid UTF-8"),
		C("\x80\x02X\x01\x00\x00\x00\x00.", SAE_ERR_INVALID_DATA, "NUL"),
		C("\x80\x02t.", SAE_ERR_INVALID_DATA, "no MARK"),
		C("\x80\x02R.", SAE_ERR_INVALID_DATA, "no value to pop"),
		C("\x80\x02\x86.", SAE_ERR_INVALID_DATA, "fewer than 2 values"),
		C("\x80\x02(K\x01\x86.", SAE_ERR_INVALID_DATA, "a MARK where a tuple item"),
		C("\x80\x02}K\x01s.", SAE_ERR_INVALID_DATA, "no container"),
		C("\x80\x02K\x01K\x01K\x01s.", SAE_ERR_INVALID_DATA, "expected a dict below the items, found a int"),
		C("\x80\x02}(K\x01u.", SAE_ERR_INVALID_DATA, "odd number"),
		C("\x80\x02(K\x01u.", SAE_ERR_INVALID_DATA, "no container"),
		C("\x80\x02}(K\x01s.", SAE_ERR_INVALID_DATA, "a MARK among the items"),
		C("\x80\x02](K\x01" "e.", SAE_ERR_INVALID_DATA, "holds a list"),
		C("\x80\x02}K\x01]b.", SAE_ERR_INVALID_DATA, "BUILD on a int"),
		C("\x80\x02}X\x01\x00\x00\x00" "aK\x01s.", SAE_ERR_NOT_SUPPORTED, "entry \"a\" is a int, not a tensor"),
		C("\x80\x02}K\x01K\x01s.", SAE_ERR_INVALID_DATA, "key is a int"),
		C("\x80\x02}X\x01\x00\x00\x00" "a}s.", SAE_ERR_NOT_SUPPORTED, "only flat state dicts"),
		C("\x80\x01}.", SAE_ERR_NOT_SUPPORTED, "pickle protocol 1"),
		C("\x80\x06}.", SAE_ERR_NOT_SUPPORTED, "pickle protocol 6"),
		C("\x80\x02\x8a\x09\x01\x01\x01\x01\x01\x01\x01\x01\x01.", SAE_ERR_NOT_SUPPORTED, "9-byte integer"),
		C("\x80\x02(X\x07\x00\x00\x00" "storageK\x01X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ.", SAE_ERR_INVALID_DATA, "persistent id"),
		C("\x80\x02K\x01Q.", SAE_ERR_INVALID_DATA, "persistent id"),
		C("\x80\x02K\x01)R.", SAE_ERR_INVALID_DATA, "REDUCE needs a global and a tuple, got a int"),
		C("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n)R.", SAE_ERR_INVALID_DATA, "_rebuild_tensor_v2 needs"),
		C("\x80\x02" "ctorch._utils\n_rebuild_parameter\n(K\x01\x88}tR.", SAE_ERR_INVALID_DATA, "_rebuild_parameter needs"),
#undef C
	};
	Buf		   *p = malloc(sizeof(Buf));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SaeError	err;
		int			rc;

		pk_raw(p, cases[i].bytes, cases[i].len);
		rc = pickle_rc(p, &err);
		CHECK_MSG(rc == (int) cases[i].code, "case %zu: code %d, want %d (%s)", i, rc, cases[i].code, err.message);
		CHECK_MSG(strstr(err.message, cases[i].says) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
				  err.message, cases[i].says);
		CHECK_CONTAINS(err.message, "made.bin");
	}
	free(p);
}

/* MARK 'storage' <class> '0' 'cpu' BININT2 12 TUPLE BINPERSID; the class by GLOBAL + BINPUT 1, or LONG_BINGET 1. */
static void
pk_storage_memo(Buf *p, bool first)
{
	pk_op(p, '(');
	pk_str(p, "storage");
	if (first)
	{
		pk_global(p, "torch", "FloatStorage");
		PUT(p, "q\x01");
	}
	else
		PUT(p, "j\x01\x00\x00\x00");
	pk_str(p, "0");
	pk_str(p, "cpu");
	PUT(p, "M\x0c\x00");
	pk_op(p, 't');
	pk_op(p, 'Q');
}

UNIT_TEST(other_accepted_opcodes)
{
	Buf		   *p = malloc(sizeof(Buf)),
			   *z = malloc(sizeof(Buf));
	SaeTorchFile *tf = NULL;
	SaeError	err;
	float		out[3];

	/*
	 * Protocol 4 framing, MEMOIZE, SHORT_BINUNICODE, LONG1/BININT2/BININT
	 * ints, _rebuild_parameter around a tensor, TUPLE3, LONG_BINGET, a
	 * scalar, and a BUILD whose state holds a list, a float and None.
	 */
	p->n = 0;
	PUT(p, "\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00");
	pk_global(p, "collections", "OrderedDict");
	PUT(p, ")R\x94(\x8c\x01p");
	pk_global(p, "torch._utils", "_rebuild_parameter");
	pk_global(p, "torch._utils", "_rebuild_tensor_v2");
	pk_op(p, '(');
	pk_storage_memo(p, true);
	PUT(p, "\x8a\x01\x01(M\x03\x00t(J\x01\x00\x00\x00t\x89}tR\x88N\x87R");
	PUT(p, "\x8c\x01q");
	pk_global(p, "torch._utils", "_rebuild_tensor_v2");
	pk_op(p, '(');
	pk_storage_memo(p, false);
	PUT(p, "K\x00))\x89}tRu");
	PUT(p, "}(X\x09\x00\x00\x00_metadata](G\x3f\xf0\x00\x00\x00\x00\x00\x00Ne");
	PUT(p, "K\x05" "a" "uX\x01\x00\x00\x00xK\x01sb.");
	REQUIRE(p->n < sizeof(p->b));
	CHECK_MSG(open_pickle(p, &tf, z, &err) == SAE_OK, "%s", err.message);
	REQUIRE(tf != NULL);
	CHECK_INT_EQ(sae_torch_count(tf), 2);
	REQUIRE(sae_torch_find(tf, "p") && sae_torch_find(tf, "q"));
	CHECK_INT_EQ(sae_torch_find(tf, "p")->storage_offset, 1);
	CHECK_INT_EQ(sae_torch_find(tf, "q")->ndim, 0);
	REQUIRE(sae_torch_read_f32(tf, sae_torch_find(tf, "p"), out, 3, &err) == SAE_OK);
	CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3);
	REQUIRE(sae_torch_read_f32(tf, sae_torch_find(tf, "q"), out, 1, &err) == SAE_OK);
	CHECK(out[0] == 0);
	sae_torch_close(tf);
	free(p);
	free(z);
}

/* Open a zip of items, expecting failure with code and text. */
static void
expect_zip_error(const ZipItem *items, int n, uint16_t flags, bool bad_crc, SaeErrCode code,
				 const char *says)
{
	Buf		   *z = malloc(sizeof(Buf));
	SaeTorchFile *tf = NULL;
	SaeError	err;
	int			rc;

	make_zip(z, items, n, flags, bad_crc);
	memset(&err, 0, sizeof(err));
	rc = sae_torch_from_memory(z->b, z->n, "zip.bin", &tf, &err);
	CHECK_MSG(rc == (int) code, "\"%s\": code %d, want %d (%s)", says, rc, code, err.message);
	CHECK_MSG(strstr(err.message, says) != NULL, "\"%s\" lacks \"%s\"", err.message, says);
	sae_torch_close(tf);
	free(z);
}

UNIT_TEST(zip_errors)
{
	Buf		   *p = malloc(sizeof(Buf)),
			   *z = malloc(sizeof(Buf));
	ZipItem		items[3];
	SaeTorchFile *tf = NULL;
	SaeError	err;
	size_t		eocd;

	pk_state_dict(p, &W22, 1);
	items[0] = (ZipItem) {"archive/data.pkl", p->b, p->n};
	items[1] = (ZipItem) {"archive/data/0", storage12(), 48};
	items[2] = (ZipItem) {"archive/byteorder", (const unsigned char *) "big", 3};
	expect_zip_error(items, 2, 0, true, SAE_ERR_INVALID_DATA, "CRC");
	expect_zip_error(items, 2, 1, false, SAE_ERR_NOT_SUPPORTED, "encrypted");
	expect_zip_error(items + 1, 1, 0, false, SAE_ERR_INVALID_DATA, "no <folder>/data.pkl");
	expect_zip_error(items, 3, 0, false, SAE_ERR_NOT_SUPPORTED, "big-endian");
	items[1].name = "other/data.pkl";
	expect_zip_error(items, 2, 0, false, SAE_ERR_INVALID_DATA, "more than one data.pkl");
	items[0].name = "a/b/data.pkl";
	expect_zip_error(items, 1, 0, false, SAE_ERR_INVALID_DATA, "no <folder>/data.pkl");
	items[0].name = "archive/data.pkl";
	items[1].name = "archive/data/0";
	items[2].data = (const unsigned char *) "little";
	items[2].len = 6;

	make_zip(z, items, 3, 0, false);
	REQUIRE(sae_torch_from_memory(z->b, z->n, "ok.bin", &tf, &err) == SAE_OK);
	sae_torch_close(tf);
	eocd = z->n - 22;
	z->b[eocd + 16] = 0xff;		/* central directory offset past the end */
	CHECK_INT_EQ(sae_torch_from_memory(z->b, z->n, "z", &tf, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "runs past the end");
	make_zip(z, items, 3, 0, false);
	z->b[eocd + 10] = 0xff;		/* 255 entries in a few hundred bytes */
	CHECK_INT_EQ(sae_torch_from_memory(z->b, z->n, "z", &tf, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "claims");
	make_zip(z, items, 3, 0, false);
	z->b[0] = 'Q';				/* the first local header's signature */
	CHECK_INT_EQ(sae_torch_from_memory(z->b, z->n, "z", &tf, &err), SAE_ERR_INVALID_DATA);
	CHECK_CONTAINS(err.message, "local header of ZIP entry \"archive/data.pkl\"");
	make_zip(z, items, 3, 0, false);
	z->b[eocd + 4] = 1;			/* disk number */
	CHECK_INT_EQ(sae_torch_from_memory(z->b, z->n, "z", &tf, &err), SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(err.message, "multi-disk");
	for (size_t k = 0; k < 30; k++)
		CHECK(sae_torch_from_memory(z->b, k, "tiny", &tf, &err) != SAE_OK);
	CHECK_INT_EQ(sae_torch_from_memory("\x80\x02\x8a\x0a" "0123456789abcdefghijklmnop", 30, "old", &tf, &err),
				 SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(err.message, "legacy");
	free(p);
	free(z);
}

UNIT_TEST(every_truncation_and_byte_flip_is_handled)
{
	char		path[512];
	size_t		len = 0;
	unsigned char *good = slurp(model_path("torch_f16.bin", path, sizeof(path)), &len);
	unsigned char *buf;
	size_t		accepted = 0;

	REQUIRE(good != NULL);
	buf = malloc(len);
	REQUIRE(buf != NULL);
	for (size_t k = 0; k < len; k++)
	{
		SaeTorchFile *tf = NULL;
		SaeError	err;

		memcpy(buf, good, k);
		CHECK_MSG(sae_torch_from_memory(buf, k, "cut", &tf, &err) != SAE_OK, "a %zu-byte prefix was accepted", k);
	}
	for (size_t k = 0; k < len; k++)
	{
		static const unsigned char flips[] = {0x00, 0x01, 0x7f, 0x80, 0xff};

		for (size_t f = 0; f < sizeof(flips); f++)
		{
			SaeTorchFile *tf = NULL;
			SaeError	err;

			memcpy(buf, good, len);
			buf[k] = flips[f];
			if (sae_torch_from_memory(buf, len, "flip", &tf, &err) != SAE_OK)
				continue;
			accepted++;
			for (size_t i = 0; i < sae_torch_count(tf); i++)
			{
				const SaeTorchTensor *t = sae_torch_tensor(tf, i);
				float	   *out = malloc(sizeof(float) * ((size_t) t->numel + 1));

				sae_torch_read_f32(tf, t, out, (size_t) t->numel, &err);
				free(out);
			}
			sae_torch_close(tf);
		}
	}
	unit_note("%zu of %zu byte flips still load (storage bytes, padding, unchecked fields)", accepted, len * 5);
	free(buf);
	free(good);
}
