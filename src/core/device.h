/*
 * device.h — the CUDA backend, opened on first use.
 *
 * sae.so never links against CUDA: the CUDA backend is a second module
 * (kernels/, built into sae_cuda.so where nvcc is present) that this code
 * dlopen()s the first time a GPU is asked for.  A machine without the
 * module, the CUDA libraries, a driver or a GPU gets an error that says
 * which, and everything on the CPU still works.
 *
 * The module exports one symbol, sae_cuda_module(), returning the table
 * below; abi_version and backend_size guard against a module built from
 * other sources than this sae.so.
 */
#ifndef SAE_DEVICE_H
#define SAE_DEVICE_H

#include "backend.h"
#include "error.h"

#define SAE_CUDA_ABI_VERSION 1
#define SAE_CUDA_MODULE_SYMBOL "sae_cuda_module"

/* One GPU as sae_device_info() lists it. */
typedef struct SaeDeviceInfo
{
	int			index;
	char		name[256];
	int64_t		total_bytes;
	int64_t		free_bytes;
	int			major;			/* compute capability */
	int			minor;
	int			multiprocessors;
	int			driver_version; /* as CUDA encodes it: 1000 * major + 10 * minor */
	int			runtime_version;
} SaeDeviceInfo;

/* What sae_cuda.so exports.  Each call returns false and fills msg on failure. */
typedef struct SaeCudaModule
{
	int			abi_version;
	size_t		backend_size;	/* sizeof(SaeBackend) where the module was built */
	bool		(*device_count) (int *n, char *msg, size_t size);
	bool		(*device_info) (int index, SaeDeviceInfo *out, char *msg, size_t size);
	/* a backend on GPU index; tf32: let cuBLAS use TF32 tensor cores in gemm */
	SaeBackend *(*create) (int index, bool tf32, char *msg, size_t size);
} SaeCudaModule;

/* Which device a run asked for: "cpu", "cuda", "cuda:N" or "auto". */
typedef struct SaeDeviceRequest
{
	bool		cpu;
	bool		automatic;		/* "auto": CUDA when it works, else the CPU */
	int			index;			/* the GPU: N for "cuda:N", 0 for "cuda" and "auto" */
} SaeDeviceRequest;

/* Parse a device name; SAE_ERR_INVALID_PARAMETER if it is none of the above. */
int			sae_device_parse(const char *name, SaeDeviceRequest *out, SaeError *err);

/* The GPUs the module at path sees (n = 0 and an error if it cannot be used). */
int			sae_cuda_devices(const char *path, SaeDeviceInfo *out, int max, int *n,
							 SaeError *err);

/* A CUDA backend on GPU index, from the module at path. */
SaeBackend *sae_backend_cuda_create(const char *path, int index, bool tf32, SaeError *err);

/*
 * Can a and b use each other's memory?  The same device, and the same
 * implementation: a module's backends share its copy op (the CUDA module
 * and its CPU emulation both call GPU 0 "0").
 */
bool		sae_backends_share_memory(const SaeBackend *a, const SaeBackend *b);

/*
 * SAE_OK, or the backend's first device error as SAE_ERR_DEVICE.  Waits
 * for the device's queued work, so errors of asynchronous kernels show.
 */
int			sae_backend_check(SaeBackend *be, SaeError *err);

#endif
