/*
 * torch_pickle.c — see torch_pickle.h.
 *
 * Three parts, each checking everything it reads before trusting it:
 *
 *   1. the ZIP container: end-of-central-directory record (ZIP64 when
 *      present, as torch writes it), central directory, local headers;
 *      only STORED entries can be read;
 *   2. a pickle VM with a stack, a memo and MARKs, for the opcodes a state
 *      dict uses, with globals restricted to an allow-list;
 *   3. the tensors: each rebuilt view is checked against its storage entry
 *      (dtype, size, every element's offset in bounds).
 *
 * All values the VM makes are chained on one list and freed together, so
 * an error at any opcode leaks nothing; memory is bounded by the pickle's
 * length (each opcode makes at most one value, memo keys are capped by it).
 */
#include "torch_pickle.h"
#include "mapfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_SHOWN 200

/*
 * data.pkl of a state dict takes ~150 bytes and ~25 values per tensor, so a
 * model with 100k tensors needs ~15 MB and 2.5M values.  The caps keep a
 * hostile pickle (one value per byte, ~100 bytes each) under ~1 GB.
 */
#define PICKLE_MAX_BYTES ((uint64_t) 64 * 1024 * 1024)
#define PICKLE_MAX_VALUES ((size_t) 8 * 1024 * 1024)

/* GLOBAL module and name lines are short identifiers. */
#define GLOBAL_MAX_LINE 128

typedef struct ZipEntry
{
	const char *name;			/* in the central directory, not NUL-terminated */
	size_t		name_len;
	uint16_t	method;			/* 0 = STORED */
	uint32_t	crc;
	uint64_t	offset;			/* of the data, past the local header */
	uint64_t	size;			/* compressed size (== uncompressed when STORED) */
	uint64_t	usize;
} ZipEntry;

struct SaeTorchFile
{
	char	   *name;
	const unsigned char *base;
	size_t		size;
	bool		mapped;
	size_t		n_entries;
	ZipEntry   *entries;
	const char *prefix;			/* "<prefix>/" of data.pkl, in the central directory */
	size_t		prefix_len;
	size_t		n_tensors;
	SaeTorchTensor *tensors;	/* sorted by name; names and keys owned */
};

static int	tp_error(SaeError *err, SaeErrCode code, const char *file, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

/* Every error names the file. */
static int
tp_error(SaeError *err, SaeErrCode code, const char *file, const char *fmt,...)
{
	char		msg[420];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sae_error(err, code, "pytorch file \"%.*s\": %s", NAME_SHOWN, file, msg);
}

/* An allocation outside the VM failed. */
static int
oom(SaeError *err)
{
	return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
}

/* Little-endian loads from unaligned memory. */
static uint16_t
le16(const unsigned char *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static uint64_t
le64(const unsigned char *p)
{
	return (uint64_t) le32(p) | ((uint64_t) le32(p + 4) << 32);
}

/*
 * Whether well-formed UTF-8 (Unicode Table 3-7: no overlongs, surrogates or
 * code points past U+10FFFF), and free of NULs, so names are C strings the
 * database can store as text.
 */
static bool
utf8_valid(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = s[i];
		size_t		k;
		unsigned char lo = 0x80,
					hi = 0xbf;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef)
		{
			k = 3;
			lo = (c == 0xe0) ? 0xa0 : 0x80;
			hi = (c == 0xed) ? 0x9f : 0xbf;
		}
		else if (c >= 0xf0 && c <= 0xf4)
		{
			k = 4;
			lo = (c == 0xf0) ? 0x90 : 0x80;
			hi = (c == 0xf4) ? 0x8f : 0xbf;
		}
		else
			return false;
		if (n - i < k || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t j = 2; j < k; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xbf)
				return false;
		i += k;
	}
	return true;
}

/* --- 1. the ZIP container --- */

#define ZIP_EOCD_SIG 0x06054b50
#define ZIP64_LOCATOR_SIG 0x07064b50
#define ZIP64_EOCD_SIG 0x06064b50
#define ZIP_CENTRAL_SIG 0x02014b50
#define ZIP_LOCAL_SIG 0x04034b50

/* Where the central directory is and how many entries it has. */
typedef struct ZipDirectory
{
	uint64_t	offset;
	uint64_t	size;
	uint64_t	count;
} ZipDirectory;

/*
 * CRC-32 (ISO-HDLC, as ZIP uses) bit by bit: only data.pkl is checked, a
 * few KB to MB, so a table would buy nothing.
 */
static uint32_t
crc32_bytes(const unsigned char *p, size_t n)
{
	uint32_t	crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++)
	{
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/*
 * The end-of-central-directory record: the last "PK\5\6" whose comment
 * fits in the file.  torch also writes a ZIP64 record with its locator
 * just before; when the locator is there, its numbers are the ones to use.
 */
static int
zip_find_directory(const SaeTorchFile *tf, ZipDirectory *dir, SaeError *err)
{
	const unsigned char *b = tf->base;
	size_t		lowest = tf->size > 22 + 65535 ? tf->size - 22 - 65535 : 0;
	size_t		pos;
	bool		found = false;

	if (tf->size < 22)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "the file is too short to be a ZIP archive");
	for (pos = tf->size - 22 + 1; pos-- > lowest;)
		if (le32(b + pos) == ZIP_EOCD_SIG && pos + 22 + le16(b + pos + 20) <= tf->size)
		{
			found = true;
			break;
		}
	if (!found)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"no ZIP end-of-central-directory record (not a torch.save zip file, or truncated)");
	if (le16(b + pos + 4) != 0 || le16(b + pos + 6) != 0)
		return tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name, "multi-disk ZIP archives are not supported");
	dir->count = le16(b + pos + 10);
	dir->size = le32(b + pos + 12);
	dir->offset = le32(b + pos + 16);
	if (pos >= 20 && le32(b + pos - 20) == ZIP64_LOCATOR_SIG)
	{
		uint64_t	z = le64(b + pos - 20 + 8);

		if (tf->size < 56 || z > tf->size - 56 || le32(b + z) != ZIP64_EOCD_SIG)
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
							"the ZIP64 end-of-central-directory locator points at offset %llu, where there is no ZIP64 record",
							(unsigned long long) z);
		dir->count = le64(b + z + 32);
		dir->size = le64(b + z + 40);
		dir->offset = le64(b + z + 48);
	}
	if (dir->offset > tf->size || dir->size > tf->size - dir->offset)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"the ZIP central directory (%llu bytes at offset %llu) runs past the end of the %zu-byte file",
						(unsigned long long) dir->size, (unsigned long long) dir->offset, tf->size);
	if (dir->count > dir->size / 46)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"the ZIP central directory claims %llu entries, more than its %llu bytes can hold",
						(unsigned long long) dir->count, (unsigned long long) dir->size);
	return SAE_OK;
}

/*
 * The ZIP64 extended-information extra field (id 1) of a central entry:
 * it holds, in this order, only those of uncompressed size, compressed
 * size and local-header offset whose 32-bit field is 0xffffffff.
 */
static bool
zip64_extra(const unsigned char *extra, size_t len, ZipEntry *e, uint64_t *local)
{
	size_t		p = 0;

	while (p + 4 <= len)
	{
		uint16_t	id = le16(extra + p);
		size_t		n = le16(extra + p + 2);
		size_t		q = p + 4;

		if (n > len - q)
			return false;
		if (id == 1)
		{
			uint64_t   *fields[3] = {&e->usize, &e->size, local};

			for (int f = 0; f < 3; f++)
			{
				if (*fields[f] != 0xffffffffu)
					continue;
				if (q + 8 > p + 4 + n)
					return false;
				*fields[f] = le64(extra + q);
				q += 8;
			}
		}
		p += 4 + n;
	}
	return true;
}

/* One central-directory entry at *pos, its local header checked too. */
static int
zip_read_entry(const SaeTorchFile *tf, const ZipDirectory *dir, uint64_t *pos, ZipEntry *e,
			   SaeError *err)
{
	const unsigned char *b = tf->base;
	uint64_t	end = dir->offset + dir->size;
	uint64_t	local;
	size_t		nlen,
				xlen,
				clen;
	uint16_t	flags;

	if (end - *pos < 46 || le32(b + *pos) != ZIP_CENTRAL_SIG)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"bad ZIP central directory entry at offset %llu", (unsigned long long) *pos);
	flags = le16(b + *pos + 8);
	e->method = le16(b + *pos + 10);
	e->crc = le32(b + *pos + 16);
	e->size = le32(b + *pos + 20);
	e->usize = le32(b + *pos + 24);
	nlen = le16(b + *pos + 28);
	xlen = le16(b + *pos + 30);
	clen = le16(b + *pos + 32);
	local = le32(b + *pos + 42);
	if (end - *pos - 46 < (uint64_t) nlen + xlen + clen)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"ZIP central directory entry at offset %llu runs past the directory", (unsigned long long) *pos);
	e->name = (const char *) b + *pos + 46;
	e->name_len = nlen;
	if (!zip64_extra(b + *pos + 46 + nlen, xlen, e, &local))
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"bad ZIP64 extra field in the entry \"%.*s\"", (int) (nlen > 100 ? 100 : nlen), e->name);
	if (flags & 1)
		return tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name,
						"ZIP entry \"%.*s\" is encrypted", (int) (nlen > 100 ? 100 : nlen), e->name);
	*pos += 46 + nlen + xlen + clen;
	if (tf->size < 30 || local > tf->size - 30 || le32(b + local) != ZIP_LOCAL_SIG ||
		le16(b + local + 26) != nlen || (uint64_t) 30 + nlen + le16(b + local + 28) > tf->size - local ||
		memcmp(b + local + 30, e->name, nlen) != 0)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"the local header of ZIP entry \"%.*s\" (offset %llu) is missing or does not match the directory",
						(int) (nlen > 100 ? 100 : nlen), e->name, (unsigned long long) local);
	e->offset = local + 30 + nlen + le16(b + local + 28);
	if (e->size > tf->size - e->offset)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"ZIP entry \"%.*s\" (%llu bytes at offset %llu) runs past the end of the file (truncated?)",
						(int) (nlen > 100 ? 100 : nlen), e->name, (unsigned long long) e->size,
						(unsigned long long) e->offset);
	return SAE_OK;
}

/* All entries of the central directory. */
static int
zip_read_directory(SaeTorchFile *tf, SaeError *err)
{
	ZipDirectory dir;
	uint64_t	pos;
	int			rc;

	memset(&dir, 0, sizeof(dir));
	if ((rc = zip_find_directory(tf, &dir, err)) != SAE_OK)
		return rc;
	tf->entries = calloc(dir.count + 1, sizeof(ZipEntry));
	if (tf->entries == NULL)
		return oom(err);
	pos = dir.offset;
	for (uint64_t i = 0; i < dir.count; i++)
	{
		if ((rc = zip_read_entry(tf, &dir, &pos, &tf->entries[i], err)) != SAE_OK)
			return rc;
		tf->n_entries++;
	}
	return SAE_OK;
}

/* The entry named prefix + rest, or NULL. */
static const ZipEntry *
zip_find(const SaeTorchFile *tf, const char *rest)
{
	size_t		rlen = strlen(rest);

	for (size_t i = 0; i < tf->n_entries; i++)
	{
		const ZipEntry *e = &tf->entries[i];

		if (e->name_len == tf->prefix_len + rlen &&
			memcmp(e->name, tf->prefix, tf->prefix_len) == 0 &&
			memcmp(e->name + tf->prefix_len, rest, rlen) == 0)
			return e;
	}
	return NULL;
}

/* An entry's bytes; compressed entries are refused. */
static int
zip_data(const SaeTorchFile *tf, const ZipEntry *e, const unsigned char **data, SaeError *err)
{
	if (e->method != 0)
	{
		tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name,
				 "ZIP entry \"%.*s\" is compressed (method %u); only stored entries can be read",
				 (int) (e->name_len > 100 ? 100 : e->name_len), e->name, e->method);
		return sae_error_hint(err, "torch.save writes uncompressed archives; re-save the state dict with torch.save, or convert it to model.safetensors.");
	}
	if (e->usize != e->size)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"stored ZIP entry \"%.*s\" has compressed size %llu but size %llu",
						(int) (e->name_len > 100 ? 100 : e->name_len), e->name,
						(unsigned long long) e->size, (unsigned long long) e->usize);
	*data = tf->base + e->offset;
	return SAE_OK;
}

/*
 * The archive's folder is whatever torch.save named it (the file's stem in
 * older versions, "archive" in newer ones): take it from the one top-level
 * "<prefix>/data.pkl".  A file starting with a pickle instead of "PK" is
 * the legacy format of PyTorch < 1.6.
 */
static int
find_prefix(SaeTorchFile *tf, SaeError *err)
{
	for (size_t i = 0; i < tf->n_entries; i++)
	{
		const ZipEntry *e = &tf->entries[i];
		const char *slash = memchr(e->name, '/', e->name_len);

		if (slash == NULL || (size_t) (slash - e->name) + 1 + 8 != e->name_len ||
			memcmp(slash + 1, "data.pkl", 8) != 0)
			continue;
		if (tf->prefix != NULL)
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "the archive holds more than one data.pkl");
		tf->prefix = e->name;
		tf->prefix_len = (size_t) (slash - e->name) + 1;
	}
	if (tf->prefix == NULL)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "the archive has no <folder>/data.pkl entry");
	return SAE_OK;
}

/* "<prefix>/byteorder", when present, must say little-endian. */
static int
check_byteorder(const SaeTorchFile *tf, SaeError *err)
{
	const ZipEntry *e = zip_find(tf, "byteorder");
	const unsigned char *data = NULL;
	int			rc;

	if (e == NULL)
		return SAE_OK;
	if ((rc = zip_data(tf, e, &data, err)) != SAE_OK)
		return rc;
	if (e->size != 6 || memcmp(data, "little", 6) != 0)
		return tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name,
						"the archive was saved on a big-endian machine (byteorder is not \"little\")");
	return SAE_OK;
}

/* --- 2. the pickle VM --- */

typedef enum PvKind
{
	PV_MARK,
	PV_NONE,
	PV_BOOL,
	PV_INT,
	PV_FLOAT,
	PV_STR,
	PV_TUPLE,
	PV_LIST,
	PV_DICT,					/* dict and OrderedDict: keys and values alternate in items */
	PV_GLOBAL,
	PV_STORAGE,
	PV_TENSOR
} PvKind;

static const char *const pv_kind_names[] = {
	"mark", "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global",
	"storage", "tensor"
};

/* The only callables a state dict's pickle may name. */
typedef enum TorchGlobal
{
	G_ORDERED_DICT,
	G_REBUILD_TENSOR_V2,
	G_REBUILD_PARAMETER,
	G_STORAGE
} TorchGlobal;

typedef struct AllowedGlobal
{
	const char *module;
	const char *name;
	TorchGlobal which;
	SaeDtype	dtype;			/* for storages */
} AllowedGlobal;

static const AllowedGlobal allowed_globals[] = {
	{"collections", "OrderedDict", G_ORDERED_DICT, SAE_DTYPE_F32},
	{"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, SAE_DTYPE_F32},
	{"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, SAE_DTYPE_F32},
	{"torch", "FloatStorage", G_STORAGE, SAE_DTYPE_F32},
	{"torch", "DoubleStorage", G_STORAGE, SAE_DTYPE_F64},
	{"torch", "HalfStorage", G_STORAGE, SAE_DTYPE_F16},
	{"torch", "BFloat16Storage", G_STORAGE, SAE_DTYPE_BF16},
	{"torch", "LongStorage", G_STORAGE, SAE_DTYPE_I64},
	{"torch", "IntStorage", G_STORAGE, SAE_DTYPE_I32},
	{"torch", "ShortStorage", G_STORAGE, SAE_DTYPE_I16},
	{"torch", "CharStorage", G_STORAGE, SAE_DTYPE_I8},
	{"torch", "ByteStorage", G_STORAGE, SAE_DTYPE_U8},
	{"torch", "BoolStorage", G_STORAGE, SAE_DTYPE_BOOL},
};

/* The view _rebuild_tensor_v2 describes. */
typedef struct TensorView
{
	int64_t		offset;
	int			ndim;
	int64_t		shape[SAE_MAX_DIMS];
	int64_t		stride[SAE_MAX_DIMS];
} TensorView;

typedef struct Pv
{
	PvKind		kind;
	int64_t		i;				/* BOOL, INT; GLOBAL: TorchGlobal; STORAGE: numel */
	double		f;
	char	   *s;				/* STR (owned, NUL-terminated) */
	size_t		len;
	SaeDtype	dtype;			/* GLOBAL of a storage, STORAGE */
	size_t		n,
				cap;
	struct Pv **items;			/* TUPLE, LIST, DICT */
	struct Pv  *ref;			/* STORAGE: its key (a STR); TENSOR: its STORAGE */
	TensorView *view;			/* TENSOR */
	struct Pv  *next;			/* every value, for freeing */
} Pv;

typedef struct Vm
{
	const SaeTorchFile *tf;
	const unsigned char *code;
	size_t		len;
	size_t		pos;
	size_t		op_at;			/* where the current opcode is, for errors */
	unsigned char op;
	Pv		  **stack;
	size_t		sp,
				stack_cap;
	Pv		  **memo;
	size_t		memo_cap,
				memo_used;
	Pv		   *values;
	size_t		n_values;
	Pv			mark;
	bool		stopped;
	SaeError   *err;
} Vm;

/* Pickle opcodes we know (protocol 2, plus the few protocol 4 adds for framing). */
enum
{
	OP_MARK = '(', OP_STOP = '.', OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M',
	OP_NONE = 'N', OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_BINUNICODE = 'X',
	OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_APPENDS = 'e', OP_BINGET = 'h',
	OP_LONG_BINGET = 'j', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's',
	OP_TUPLE = 't', OP_SETITEMS = 'u', OP_BINFLOAT = 'G', OP_EMPTY_DICT = '}',
	OP_EMPTY_LIST = ']', OP_EMPTY_TUPLE = ')', OP_PROTO = 0x80, OP_TUPLE1 = 0x85,
	OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89,
	OP_LONG1 = 0x8a, OP_SHORT_BINUNICODE = 0x8c, OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94,
	OP_FRAME = 0x95
};

static int	vm_error(Vm *vm, SaeErrCode code, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Errors name data.pkl's byte offset and the opcode being run. */
static int
vm_error(Vm *vm, SaeErrCode code, const char *fmt,...)
{
	char		msg[320];
	char		op[8];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (vm->op >= 0x21 && vm->op < 0x7f)
		snprintf(op, sizeof(op), "'%c'", vm->op);
	else
		snprintf(op, sizeof(op), "0x%02x", vm->op);
	return tp_error(vm->err, code, vm->tf->name, "data.pkl at byte %zu (opcode %s): %s",
					vm->op_at, op, msg);
}

/* A new value, chained for freeing; NULL when out of memory or over the cap. */
static Pv *
vm_new(Vm *vm, PvKind kind)
{
	Pv		   *v;

	if (vm->n_values >= PICKLE_MAX_VALUES)
		return NULL;
	if ((v = calloc(1, sizeof(Pv))) == NULL)
		return NULL;
	vm->n_values++;
	v->kind = kind;
	v->next = vm->values;
	vm->values = v;
	return v;
}

/* An allocation failed: out of memory, or over PICKLE_MAX_VALUES. */
static int
vm_oom(Vm *vm)
{
	if (vm->n_values >= PICKLE_MAX_VALUES)
		return vm_error(vm, SAE_ERR_LIMIT, "more than %zu values; this is not a state dict", PICKLE_MAX_VALUES);
	return vm_error(vm, SAE_ERR_OUT_OF_MEMORY, "out of memory");
}

/* Free every value the VM made, and its stack and memo. */
static void
vm_free_values(Vm *vm)
{
	Pv		   *v = vm->values;

	while (v != NULL)
	{
		Pv		   *next = v->next;

		free(v->s);
		free(v->items);
		free(v->view);
		free(v);
		v = next;
	}
	vm->values = NULL;
	free(vm->stack);
	free(vm->memo);
}

/* Grow an array of value pointers to hold at least need entries. */
static bool
grow_ptrs(Pv ***arr, size_t *cap, size_t need)
{
	size_t		ncap = *cap ? *cap : 8;
	Pv		  **p;

	if (need <= *cap)
		return true;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, ncap * sizeof(Pv *));
	if (p == NULL)
		return false;
	memset(p + *cap, 0, (ncap - *cap) * sizeof(Pv *));
	*arr = p;
	*cap = ncap;
	return true;
}

/* Push v; a NULL v is a failed vm_new, reported here so callers can chain. */
static int
push(Vm *vm, Pv *v)
{
	if (v == NULL || !grow_ptrs(&vm->stack, &vm->stack_cap, vm->sp + 1))
		return vm_oom(vm);
	vm->stack[vm->sp++] = v;
	return SAE_OK;
}

/* Pop a value (not a MARK). */
static int
pop(Vm *vm, Pv **out)
{
	if (vm->sp == 0 || vm->stack[vm->sp - 1]->kind == PV_MARK)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "the stack has no value to pop");
	*out = vm->stack[--vm->sp];
	return SAE_OK;
}

/* The value on top, left there. */
static int
peek(Vm *vm, Pv **out)
{
	if (vm->sp == 0 || vm->stack[vm->sp - 1]->kind == PV_MARK)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "the stack has no value");
	*out = vm->stack[vm->sp - 1];
	return SAE_OK;
}

/* The values above the topmost MARK start at *start; the MARK is removed by the caller. */
static int
find_mark(Vm *vm, size_t *start)
{
	for (size_t i = vm->sp; i-- > 0;)
		if (vm->stack[i]->kind == PV_MARK)
		{
			*start = i + 1;
			return SAE_OK;
		}
	return vm_error(vm, SAE_ERR_INVALID_DATA, "no MARK on the stack");
}

/* Append v to a tuple, list or dict. */
static int
pv_append(Vm *vm, Pv *c, Pv *v)
{
	if (!grow_ptrs(&c->items, &c->cap, c->n + 1))
		return vm_oom(vm);
	c->items[c->n++] = v;
	return SAE_OK;
}

/* n argument bytes after the opcode. */
static int
take(Vm *vm, size_t n, const unsigned char **p)
{
	if (vm->len - vm->pos < n)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "the pickle ends inside the opcode's argument");
	*p = vm->code + vm->pos;
	vm->pos += n;
	return SAE_OK;
}

/* Push a new int. */
static int
push_int(Vm *vm, int64_t i)
{
	Pv		   *v = vm_new(vm, PV_INT);

	if (v != NULL)
		v->i = i;
	return push(vm, v);
}

/* BININT1, BININT2, BININT and LONG1 (up to 8 bytes of two's complement). */
static int
op_int(Vm *vm)
{
	const unsigned char *p = NULL;
	int			rc;

	switch (vm->op)
	{
		case OP_BININT1:
			return (rc = take(vm, 1, &p)) != SAE_OK ? rc : push_int(vm, p[0]);
		case OP_BININT2:
			return (rc = take(vm, 2, &p)) != SAE_OK ? rc : push_int(vm, le16(p));
		case OP_BININT:
			return (rc = take(vm, 4, &p)) != SAE_OK ? rc : push_int(vm, (int32_t) le32(p));
		default:
			{
				uint64_t	u = 0;
				size_t		n;

				if ((rc = take(vm, 1, &p)) != SAE_OK)
					return rc;
				n = p[0];
				if (n > 8)
					return vm_error(vm, SAE_ERR_NOT_SUPPORTED, "a %zu-byte integer does not fit 64 bits", n);
				if ((rc = take(vm, n, &p)) != SAE_OK)
					return rc;
				for (size_t k = 0; k < n; k++)
					u |= (uint64_t) p[k] << (8 * k);
				if (n > 0 && n < 8 && (p[n - 1] & 0x80))
					u |= ~(uint64_t) 0 << (8 * n);
				return push_int(vm, (int64_t) u);
			}
	}
}

/* BINFLOAT: an 8-byte big-endian double. */
static int
op_binfloat(Vm *vm)
{
	const unsigned char *p = NULL;
	uint64_t	u = 0;
	Pv		   *v;
	int			rc;

	if ((rc = take(vm, 8, &p)) != SAE_OK)
		return rc;
	for (int k = 0; k < 8; k++)
		u = (u << 8) | p[k];
	if ((v = vm_new(vm, PV_FLOAT)) != NULL)
		memcpy(&v->f, &u, sizeof(double));
	return push(vm, v);
}

/* BINUNICODE (4-byte length) and SHORT_BINUNICODE (1-byte length). */
static int
op_unicode(Vm *vm)
{
	const unsigned char *p = NULL;
	size_t		n;
	Pv		   *v;
	int			rc;

	if ((rc = take(vm, vm->op == OP_BINUNICODE ? 4 : 1, &p)) != SAE_OK)
		return rc;
	n = vm->op == OP_BINUNICODE ? le32(p) : p[0];
	if ((rc = take(vm, n, &p)) != SAE_OK)
		return rc;
	if (!utf8_valid(p, n))
		return vm_error(vm, SAE_ERR_INVALID_DATA, "the string is not valid UTF-8 or contains a NUL");
	if ((v = vm_new(vm, PV_STR)) == NULL || (v->s = malloc(n + 1)) == NULL)
		return vm_oom(vm);
	memcpy(v->s, p, n);
	v->s[n] = '\0';
	v->len = n;
	return push(vm, v);
}

/* A tuple of the n values on top of the stack (n < 0: those above the MARK). */
static int
op_tuple(Vm *vm, int n)
{
	size_t		start = 0;
	Pv		   *t = vm_new(vm, PV_TUPLE);
	int			rc;

	if (t == NULL)
		return vm_oom(vm);
	if (n < 0)
	{
		if ((rc = find_mark(vm, &start)) != SAE_OK)
			return rc;
	}
	else
	{
		if (vm->sp < (size_t) n)
			return vm_error(vm, SAE_ERR_INVALID_DATA, "the stack has fewer than %d values", n);
		start = vm->sp - (size_t) n;
	}
	for (size_t i = start; i < vm->sp; i++)
	{
		if (vm->stack[i]->kind == PV_MARK)
			return vm_error(vm, SAE_ERR_INVALID_DATA, "a MARK where a tuple item was expected");
		if ((rc = pv_append(vm, t, vm->stack[i])) != SAE_OK)
			return rc;
	}
	vm->sp = (n < 0) ? start - 1 : start;
	return push(vm, t);
}

/* A memo key, which an honest pickler numbers from 0 up: capped by the pickle's length. */
static int
memo_key(Vm *vm, size_t width, size_t *key)
{
	const unsigned char *p = NULL;
	int			rc;

	if ((rc = take(vm, width, &p)) != SAE_OK)
		return rc;
	*key = (width == 1) ? p[0] : le32(p);
	if (*key >= vm->len)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "memo key %zu is out of range", *key);
	return SAE_OK;
}

/* BINPUT, LONG_BINPUT, MEMOIZE: remember the top value. */
static int
op_put(Vm *vm)
{
	size_t		key = vm->memo_used;
	Pv		   *v = NULL;
	int			rc;

	if (vm->op != OP_MEMOIZE &&
		(rc = memo_key(vm, vm->op == OP_BINPUT ? 1 : 4, &key)) != SAE_OK)
		return rc;
	if (key >= vm->len)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "memo key %zu is out of range", key);
	if ((rc = peek(vm, &v)) != SAE_OK)
		return rc;
	if (!grow_ptrs(&vm->memo, &vm->memo_cap, key + 1))
		return vm_oom(vm);
	vm->memo_used += (vm->memo[key] == NULL);
	vm->memo[key] = v;
	return SAE_OK;
}

/* BINGET, LONG_BINGET. */
static int
op_get(Vm *vm)
{
	size_t		key = 0;
	int			rc;

	if ((rc = memo_key(vm, vm->op == OP_BINGET ? 1 : 4, &key)) != SAE_OK)
		return rc;
	if (key >= vm->memo_cap || vm->memo[key] == NULL)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "memo key %zu was never stored", key);
	return push(vm, vm->memo[key]);
}

/* Push the allowed global module.name, or refuse it. */
static int
push_global(Vm *vm, const char *module, size_t mlen, const char *name, size_t nlen)
{
	for (size_t i = 0; i < sizeof(allowed_globals) / sizeof(allowed_globals[0]); i++)
	{
		const AllowedGlobal *g = &allowed_globals[i];
		Pv		   *v;

		if (strlen(g->module) != mlen || memcmp(g->module, module, mlen) != 0 ||
			strlen(g->name) != nlen || memcmp(g->name, name, nlen) != 0)
			continue;
		if ((v = vm_new(vm, PV_GLOBAL)) == NULL)
			return vm_oom(vm);
		v->i = g->which;
		v->dtype = g->dtype;
		return push(vm, v);
	}
	vm_error(vm, SAE_ERR_INVALID_DATA, "global %.*s.%.*s is not allowed in a state dict",
			 (int) (mlen > 60 ? 60 : mlen), module, (int) (nlen > 60 ? 60 : nlen), name);
	return sae_error_detail(vm->err, "Only collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
							"torch._utils._rebuild_parameter and torch.*Storage classes are accepted; "
							"loading never runs code named by the file.");
}

/* One newline-terminated line of printable ASCII (a GLOBAL argument). */
static int
global_line(Vm *vm, const char **s, size_t *n)
{
	const unsigned char *start = vm->code + vm->pos;
	size_t		k = 0;

	while (vm->pos + k < vm->len && k <= GLOBAL_MAX_LINE && start[k] != '\n')
	{
		if (start[k] < 0x20 || start[k] >= 0x7f)
			return vm_error(vm, SAE_ERR_INVALID_DATA, "the global's name has a non-printable byte");
		k++;
	}
	if (vm->pos + k >= vm->len || k > GLOBAL_MAX_LINE)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "the global's name is unterminated or too long");
	*s = (const char *) start;
	*n = k;
	vm->pos += k + 1;
	return SAE_OK;
}

/* GLOBAL "module\nname\n" and STACK_GLOBAL (module and name strings popped). */
static int
op_global(Vm *vm)
{
	const char *module = NULL,
			   *name = NULL;
	size_t		mlen = 0,
				nlen = 0;
	Pv		   *m = NULL,
			   *n = NULL;
	int			rc;

	if (vm->op == OP_GLOBAL)
	{
		if ((rc = global_line(vm, &module, &mlen)) != SAE_OK ||
			(rc = global_line(vm, &name, &nlen)) != SAE_OK)
			return rc;
		return push_global(vm, module, mlen, name, nlen);
	}
	if ((rc = pop(vm, &n)) != SAE_OK || (rc = pop(vm, &m)) != SAE_OK)
		return rc;
	if (m->kind != PV_STR || n->kind != PV_STR)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "STACK_GLOBAL needs two strings");
	return push_global(vm, m->s, m->len, n->s, n->len);
}

/* Whether v is the str s. */
static bool
is_str(const Pv *v, const char *s)
{
	return v->kind == PV_STR && strcmp(v->s, s) == 0;
}

/*
 * BINPERSID: torch's persistent id of a storage,
 * ('storage', <storage class>, '<key>', '<location>', numel).
 */
static int
op_persid(Vm *vm)
{
	Pv		   *pid = NULL,
			   *st;
	int			rc;

	if ((rc = pop(vm, &pid)) != SAE_OK)
		return rc;
	if (pid->kind != PV_TUPLE || pid->n != 5 || !is_str(pid->items[0], "storage") ||
		pid->items[1]->kind != PV_GLOBAL || pid->items[1]->i != G_STORAGE ||
		pid->items[2]->kind != PV_STR || pid->items[3]->kind != PV_STR ||
		pid->items[4]->kind != PV_INT || pid->items[4]->i < 0)
		return vm_error(vm, SAE_ERR_INVALID_DATA,
						"a persistent id must be ('storage', <storage class>, key, location, numel)");
	if ((st = vm_new(vm, PV_STORAGE)) == NULL)
		return vm_oom(vm);
	st->dtype = pid->items[1]->dtype;
	st->ref = pid->items[2];
	st->i = pid->items[4]->i;
	return push(vm, st);
}

/* A tuple of non-negative ints (a size or a stride) into dims. */
static bool
int_tuple(const Pv *t, int64_t *dims, int *ndim)
{
	if (t->kind != PV_TUPLE || t->n > SAE_MAX_DIMS)
		return false;
	for (size_t i = 0; i < t->n; i++)
	{
		if (t->items[i]->kind != PV_INT || t->items[i]->i < 0)
			return false;
		dims[i] = t->items[i]->i;
	}
	*ndim = (int) t->n;
	return true;
}

/*
 * _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): the view, checked against the storage later.
 */
static int
rebuild_tensor(Vm *vm, const Pv *args)
{
	Pv		   *t;
	TensorView *view;
	int			nstride = -1;

	if (args->n < 6 || args->n > 7 || args->items[0]->kind != PV_STORAGE ||
		args->items[1]->kind != PV_INT || args->items[1]->i < 0 || args->items[4]->kind != PV_BOOL)
		return vm_error(vm, SAE_ERR_INVALID_DATA,
						"_rebuild_tensor_v2 needs (storage, offset, size, stride, requires_grad, hooks)");
	if ((t = vm_new(vm, PV_TENSOR)) == NULL || (t->view = view = calloc(1, sizeof(TensorView))) == NULL)
		return vm_oom(vm);
	if (!int_tuple(args->items[2], view->shape, &view->ndim) ||
		!int_tuple(args->items[3], view->stride, &nstride) || nstride != view->ndim)
		return vm_error(vm, SAE_ERR_INVALID_DATA,
						"a tensor's size and stride must be tuples of the same length (at most %d) of non-negative integers",
						SAE_MAX_DIMS);
	view->offset = args->items[1]->i;
	t->ref = args->items[0];
	return push(vm, t);
}

/* REDUCE: call an allowed global with a tuple of arguments. */
static int
op_reduce(Vm *vm)
{
	Pv		   *args = NULL,
			   *fn = NULL;
	int			rc;

	if ((rc = pop(vm, &args)) != SAE_OK || (rc = pop(vm, &fn)) != SAE_OK)
		return rc;
	if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "REDUCE needs a global and a tuple, got a %s and a %s",
						pv_kind_names[fn->kind], pv_kind_names[args->kind]);
	switch ((TorchGlobal) fn->i)
	{
		case G_ORDERED_DICT:
			if (args->n != 0)
				return vm_error(vm, SAE_ERR_INVALID_DATA, "OrderedDict is called with arguments");
			return push(vm, vm_new(vm, PV_DICT));
		case G_REBUILD_TENSOR_V2:
			return rebuild_tensor(vm, args);
		case G_REBUILD_PARAMETER:
			if (args->n != 3 || args->items[0]->kind != PV_TENSOR)
				return vm_error(vm, SAE_ERR_INVALID_DATA, "_rebuild_parameter needs (tensor, requires_grad, hooks)");
			return push(vm, args->items[0]);
		default:
			return vm_error(vm, SAE_ERR_INVALID_DATA, "a storage class cannot be called");
	}
}

/*
 * BUILD sets an object's state.  torch only does it to attach _metadata
 * (module versions) to the state dict's OrderedDict; we need none of it.
 */
static int
op_build(Vm *vm)
{
	Pv		   *state = NULL,
			   *obj = NULL;
	int			rc;

	if ((rc = pop(vm, &state)) != SAE_OK || (rc = peek(vm, &obj)) != SAE_OK)
		return rc;
	if (obj->kind != PV_DICT)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "BUILD on a %s; only a dict's state can be set",
						pv_kind_names[obj->kind]);
	return SAE_OK;
}

/* SETITEM, SETITEMS, APPEND, APPENDS: add the values above the container. */
static int
op_fill(Vm *vm, PvKind want, bool marked)
{
	size_t		start = 0;
	size_t		below = 0;		/* where the container is */
	size_t		k = (want == PV_DICT) ? 2 : 1;
	Pv		   *c;
	int			rc;

	if (marked && (rc = find_mark(vm, &start)) != SAE_OK)
		return rc;
	if (!marked)
		start = vm->sp >= k ? vm->sp - k : 0;
	if (start < (marked ? 2u : 1u) || (!marked && vm->sp < k))
		return vm_error(vm, SAE_ERR_INVALID_DATA, "no container below the items");
	below = start - (marked ? 2 : 1);
	c = vm->stack[below];
	if (c->kind != want)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "expected a %s below the items, found a %s",
						pv_kind_names[want], pv_kind_names[c->kind]);
	if (want == PV_DICT && (vm->sp - start) % 2 != 0)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "an odd number of items for a dict");
	for (size_t i = start; i < vm->sp; i++)
	{
		if (vm->stack[i]->kind == PV_MARK)
			return vm_error(vm, SAE_ERR_INVALID_DATA, "a MARK among the items");
		if ((rc = pv_append(vm, c, vm->stack[i])) != SAE_OK)
			return rc;
	}
	vm->sp = below + 1;
	return SAE_OK;
}

/* Opcodes without arguments that push a fresh value. */
static int
op_simple(Vm *vm)
{
	Pv		   *v;

	switch (vm->op)
	{
		case OP_MARK:
			return push(vm, &vm->mark);
		case OP_NONE:
			return push(vm, vm_new(vm, PV_NONE));
		case OP_NEWTRUE:
		case OP_NEWFALSE:
			if ((v = vm_new(vm, PV_BOOL)) != NULL)
				v->i = (vm->op == OP_NEWTRUE);
			return push(vm, v);
		case OP_EMPTY_DICT:
			return push(vm, vm_new(vm, PV_DICT));
		case OP_EMPTY_LIST:
			return push(vm, vm_new(vm, PV_LIST));
		default:
			return push(vm, vm_new(vm, PV_TUPLE));
	}
}

/* PROTO (2 to 5) and FRAME (a length hint we do not need). */
static int
op_header(Vm *vm)
{
	const unsigned char *p = NULL;
	int			rc;

	if ((rc = take(vm, vm->op == OP_PROTO ? 1 : 8, &p)) != SAE_OK)
		return rc;
	if (vm->op == OP_PROTO && (p[0] < 2 || p[0] > 5))
		return vm_error(vm, SAE_ERR_NOT_SUPPORTED, "pickle protocol %d is not supported", p[0]);
	return SAE_OK;
}

/* Run one opcode. */
static int
vm_step(Vm *vm)
{
	vm->op_at = vm->pos;
	vm->op = vm->code[vm->pos++];
	switch (vm->op)
	{
		case OP_PROTO:
		case OP_FRAME:
			return op_header(vm);
		case OP_STOP:
			vm->stopped = true;
			return SAE_OK;
		case OP_MARK:
		case OP_NONE:
		case OP_NEWTRUE:
		case OP_NEWFALSE:
		case OP_EMPTY_DICT:
		case OP_EMPTY_LIST:
		case OP_EMPTY_TUPLE:
			return op_simple(vm);
		case OP_BININT:
		case OP_BININT1:
		case OP_BININT2:
		case OP_LONG1:
			return op_int(vm);
		case OP_BINFLOAT:
			return op_binfloat(vm);
		case OP_BINUNICODE:
		case OP_SHORT_BINUNICODE:
			return op_unicode(vm);
		case OP_TUPLE:
			return op_tuple(vm, -1);
		case OP_TUPLE1:
		case OP_TUPLE2:
		case OP_TUPLE3:
			return op_tuple(vm, vm->op - OP_TUPLE1 + 1);
		case OP_BINPUT:
		case OP_LONG_BINPUT:
		case OP_MEMOIZE:
			return op_put(vm);
		case OP_BINGET:
		case OP_LONG_BINGET:
			return op_get(vm);
		case OP_GLOBAL:
		case OP_STACK_GLOBAL:
			return op_global(vm);
		case OP_BINPERSID:
			return op_persid(vm);
		case OP_REDUCE:
			return op_reduce(vm);
		case OP_BUILD:
			return op_build(vm);
		case OP_SETITEM:
		case OP_SETITEMS:
			return op_fill(vm, PV_DICT, vm->op == OP_SETITEMS);
		case OP_APPEND:
		case OP_APPENDS:
			return op_fill(vm, PV_LIST, vm->op == OP_APPENDS);
		default:
			return vm_error(vm, SAE_ERR_INVALID_DATA, "this opcode is not supported in a state dict");
	}
}

/* Run the pickle to STOP; *result is the one value left on the stack. */
static int
vm_run(Vm *vm, Pv **result)
{
	int			rc;

	while (!vm->stopped)
	{
		if (vm->pos >= vm->len)
		{
			vm->op_at = vm->pos;
			vm->op = 0;
			return vm_error(vm, SAE_ERR_INVALID_DATA, "the pickle ends without STOP");
		}
		if ((rc = vm_step(vm)) != SAE_OK)
			return rc;
	}
	if (vm->sp != 1 || vm->stack[0]->kind == PV_MARK)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "STOP with %zu values on the stack instead of one", vm->sp);
	if (vm->pos != vm->len)
		return vm_error(vm, SAE_ERR_INVALID_DATA, "%zu bytes follow STOP", vm->len - vm->pos);
	*result = vm->stack[0];
	return SAE_OK;
}

/* --- 3. the tensors --- */

/* Row-major strides for the shape, ignoring dimensions of size 1. */
static bool
view_is_contiguous(const SaeTorchTensor *t)
{
	int64_t		expect = 1;

	for (int d = t->ndim - 1; d >= 0; d--)
	{
		if (t->shape[d] != 1 && t->stride[d] != expect)
			return false;
		expect *= t->shape[d];
	}
	return true;
}

/*
 * The view's element count, and that its farthest element,
 * offset + sum (shape - 1) * stride, lies inside the storage, all in
 * overflow-checked arithmetic.
 */
static int
check_view(const SaeTorchFile *tf, SaeTorchTensor *t, SaeError *err)
{
	int64_t		last = t->storage_offset;
	bool		empty = false;

	for (int d = 0; d < t->ndim; d++)
		empty |= (t->shape[d] == 0);
	t->numel = empty ? 0 : 1;
	for (int d = 0; d < t->ndim && !empty; d++)
	{
		int64_t		reach;

		if (t->numel > INT64_MAX / t->shape[d])
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "tensor \"%.100s\": the element count overflows",
							t->name);
		t->numel *= t->shape[d];
		if (t->stride[d] != 0 && t->shape[d] - 1 > INT64_MAX / t->stride[d])
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "tensor \"%.100s\": a stride overflows",
							t->name);
		reach = (t->shape[d] - 1) * t->stride[d];
		if (last > INT64_MAX - reach)
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "tensor \"%.100s\": the view overflows",
							t->name);
		last += reach;
	}
	if (!empty && last >= t->storage_numel)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"tensor \"%.100s\": its view (offset %lld, reaching element %lld) runs past its storage \"%.40s\" of %lld elements",
						t->name, (long long) t->storage_offset, (long long) last, t->storage_key,
						(long long) t->storage_numel);
	t->contiguous = view_is_contiguous(t);
	return SAE_OK;
}

/* The storage entry <prefix>/data/<key>, which must hold exactly numel elements. */
static int
attach_storage(const SaeTorchFile *tf, SaeTorchTensor *t, SaeError *err)
{
	char		rest[128];
	const ZipEntry *e;
	uint64_t	itemsize = (uint64_t) sae_dtype_bits(t->dtype) / 8;
	int			rc;

	if (strlen(t->storage_key) > 100)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "tensor \"%.100s\": storage key is too long", t->name);
	snprintf(rest, sizeof(rest), "data/%s", t->storage_key);
	if ((e = zip_find(tf, rest)) == NULL)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"tensor \"%.100s\": the archive has no entry for its storage \"%s\"", t->name, t->storage_key);
	if ((rc = zip_data(tf, e, &t->storage, err)) != SAE_OK)
		return rc;
	if ((uint64_t) t->storage_numel > UINT64_MAX / itemsize ||
		e->size != (uint64_t) t->storage_numel * itemsize)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name,
						"tensor \"%.100s\": storage \"%s\" has %llu bytes, not %lld elements of %s",
						t->name, t->storage_key, (unsigned long long) e->size,
						(long long) t->storage_numel, sae_dtype_name(t->dtype));
	return check_view(tf, t, err);
}

/* One state-dict entry: a str key and a tensor value. */
static int
make_tensor(SaeTorchFile *tf, const Pv *key, const Pv *value, SaeTorchTensor *t, SaeError *err)
{
	const Pv   *storage;

	if (key->kind != PV_STR)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "a state dict key is a %s, not a str",
						pv_kind_names[key->kind]);
	if (value->kind != PV_TENSOR)
		return tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name,
						"entry \"%.100s\" is a %s, not a tensor; only flat state dicts (name -> tensor) can be read",
						key->s, pv_kind_names[value->kind]);
	storage = value->ref;
	if ((t->name = strdup(key->s)) == NULL || (t->storage_key = strdup(storage->ref->s)) == NULL)
		return oom(err);
	t->dtype = storage->dtype;
	t->storage_numel = storage->i;
	t->ndim = value->view->ndim;
	t->storage_offset = value->view->offset;
	memcpy(t->shape, value->view->shape, sizeof(t->shape));
	memcpy(t->stride, value->view->stride, sizeof(t->stride));
	return attach_storage(tf, t, err);
}

/* Name order, for bsearch in sae_torch_find. */
static int
cmp_tensor_name(const void *a, const void *b)
{
	return strcmp(((const SaeTorchTensor *) a)->name, ((const SaeTorchTensor *) b)->name);
}

/* The unpickled dict into tf->tensors, sorted, with unique names. */
static int
collect_tensors(SaeTorchFile *tf, const Pv *dict, SaeError *err)
{
	int			rc;

	if (dict->kind != PV_DICT)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "data.pkl holds a %s, not a state dict",
						pv_kind_names[dict->kind]);
	tf->tensors = calloc(dict->n / 2 + 1, sizeof(SaeTorchTensor));
	if (tf->tensors == NULL)
		return oom(err);
	for (size_t i = 0; i + 1 < dict->n; i += 2)
	{
		tf->n_tensors++;
		if ((rc = make_tensor(tf, dict->items[i], dict->items[i + 1], &tf->tensors[tf->n_tensors - 1], err)) != SAE_OK)
			return rc;
	}
	qsort(tf->tensors, tf->n_tensors, sizeof(SaeTorchTensor), cmp_tensor_name);
	for (size_t i = 1; i < tf->n_tensors; i++)
		if (strcmp(tf->tensors[i - 1].name, tf->tensors[i].name) == 0)
			return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "tensor \"%.100s\" appears twice",
							tf->tensors[i].name);
	return SAE_OK;
}

/* data.pkl: found, stored, its CRC right, then unpickled into tensors. */
static int
read_state_dict(SaeTorchFile *tf, SaeError *err)
{
	const ZipEntry *e = zip_find(tf, "data.pkl");
	const unsigned char *code = NULL;
	Vm			vm;
	Pv		   *result = NULL;
	int			rc;

	if ((rc = zip_data(tf, e, &code, err)) != SAE_OK)
		return rc;
	if (e->size > PICKLE_MAX_BYTES)
		return tp_error(err, SAE_ERR_LIMIT, tf->name, "data.pkl is %llu bytes, more than the %llu allowed",
						(unsigned long long) e->size, (unsigned long long) PICKLE_MAX_BYTES);
	if (crc32_bytes(code, e->size) != e->crc)
		return tp_error(err, SAE_ERR_INVALID_DATA, tf->name, "data.pkl fails its CRC check (the file is corrupt)");
	memset(&vm, 0, sizeof(vm));
	vm.tf = tf;
	vm.code = code;
	vm.len = e->size;
	vm.err = err;
	vm.mark.kind = PV_MARK;
	rc = vm_run(&vm, &result);
	if (rc == SAE_OK)
		rc = collect_tensors(tf, result, err);
	vm_free_values(&vm);
	return rc;
}

/* The legacy (PyTorch < 1.6) format is a bare pickle stream, not a ZIP. */
static int
check_not_legacy(const SaeTorchFile *tf, SaeError *err)
{
	if (tf->size >= 2 && tf->base[0] == OP_PROTO)
	{
		tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name,
				 "this is the legacy torch.save format (PyTorch < 1.6), which is not supported");
		return sae_error_hint(err, "Re-save it with a recent PyTorch, or convert it to model.safetensors.");
	}
	return SAE_OK;
}

/* A handle over size bytes at base; closed again on any error. */
static int
open_buffer(const unsigned char *base, size_t size, bool mapped, const char *name,
			SaeTorchFile **out, SaeError *err)
{
	SaeTorchFile *tf = calloc(1, sizeof(SaeTorchFile));
	int			rc;

	*out = NULL;
	if (tf == NULL || (tf->name = strdup(name)) == NULL)
	{
		free(tf);
		if (mapped)
			sae_unmap_file(base, size);
		return oom(err);
	}
	tf->base = base;
	tf->size = size;
	tf->mapped = mapped;
	if ((rc = check_not_legacy(tf, err)) != SAE_OK ||
		(rc = zip_read_directory(tf, err)) != SAE_OK ||
		(rc = find_prefix(tf, err)) != SAE_OK ||
		(rc = check_byteorder(tf, err)) != SAE_OK ||
		(rc = read_state_dict(tf, err)) != SAE_OK)
	{
		sae_torch_close(tf);
		return rc;
	}
	*out = tf;
	return SAE_OK;
}

int
sae_torch_from_memory(const void *buf, size_t len, const char *name,
					  SaeTorchFile **out, SaeError *err)
{
	return open_buffer(buf, len, false, name, out, err);
}

int
sae_torch_open(const char *path, SaeTorchFile **out, SaeError *err)
{
	const void *base;
	size_t		size;
	int			rc = sae_map_file(path, "pytorch file", 22, &base, &size, err);

	*out = NULL;
	if (rc != SAE_OK)
		return rc;
	if (base == NULL)
		return tp_error(err, SAE_ERR_INVALID_DATA, path, "the file is too short to be a ZIP archive");
	return open_buffer(base, size, true, path, out, err);
}

void
sae_torch_close(SaeTorchFile *tf)
{
	if (tf == NULL)
		return;
	for (size_t i = 0; i < tf->n_tensors; i++)
	{
		free((char *) tf->tensors[i].name);
		free((char *) tf->tensors[i].storage_key);
	}
	free(tf->tensors);
	free(tf->entries);
	if (tf->mapped)
		sae_unmap_file(tf->base, tf->size);
	free(tf->name);
	free(tf);
}

const char *
sae_torch_name(const SaeTorchFile *tf)
{
	return tf->name;
}

size_t
sae_torch_count(const SaeTorchFile *tf)
{
	return tf->n_tensors;
}

const SaeTorchTensor *
sae_torch_tensor(const SaeTorchFile *tf, size_t i)
{
	return i < tf->n_tensors ? &tf->tensors[i] : NULL;
}

const SaeTorchTensor *
sae_torch_find(const SaeTorchFile *tf, const char *name)
{
	SaeTorchTensor key;

	memset(&key, 0, sizeof(key));
	key.name = name;
	return bsearch(&key, tf->tensors, tf->n_tensors, sizeof(SaeTorchTensor), cmp_tensor_name);
}

/*
 * A strided view, element by element in row-major order: an odometer over
 * the indices, moving the storage position by each dimension's stride.
 */
static void
gather_f32(const SaeTorchTensor *t, float *out)
{
	size_t		itemsize = (size_t) sae_dtype_bits(t->dtype) / 8;
	int64_t		idx[SAE_MAX_DIMS] = {0};
	int64_t		pos = t->storage_offset;

	for (int64_t i = 0; i < t->numel; i++)
	{
		int			d = t->ndim - 1;

		sae_dtype_to_f32(t->dtype, t->storage + (size_t) pos * itemsize, 1, &out[i]);
		while (d >= 0)
		{
			pos += t->stride[d];
			if (++idx[d] < t->shape[d])
				break;
			pos -= t->stride[d] * t->shape[d];
			idx[d] = 0;
			d--;
		}
	}
}

int
sae_torch_read_f32(const SaeTorchFile *tf, const SaeTorchTensor *t,
				   float *out, size_t n, SaeError *err)
{
	size_t		itemsize = (size_t) sae_dtype_bits(t->dtype) / 8;

	if (!sae_dtype_is_convertible(t->dtype))
	{
		tp_error(err, SAE_ERR_NOT_SUPPORTED, tf->name, "tensor \"%.100s\": dtype %s cannot be converted to float32",
				 t->name, sae_dtype_name(t->dtype));
		return sae_error_hint(err, "Only float32, float16, bfloat16 and float64 tensors can be loaded.");
	}
	if (n != (size_t) t->numel)
		return tp_error(err, SAE_ERR_INTERNAL, tf->name, "tensor \"%.100s\": asked for %zu floats, it has %lld",
						t->name, n, (long long) t->numel);
	if (t->contiguous)
		sae_dtype_to_f32(t->dtype, t->storage + (size_t) t->storage_offset * itemsize, n, out);
	else
		gather_f32(t, out);
	return SAE_OK;
}
