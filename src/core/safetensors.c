/*
 * safetensors.c — see safetensors.h.
 *
 * Layout (reference/models.md §1.1): an 8-byte little-endian header length
 * N, N bytes of JSON, then the data region, which the tensors' data_offsets
 * must tile exactly.  Checkpoints come from the network, so every field is
 * checked before use and no offset is trusted until it has been compared
 * with the size of the file; the checks follow the reference reader's
 * Metadata::validate, so we accept what it accepts.
 */
#include "safetensors.h"
#include "mapfile.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An index file larger than this is not an index. */
#define INDEX_MAX_BYTES ((long) 64 * 1024 * 1024)

/* Names in error messages are cut to this many bytes. */
#define NAME_SHOWN 200

typedef struct DtypeDesc
{
	const char *name;
	int			bits;
} DtypeDesc;

/* In SaeDtype order. */
static const DtypeDesc dtype_table[SAE_DTYPE_COUNT] = {
	{"BOOL", 8}, {"U8", 8}, {"I8", 8}, {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
	{"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16},
	{"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32}, {"F64", 64}, {"I64", 64},
	{"U64", 64}, {"C64", 64}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6},
};

struct SaeSafetensors
{
	char	   *name;
	const unsigned char *base;	/* the whole file */
	size_t		size;
	bool		mapped;			/* base is our mmap, to unmap on close */
	size_t		header_len;		/* N */
	size_t		n_tensors;
	SaeTensorInfo *tensors;		/* sorted by name; names owned */
	size_t		n_meta;
	char	  **meta_keys;
	char	  **meta_values;
};

const char *
sae_dtype_name(SaeDtype dtype)
{
	return (dtype >= 0 && dtype < SAE_DTYPE_COUNT) ? dtype_table[dtype].name : "?";
}

bool
sae_dtype_from_name(const char *s, SaeDtype *dtype)
{
	for (int i = 0; i < SAE_DTYPE_COUNT; i++)
		if (strcmp(s, dtype_table[i].name) == 0)
		{
			*dtype = (SaeDtype) i;
			return true;
		}
	return false;
}

int
sae_dtype_bits(SaeDtype dtype)
{
	return (dtype >= 0 && dtype < SAE_DTYPE_COUNT) ? dtype_table[dtype].bits : 0;
}

bool
sae_dtype_is_convertible(SaeDtype dtype)
{
	return dtype == SAE_DTYPE_F32 || dtype == SAE_DTYPE_F16 ||
		dtype == SAE_DTYPE_BF16 || dtype == SAE_DTYPE_F64;
}

/* Little-endian loads from unaligned memory. */
static uint16_t
load_le16(const unsigned char *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
load_le32(const unsigned char *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static uint64_t
load_le64(const unsigned char *p)
{
	return (uint64_t) load_le32(p) | ((uint64_t) load_le32(p + 4) << 32);
}

/* A float from its bit pattern, without breaking aliasing rules. */
static float
f32_from_bits(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/*
 * IEEE binary16 -> binary32 bits, exactly: every half is a float.
 * Subnormal halves become normal floats (shift the mantissa up until its
 * leading one reaches the implicit bit); inf and NaN keep their payload.
 */
static uint32_t
f16_to_f32_bits(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	man = h & 0x3ff;
	uint32_t	e;

	if (exp == 0x1f)
		return sign | 0x7f800000 | (man << 13);
	if (exp != 0)
		return sign | ((exp + 112) << 23) | (man << 13);
	if (man == 0)
		return sign;
	e = 113;
	while ((man & 0x400) == 0)
	{
		man <<= 1;
		e--;
	}
	return sign | (e << 23) | ((man & 0x3ff) << 13);
}

/*
 * double -> float rounded to nearest.  C leaves a conversion of a finite
 * value beyond the float range undefined, so those are mapped to ±inf
 * here: everything from FLT_MAX + half an ulp (0x1.ffffffp127) up rounds
 * to infinity.
 */
static float
f64_to_f32(double d)
{
	if (d >= 0x1.ffffffp127)
		return INFINITY;
	if (d <= -0x1.ffffffp127)
		return -INFINITY;
	return (float) d;
}

void
sae_dtype_to_f32(SaeDtype dtype, const void *src, size_t n, float *dst)
{
	const unsigned char *p = src;

	switch (dtype)
	{
		case SAE_DTYPE_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			memcpy(dst, p, n * sizeof(float));
#else
			for (size_t i = 0; i < n; i++)
				dst[i] = f32_from_bits(load_le32(p + 4 * i));
#endif
			break;
		case SAE_DTYPE_F16:
			for (size_t i = 0; i < n; i++)
				dst[i] = f32_from_bits(f16_to_f32_bits(load_le16(p + 2 * i)));
			break;
		case SAE_DTYPE_BF16:
			for (size_t i = 0; i < n; i++)
				dst[i] = f32_from_bits((uint32_t) load_le16(p + 2 * i) << 16);
			break;
		case SAE_DTYPE_F64:
			for (size_t i = 0; i < n; i++)
			{
				uint64_t	u = load_le64(p + 8 * i);
				double		d;

				memcpy(&d, &u, sizeof(d));
				dst[i] = f64_to_f32(d);
			}
			break;
		default:
			break;
	}
}


static int	st_error(SaeError *err, SaeErrCode code, const char *file, const char *tensor,
					 const char *fmt,...) __attribute__((format(printf, 5, 6)));

/* Every error names the file, and the tensor when there is one. */
static int
st_error(SaeError *err, SaeErrCode code, const char *file, const char *tensor,
		 const char *fmt,...)
{
	char		msg[400];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (tensor != NULL)
		return sae_error(err, code, "safetensors file \"%.*s\": tensor \"%.*s\": %s",
						 NAME_SHOWN, file, NAME_SHOWN / 2, tensor, msg);
	return sae_error(err, code, "safetensors file \"%.*s\": %s", NAME_SHOWN, file, msg);
}

/* A JSON number that is a non-negative integer (an offset or a dimension). */
static bool
json_uint(const SaeJson *v, int64_t *out)
{
	if (v == NULL || v->type != SAE_JSON_NUMBER || !v->is_integer || v->integer < 0)
		return false;
	*out = v->integer;
	return true;
}

/* A JSON string without embedded NULs, usable as a C string. */
static bool
json_cstring(const SaeJson *v)
{
	return v != NULL && v->type == SAE_JSON_STRING && strlen(v->string) == v->length;
}

/*
 * The shape and element count of a tensor entry.  A zero dimension makes an
 * empty tensor whatever the others are; otherwise the product must not
 * overflow.
 */
static int
parse_shape(const SaeSafetensors *st, const char *name, const SaeJson *shape,
			SaeTensorInfo *t, SaeError *err)
{
	bool		empty = false;

	if (shape == NULL || shape->type != SAE_JSON_ARRAY)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "\"shape\" is missing or not an array");
	if (shape->count > SAE_MAX_DIMS)
		return st_error(err, SAE_ERR_NOT_SUPPORTED, st->name, name,
						"%zu dimensions; at most %d are supported", shape->count, SAE_MAX_DIMS);
	t->ndim = (int) shape->count;
	for (int i = 0; i < t->ndim; i++)
	{
		if (!json_uint(&shape->items[i], &t->shape[i]))
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
							"dimension %d of \"shape\" is not a non-negative integer", i);
		empty |= (t->shape[i] == 0);
	}
	t->numel = empty ? 0 : 1;
	for (int i = 0; i < t->ndim && !empty; i++)
	{
		if (t->numel > INT64_MAX / t->shape[i])
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
							"the shape's element count overflows 64 bits");
		t->numel *= t->shape[i];
	}
	return SAE_OK;
}

/* data_offsets: two non-negative integers, begin <= end, matching dtype x shape. */
static int
parse_offsets(const SaeSafetensors *st, const char *name, const SaeJson *offs,
			  SaeTensorInfo *t, SaeError *err)
{
	int64_t		begin,
				end;
	int			bits = sae_dtype_bits(t->dtype);
	uint64_t	nbits;

	if (offs == NULL || offs->type != SAE_JSON_ARRAY || offs->count != 2 ||
		!json_uint(&offs->items[0], &begin) || !json_uint(&offs->items[1], &end))
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
						"\"data_offsets\" is not an array of two non-negative integers");
	if (begin > end)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
						"data_offsets [%lld, %lld] end before they begin", (long long) begin, (long long) end);
	t->begin = (uint64_t) begin;
	t->end = (uint64_t) end;
	if ((uint64_t) t->numel > UINT64_MAX / (uint64_t) bits)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "the tensor's byte size overflows 64 bits");
	nbits = (uint64_t) t->numel * (uint64_t) bits;
	if (nbits % 8 != 0)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
						"%lld elements of %s do not fill whole bytes", (long long) t->numel, sae_dtype_name(t->dtype));
	if (nbits / 8 != t->end - t->begin)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name,
						"data_offsets [%lld, %lld] span %llu bytes, but %lld elements of %s take %llu",
						(long long) begin, (long long) end, (unsigned long long) (t->end - t->begin),
						(long long) t->numel, sae_dtype_name(t->dtype), (unsigned long long) (nbits / 8));
	return SAE_OK;
}

/*
 * One header entry: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
 * A field given twice is an error; fields we do not know are ignored, as
 * the reference reader does.
 */
static int
parse_entry(const SaeSafetensors *st, const char *name, const SaeJson *v,
			SaeTensorInfo *t, SaeError *err)
{
	static const char *const fields[] = {"dtype", "shape", "data_offsets"};
	const SaeJson *dtype;
	int			rc;

	if (v->type != SAE_JSON_OBJECT)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "the header entry is not an object");
	for (int f = 0; f < 3; f++)
	{
		int			seen = 0;

		for (size_t i = 0; i < v->count; i++)
			seen += (strcmp(v->keys[i], fields[f]) == 0 && v->key_lengths[i] == strlen(fields[f]));
		if (seen > 1)
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "\"%s\" is given %d times", fields[f], seen);
	}
	dtype = sae_json_get(v, "dtype");
	if (!json_cstring(dtype))
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "\"dtype\" is missing or not a string");
	if (!sae_dtype_from_name(dtype->string, &t->dtype))
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, name, "unknown dtype \"%.40s\"", dtype->string);
	if ((rc = parse_shape(st, name, sae_json_get(v, "shape"), t, err)) != SAE_OK)
		return rc;
	return parse_offsets(st, name, sae_json_get(v, "data_offsets"), t, err);
}

/* __metadata__: null, or an object whose values are all strings. */
static int
parse_metadata(SaeSafetensors *st, const SaeJson *v, SaeError *err)
{
	if (v->type == SAE_JSON_NULL)
		return SAE_OK;
	if (v->type != SAE_JSON_OBJECT)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL, "__metadata__ is not an object");
	st->meta_keys = calloc(v->count + 1, sizeof(char *));
	st->meta_values = calloc(v->count + 1, sizeof(char *));
	if (st->meta_keys == NULL || st->meta_values == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	for (size_t i = 0; i < v->count; i++)
	{
		if (strlen(v->keys[i]) != v->key_lengths[i] || !json_cstring(&v->items[i]))
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL,
							"__metadata__ value \"%.100s\" is not a string", v->keys[i]);
		for (size_t k = 0; k < i; k++)
			if (strcmp(v->keys[k], v->keys[i]) == 0)
				return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL,
								"__metadata__ key \"%.100s\" appears twice", v->keys[i]);
		st->meta_keys[i] = strdup(v->keys[i]);
		st->meta_values[i] = strdup(v->items[i].string);
		st->n_meta = i + 1;
		if (st->meta_keys[i] == NULL || st->meta_values[i] == NULL)
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	}
	return SAE_OK;
}

/* Name order, for bsearch in sae_safetensors_find. */
static int
cmp_by_name(const void *a, const void *b)
{
	return strcmp(((const SaeTensorInfo *) a)->name, ((const SaeTensorInfo *) b)->name);
}

/* data_offsets order, for the coverage check (pointers into the tensor array). */
static int
cmp_by_offsets(const void *a, const void *b)
{
	const SaeTensorInfo *x = *(const SaeTensorInfo *const *) a;
	const SaeTensorInfo *y = *(const SaeTensorInfo *const *) b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

/*
 * Sorted by offsets, the tensors must tile the data region: the first
 * begins at 0, each begins where the previous ended, and the last ends at
 * the end of the file.  This rules out overlaps, holes and anything out of
 * bounds in one pass.
 */
static int
check_coverage(SaeSafetensors *st, SaeError *err)
{
	size_t		data_len = st->size - 8 - st->header_len;
	const SaeTensorInfo **order = malloc((st->n_tensors + 1) * sizeof(*order));
	uint64_t	pos = 0;
	int			rc = SAE_OK;

	if (order == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	for (size_t i = 0; i < st->n_tensors; i++)
		order[i] = &st->tensors[i];
	qsort(order, st->n_tensors, sizeof(*order), cmp_by_offsets);
	for (size_t i = 0; i < st->n_tensors && rc == SAE_OK; i++)
	{
		if (order[i]->begin != pos)
			rc = st_error(err, SAE_ERR_INVALID_DATA, st->name, order[i]->name,
						  "data_offsets [%llu, %llu] %s: the previous tensor ends at %llu",
						  (unsigned long long) order[i]->begin, (unsigned long long) order[i]->end,
						  order[i]->begin < pos ? "overlap another tensor" : "leave a hole",
						  (unsigned long long) pos);
		pos = order[i]->end;
	}
	free(order);
	if (rc == SAE_OK && pos != data_len)
		rc = st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL,
					  "the tensors cover %llu bytes of data, but the file has %zu bytes after the header",
					  (unsigned long long) pos, data_len);
	return rc;
}

/* Names must be unique; with the tensors sorted by name, duplicates are adjacent. */
static int
check_unique_names(const SaeSafetensors *st, SaeError *err)
{
	for (size_t i = 1; i < st->n_tensors; i++)
		if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, st->tensors[i].name,
							"the name appears twice in the header");
	return SAE_OK;
}

/* Fill st->tensors and the metadata from the parsed header. */
static int
parse_header_members(SaeSafetensors *st, const SaeJson *root, SaeError *err)
{
	bool		have_meta = false;
	int			rc;

	st->tensors = calloc(root->count + 1, sizeof(SaeTensorInfo));
	if (st->tensors == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	for (size_t i = 0; i < root->count; i++)
	{
		SaeTensorInfo *t = &st->tensors[st->n_tensors];
		char	   *name;

		if (strlen(root->keys[i]) != root->key_lengths[i])
			return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL, "a tensor name contains a NUL character");
		if (strcmp(root->keys[i], "__metadata__") == 0)
		{
			if (have_meta)
				return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL, "__metadata__ appears twice");
			have_meta = true;
			if ((rc = parse_metadata(st, &root->items[i], err)) != SAE_OK)
				return rc;
			continue;
		}
		if ((name = strdup(root->keys[i])) == NULL)
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
		t->name = name;
		st->n_tensors++;
		if ((rc = parse_entry(st, name, &root->items[i], t, err)) != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* The 8-byte length, the JSON header, and everything in it. */
static int
parse_file(SaeSafetensors *st, SaeError *err)
{
	uint64_t	n;
	SaeJson    *root = NULL;
	SaeError	jerr;
	int			rc;

	if (st->size < 8)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL,
						"the file is %zu bytes long, too short for the 8-byte header length", st->size);
	n = load_le64(st->base);
	if (n > SAE_SAFETENSORS_MAX_HEADER)
		return st_error(err, SAE_ERR_LIMIT, st->name, NULL,
						"header length %llu is larger than the %d bytes allowed; this is not a safetensors file or it is corrupt",
						(unsigned long long) n, SAE_SAFETENSORS_MAX_HEADER);
	if (n > st->size - 8)
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL,
						"header length %llu runs past the end of the %zu-byte file (truncated?)",
						(unsigned long long) n, st->size);
	st->header_len = (size_t) n;
	if (n == 0 || st->base[8] != '{')
		return st_error(err, SAE_ERR_INVALID_DATA, st->name, NULL, "the header does not start with '{'");
	if ((rc = sae_json_parse((const char *) st->base + 8, st->header_len, &root, &jerr)) != SAE_OK)
		return st_error(err, (SaeErrCode) rc, st->name, NULL, "header: %s", jerr.message);
	rc = parse_header_members(st, root, err);
	sae_json_free(root);
	if (rc != SAE_OK)
		return rc;
	qsort(st->tensors, st->n_tensors, sizeof(SaeTensorInfo), cmp_by_name);
	if ((rc = check_unique_names(st, err)) != SAE_OK || (rc = check_coverage(st, err)) != SAE_OK)
		return rc;
	for (size_t i = 0; i < st->n_tensors; i++)
		st->tensors[i].data = st->base + 8 + st->header_len + st->tensors[i].begin;
	return SAE_OK;
}

/* A handle over size bytes at base; closed again if the header is bad. */
static int
open_buffer(const unsigned char *base, size_t size, bool mapped, const char *name,
			SaeSafetensors **out, SaeError *err)
{
	SaeSafetensors *st = calloc(1, sizeof(SaeSafetensors));
	int			rc;

	*out = NULL;
	if (st == NULL || (st->name = strdup(name)) == NULL)
	{
		free(st);
		if (mapped)
			sae_unmap_file(base, size);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	}
	st->base = base;
	st->size = size;
	st->mapped = mapped;
	if ((rc = parse_file(st, err)) != SAE_OK)
	{
		sae_safetensors_close(st);
		return rc;
	}
	*out = st;
	return SAE_OK;
}

int
sae_safetensors_from_memory(const void *buf, size_t len, const char *name,
							SaeSafetensors **out, SaeError *err)
{
	return open_buffer(buf, len, false, name, out, err);
}

int
sae_safetensors_open(const char *path, SaeSafetensors **out, SaeError *err)
{
	const void *base;
	size_t		size;
	int			rc = sae_map_file(path, "safetensors file", 8, &base, &size, err);

	*out = NULL;
	if (rc != SAE_OK)
		return rc;
	if (base == NULL)
		return st_error(err, SAE_ERR_INVALID_DATA, path, NULL,
						"the file is %lld bytes long, too short for the 8-byte header length",
						(long long) size);
	return open_buffer(base, size, true, path, out, err);
}

void
sae_safetensors_close(SaeSafetensors *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n_tensors; i++)
		free((char *) st->tensors[i].name);
	free(st->tensors);
	for (size_t i = 0; i < st->n_meta; i++)
	{
		free(st->meta_keys[i]);
		free(st->meta_values[i]);
	}
	free(st->meta_keys);
	free(st->meta_values);
	if (st->mapped)
		sae_unmap_file(st->base, st->size);
	free(st->name);
	free(st);
}

const char *
sae_safetensors_name(const SaeSafetensors *st)
{
	return st->name;
}

size_t
sae_safetensors_count(const SaeSafetensors *st)
{
	return st->n_tensors;
}

const SaeTensorInfo *
sae_safetensors_tensor(const SaeSafetensors *st, size_t i)
{
	return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const SaeTensorInfo *
sae_safetensors_find(const SaeSafetensors *st, const char *name)
{
	SaeTensorInfo key;

	memset(&key, 0, sizeof(key));
	key.name = name;
	return bsearch(&key, st->tensors, st->n_tensors, sizeof(SaeTensorInfo), cmp_by_name);
}

const char *
sae_safetensors_metadata(const SaeSafetensors *st, const char *key)
{
	for (size_t i = 0; i < st->n_meta; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_values[i];
	return NULL;
}

int
sae_safetensors_read_f32(const SaeSafetensors *st, const SaeTensorInfo *t,
						 float *out, size_t n, SaeError *err)
{
	if (!sae_dtype_is_convertible(t->dtype))
	{
		st_error(err, SAE_ERR_NOT_SUPPORTED, st->name, t->name,
				 "dtype %s cannot be converted to float32", sae_dtype_name(t->dtype));
		return sae_error_hint(err, "Only F32, F16, BF16 and F64 tensors can be loaded.");
	}
	if (n != (size_t) t->numel)
		return st_error(err, SAE_ERR_INTERNAL, st->name, t->name,
						"asked for %zu floats, the tensor has %lld", n, (long long) t->numel);
	sae_dtype_to_f32(t->dtype, t->data, n, out);
	return SAE_OK;
}

/* --- sharded checkpoints: model.safetensors.index.json --- */

typedef struct IndexEntry
{
	char	   *name;
	size_t		shard;
	const SaeTensorInfo *tensor;
} IndexEntry;

struct SaeSafetensorsIndex
{
	char	   *path;
	size_t		n_entries;
	IndexEntry *entries;		/* sorted by name */
	size_t		n_shards;
	SaeSafetensors **shards;
	char	  **shard_files;	/* as written in the weight_map */
};

static int	ix_error(SaeError *err, SaeErrCode code, const char *index, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

/* Errors about the index name the index file. */
static int
ix_error(SaeError *err, SaeErrCode code, const char *index, const char *fmt,...)
{
	char		msg[400];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sae_error(err, code, "safetensors index \"%.*s\": %s", NAME_SHOWN, index, msg);
}

/* The whole (small) index file into a NUL-terminated buffer. */
static int
read_small_file(const char *path, char **text, size_t *len, SaeError *err)
{
	FILE	   *fp = fopen(path, "rb");
	long		size;
	char	   *buf;

	if (fp == NULL)
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "could not open safetensors index \"%.*s\": %s",
						 NAME_SHOWN, path, strerror(errno));
	if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0)
	{
		fclose(fp);
		return ix_error(err, SAE_ERR_INVALID_PARAMETER, path, "could not read the file");
	}
	if (size > INDEX_MAX_BYTES)
	{
		fclose(fp);
		return ix_error(err, SAE_ERR_LIMIT, path, "the file is %ld bytes, more than the %ld allowed",
						size, INDEX_MAX_BYTES);
	}
	buf = malloc((size_t) size + 1);
	if (buf == NULL || fread(buf, 1, (size_t) size, fp) != (size_t) size)
	{
		free(buf);
		fclose(fp);
		return ix_error(err, buf ? SAE_ERR_INVALID_PARAMETER : SAE_ERR_OUT_OF_MEMORY, path,
						"could not read the file");
	}
	fclose(fp);
	buf[size] = '\0';
	*text = buf;
	*len = (size_t) size;
	return SAE_OK;
}

/*
 * A shard's file name must stay inside the index's folder: relative, no
 * ".." component.  A weight_map is data from the network; it must not be
 * able to point us at /etc/passwd.
 */
static bool
shard_name_is_safe(const char *file)
{
	const char *p = file;

	if (file[0] == '\0' || file[0] == '/')
		return false;
	while (*p)
	{
		size_t		n = strcspn(p, "/");

		if ((n == 2 && p[0] == '.' && p[1] == '.') || n == 0)
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return p[-1] != '/';
}

/* The folder of path plus file. */
static char *
sibling_path(const char *path, const char *file)
{
	const char *slash = strrchr(path, '/');
	size_t		dir = slash ? (size_t) (slash - path) + 1 : 0;
	char	   *out = malloc(dir + strlen(file) + 1);

	if (out != NULL)
	{
		memcpy(out, path, dir);
		strcpy(out + dir, file);
	}
	return out;
}

/* The shard number of file, opening it on first sight. */
static int
index_shard(SaeSafetensorsIndex *ix, const char *file, size_t *shard, SaeError *err)
{
	char	   *path;
	int			rc;

	for (size_t s = ix->n_shards; s-- > 0;)
		if (strcmp(ix->shard_files[s], file) == 0)
		{
			*shard = s;
			return SAE_OK;
		}
	if (!shard_name_is_safe(file))
		return ix_error(err, SAE_ERR_INVALID_DATA, ix->path,
						"shard file name \"%.100s\" is not a relative path inside the index's folder", file);
	if ((path = sibling_path(ix->path, file)) == NULL ||
		(ix->shard_files[ix->n_shards] = strdup(file)) == NULL)
	{
		free(path);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	}
	rc = sae_safetensors_open(path, &ix->shards[ix->n_shards], err);
	free(path);
	if (rc != SAE_OK)
	{
		free(ix->shard_files[ix->n_shards]);
		ix->shard_files[ix->n_shards] = NULL;
		return rc;
	}
	*shard = ix->n_shards++;
	return SAE_OK;
}

/* One weight_map member: the tensor must be in the shard it is mapped to. */
static int
index_entry(SaeSafetensorsIndex *ix, const char *name, size_t name_len, const SaeJson *file,
			SaeError *err)
{
	IndexEntry *e = &ix->entries[ix->n_entries];
	int			rc;

	if (strlen(name) != name_len || !json_cstring(file))
		return ix_error(err, SAE_ERR_INVALID_DATA, ix->path,
						"weight_map entry \"%.100s\" is not a tensor name mapped to a file name", name);
	if ((rc = index_shard(ix, file->string, &e->shard, err)) != SAE_OK)
		return rc;
	e->tensor = sae_safetensors_find(ix->shards[e->shard], name);
	if (e->tensor == NULL)
		return ix_error(err, SAE_ERR_INVALID_DATA, ix->path,
						"tensor \"%.100s\" is mapped to \"%.100s\", which has no such tensor",
						name, file->string);
	if ((e->name = strdup(name)) == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	ix->n_entries++;
	return SAE_OK;
}

/* Name order, for bsearch in sae_safetensors_index_find. */
static int
cmp_entry(const void *a, const void *b)
{
	return strcmp(((const IndexEntry *) a)->name, ((const IndexEntry *) b)->name);
}

/* The weight_map object: entries, shards, then sorted and checked for repeats. */
static int
parse_weight_map(SaeSafetensorsIndex *ix, const SaeJson *map, SaeError *err)
{
	int			rc;

	if (map == NULL || map->type != SAE_JSON_OBJECT)
		return ix_error(err, SAE_ERR_INVALID_DATA, ix->path, "\"weight_map\" is missing or not an object");
	if (map->count == 0)
		return ix_error(err, SAE_ERR_INVALID_DATA, ix->path, "\"weight_map\" is empty");
	ix->entries = calloc(map->count, sizeof(IndexEntry));
	ix->shards = calloc(map->count, sizeof(SaeSafetensors *));
	ix->shard_files = calloc(map->count, sizeof(char *));
	if (ix->entries == NULL || ix->shards == NULL || ix->shard_files == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	for (size_t i = 0; i < map->count; i++)
		if ((rc = index_entry(ix, map->keys[i], map->key_lengths[i], &map->items[i], err)) != SAE_OK)
			return rc;
	qsort(ix->entries, ix->n_entries, sizeof(IndexEntry), cmp_entry);
	for (size_t i = 1; i < ix->n_entries; i++)
		if (strcmp(ix->entries[i - 1].name, ix->entries[i].name) == 0)
			return ix_error(err, SAE_ERR_INVALID_DATA, ix->path,
							"tensor \"%.100s\" appears twice in the weight_map", ix->entries[i].name);
	return SAE_OK;
}

int
sae_safetensors_index_open(const char *index_path, SaeSafetensorsIndex **out, SaeError *err)
{
	SaeSafetensorsIndex *ix = calloc(1, sizeof(SaeSafetensorsIndex));
	char	   *text = NULL;
	size_t		len = 0;
	SaeJson    *root = NULL;
	SaeError	jerr;
	int			rc;

	*out = NULL;
	if (ix == NULL || (ix->path = strdup(index_path)) == NULL)
	{
		free(ix);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	}
	rc = read_small_file(index_path, &text, &len, err);
	if (rc == SAE_OK && (rc = sae_json_parse(text, len, &root, &jerr)) != SAE_OK)
		ix_error(err, (SaeErrCode) rc, index_path, "%s", jerr.message);
	if (rc == SAE_OK && root->type != SAE_JSON_OBJECT)
		rc = ix_error(err, SAE_ERR_INVALID_DATA, index_path, "the index is not a JSON object");
	if (rc == SAE_OK)
		rc = parse_weight_map(ix, sae_json_get(root, "weight_map"), err);
	sae_json_free(root);
	free(text);
	if (rc != SAE_OK)
	{
		sae_safetensors_index_close(ix);
		return rc;
	}
	*out = ix;
	return SAE_OK;
}

void
sae_safetensors_index_close(SaeSafetensorsIndex *ix)
{
	if (ix == NULL)
		return;
	for (size_t i = 0; i < ix->n_entries; i++)
		free(ix->entries[i].name);
	for (size_t s = 0; s < ix->n_shards; s++)
	{
		sae_safetensors_close(ix->shards[s]);
		free(ix->shard_files[s]);
	}
	free(ix->entries);
	free(ix->shards);
	free(ix->shard_files);
	free(ix->path);
	free(ix);
}

size_t
sae_safetensors_index_count(const SaeSafetensorsIndex *ix)
{
	return ix->n_entries;
}

const char *
sae_safetensors_index_name(const SaeSafetensorsIndex *ix, size_t i)
{
	return i < ix->n_entries ? ix->entries[i].name : NULL;
}

size_t
sae_safetensors_index_shard_count(const SaeSafetensorsIndex *ix)
{
	return ix->n_shards;
}

const SaeSafetensors *
sae_safetensors_index_shard(const SaeSafetensorsIndex *ix, size_t i)
{
	return i < ix->n_shards ? ix->shards[i] : NULL;
}

bool
sae_safetensors_index_find(const SaeSafetensorsIndex *ix, const char *name,
						   const SaeSafetensors **file, const SaeTensorInfo **tensor)
{
	IndexEntry	key;
	const IndexEntry *e;

	memset(&key, 0, sizeof(key));
	key.name = (char *) name;
	e = bsearch(&key, ix->entries, ix->n_entries, sizeof(IndexEntry), cmp_entry);
	if (e == NULL)
		return false;
	*file = ix->shards[e->shard];
	*tensor = e->tensor;
	return true;
}
