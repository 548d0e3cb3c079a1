/*
 * torch_pickle.h — reading pytorch_model.bin state dicts (torch.save's
 * zip format, PyTorch >= 1.6) without Python and without running code.
 *
 * The archive is a ZIP of STORED entries under one top-level folder of any
 * name: <prefix>/data.pkl (a pickle, protocol 2 by default) and the raw
 * little-endian storages <prefix>/data/<key>.  The pickle is interpreted by
 * a small VM that knows only what a state dict needs: dicts, tuples,
 * strings, integers, and the four kinds of global torch writes
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter and the typed storage classes such as
 * torch.FloatStorage).  Any other global (os.system, ...) or opcode is an
 * error naming it and its byte offset: a checkpoint can never make us call
 * anything.
 *
 * The result is a flat map name -> tensor view (dtype, shape, strides and
 * offset into a storage), validated against the storage's size.  Views
 * that share a storage, offsets and non-contiguous strides (a transposed
 * weight) are all read correctly: read_f32 gathers strided views.
 */
#ifndef SAE_TORCH_PICKLE_H
#define SAE_TORCH_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "safetensors.h"

typedef struct SaeTorchTensor
{
	const char *name;
	SaeDtype	dtype;
	int			ndim;
	int64_t		shape[SAE_MAX_DIMS];
	int64_t		stride[SAE_MAX_DIMS];	/* in elements */
	int64_t		storage_offset; /* in elements */
	int64_t		numel;
	bool		contiguous;		/* row-major with no gaps */
	const char *storage_key;	/* the "<key>" of <prefix>/data/<key> */
	int64_t		storage_numel;
	const unsigned char *storage;	/* the storage's bytes (unaligned) */
} SaeTorchTensor;

typedef struct SaeTorchFile SaeTorchFile;

/* Map and read the file at path; as with safetensors, it must not shrink while open. */
int			sae_torch_open(const char *path, SaeTorchFile **out, SaeError *err);

/*
 * Read len bytes at buf (not copied: they must outlive the handle); name
 * stands for the file in error messages.
 */
int			sae_torch_from_memory(const void *buf, size_t len, const char *name,
								  SaeTorchFile **out, SaeError *err);

void		sae_torch_close(SaeTorchFile *tf);

/* The path or name the handle was opened with. */
const char *sae_torch_name(const SaeTorchFile *tf);

/* Tensors, sorted by name. */
size_t		sae_torch_count(const SaeTorchFile *tf);
const SaeTorchTensor *sae_torch_tensor(const SaeTorchFile *tf, size_t i);

/* The tensor called name, or NULL. */
const SaeTorchTensor *sae_torch_find(const SaeTorchFile *tf, const char *name);

/*
 * The tensor as n = numel floats in out, row-major whatever its strides.
 * Dtypes other than F32, F16, BF16 and F64 give SAE_ERR_NOT_SUPPORTED.
 */
int			sae_torch_read_f32(const SaeTorchFile *tf, const SaeTorchTensor *t,
							   float *out, size_t n, SaeError *err);

#endif
