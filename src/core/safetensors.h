/*
 * safetensors.h — reading .safetensors checkpoints, single files and
 * sharded sets (reference/models.md §1.1–1.3).
 *
 * A file is mapped read-only and its header validated completely before
 * anything is returned: header length against the file size, the JSON,
 * every dtype and shape (no overflow), data offsets that tile the data
 * region exactly (sorted, no holes, no overlaps, nothing past the end),
 * and __metadata__ as a string map.  Tensor data is then read straight
 * from the mapping and converted to float32 on request.
 *
 * The dtype table and the float32 conversions live here too and are used
 * by torch_pickle.c, whose tensors have the same dtypes.
 */
#ifndef SAE_SAFETENSORS_H
#define SAE_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The reference reader refuses larger headers (MAX_HEADER_SIZE in tensor.rs). */
#define SAE_SAFETENSORS_MAX_HEADER 100000000

/* Tensors with more dimensions than this are refused. */
#define SAE_MAX_DIMS 8

typedef enum SaeDtype
{
	SAE_DTYPE_BOOL,
	SAE_DTYPE_U8,
	SAE_DTYPE_I8,
	SAE_DTYPE_F8_E5M2,
	SAE_DTYPE_F8_E4M3,
	SAE_DTYPE_F8_E8M0,
	SAE_DTYPE_F8_E4M3FNUZ,
	SAE_DTYPE_F8_E5M2FNUZ,
	SAE_DTYPE_I16,
	SAE_DTYPE_U16,
	SAE_DTYPE_F16,
	SAE_DTYPE_BF16,
	SAE_DTYPE_I32,
	SAE_DTYPE_U32,
	SAE_DTYPE_F32,
	SAE_DTYPE_F64,
	SAE_DTYPE_I64,
	SAE_DTYPE_U64,
	SAE_DTYPE_C64,
	SAE_DTYPE_F4,
	SAE_DTYPE_F6_E2M3,
	SAE_DTYPE_F6_E3M2,
	SAE_DTYPE_COUNT
} SaeDtype;

/* The safetensors name of a dtype ("F32", "BF16", ...). */
const char *sae_dtype_name(SaeDtype dtype);

/* The dtype named s (safetensors spelling); false if there is none. */
bool		sae_dtype_from_name(const char *s, SaeDtype *dtype);

/* Bits per element (4 and 6 for the sub-byte float formats). */
int			sae_dtype_bits(SaeDtype dtype);

/* Whether sae_dtype_to_f32 converts this dtype (F32, F16, BF16, F64). */
bool		sae_dtype_is_convertible(SaeDtype dtype);

/*
 * n little-endian elements of a convertible dtype at src (any alignment)
 * to float32: F16 and BF16 exactly (subnormals, infinities and NaN
 * payloads kept), F64 rounded to nearest (out-of-range values to ±inf).
 */
void		sae_dtype_to_f32(SaeDtype dtype, const void *src, size_t n, float *dst);

/* One tensor of a safetensors file. */
typedef struct SaeTensorInfo
{
	const char *name;
	SaeDtype	dtype;
	int			ndim;
	int64_t		shape[SAE_MAX_DIMS];
	int64_t		numel;			/* product of shape (1 for a scalar) */
	uint64_t	begin;			/* data_offsets, relative to the data region */
	uint64_t	end;
	const unsigned char *data;	/* begin's address in the file (unaligned) */
} SaeTensorInfo;

typedef struct SaeSafetensors SaeSafetensors;

/*
 * Map and validate the file at path.  The file must not shrink while the
 * handle is open (reading a mapping past a file's end faults).
 */
int			sae_safetensors_open(const char *path, SaeSafetensors **out, SaeError *err);

/*
 * Validate len bytes at buf (not copied: they must outlive the handle);
 * name stands for the file in error messages.
 */
int			sae_safetensors_from_memory(const void *buf, size_t len, const char *name,
										SaeSafetensors **out, SaeError *err);

void		sae_safetensors_close(SaeSafetensors *st);

/* The path or name the handle was opened with. */
const char *sae_safetensors_name(const SaeSafetensors *st);

/* Tensors, sorted by name. */
size_t		sae_safetensors_count(const SaeSafetensors *st);
const SaeTensorInfo *sae_safetensors_tensor(const SaeSafetensors *st, size_t i);

/* The tensor called name, or NULL. */
const SaeTensorInfo *sae_safetensors_find(const SaeSafetensors *st, const char *name);

/* A __metadata__ value, or NULL when the key (or the whole map) is absent. */
const char *sae_safetensors_metadata(const SaeSafetensors *st, const char *key);

/*
 * The tensor as n = numel floats in out.  Dtypes other than F32, F16,
 * BF16 and F64 give SAE_ERR_NOT_SUPPORTED naming the file and tensor.
 */
int			sae_safetensors_read_f32(const SaeSafetensors *st, const SaeTensorInfo *t,
									 float *out, size_t n, SaeError *err);

/*
 * A sharded checkpoint: model.safetensors.index.json with its weight_map
 * (tensor name -> shard file, relative to the index's folder).  Every
 * distinct shard is opened once and validated as above, and every mapped
 * tensor must be in its shard.
 */
typedef struct SaeSafetensorsIndex SaeSafetensorsIndex;

int			sae_safetensors_index_open(const char *index_path, SaeSafetensorsIndex **out,
									   SaeError *err);
void		sae_safetensors_index_close(SaeSafetensorsIndex *ix);

/* Mapped tensor names, sorted. */
size_t		sae_safetensors_index_count(const SaeSafetensorsIndex *ix);
const char *sae_safetensors_index_name(const SaeSafetensorsIndex *ix, size_t i);

/* Shards, in the order of their first appearance in the sorted names. */
size_t		sae_safetensors_index_shard_count(const SaeSafetensorsIndex *ix);
const SaeSafetensors *sae_safetensors_index_shard(const SaeSafetensorsIndex *ix, size_t i);

/* Where the tensor called name lives; false if the weight_map lacks it. */
bool		sae_safetensors_index_find(const SaeSafetensorsIndex *ix, const char *name,
									   const SaeSafetensors **file, const SaeTensorInfo **tensor);

#endif
