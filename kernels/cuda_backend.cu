/*
 * cuda_backend.cu — the CUDA backend's frame: the module table sae.so
 * opens (device.h), device queries, memory, copies and cuBLAS's GEMM.
 * The ops themselves are in cuda_sae_ops.cu, cuda_sparse_ops.cu and
 * cuda_lm_ops.cu.
 */
#include "cuda_internal.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C"
{
#include "device.h"
}

/* Keep the first failure as the backend's error; true if e is success. */
bool
cuda_check(CudaBackend *c, cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return true;
	if (!c->failed)
	{
		snprintf(c->error, sizeof(c->error), "%s: %s (%s)", what, cudaGetErrorString(e),
				 cudaGetErrorName(e));
		c->failed = true;
	}
	return false;
}

bool
cuda_check_blas(CudaBackend *c, cublasStatus_t s, const char *what)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return true;
	if (!c->failed)
	{
		snprintf(c->error, sizeof(c->error), "%s: %s (%s)", what, cublasGetStatusString(s),
				 cublasGetStatusName(s));
		c->failed = true;
	}
	return false;
}

/*
 * May an op run?  Not after an error; and the calling thread must have
 * this backend's GPU current (a process may hold backends on two GPUs).
 */
bool
cuda_ready(CudaBackend *c)
{
	return !c->failed && cuda_check(c, cudaSetDevice(c->device), "cudaSetDevice");
}

/* A scratch buffer of at least bytes, grown (contents lost) when too small. */
void *
cuda_scratch(CudaBackend *c, CudaScratch slot, size_t bytes)
{
	if (c->scratch_bytes[slot] >= bytes)
		return c->scratch[slot];
	if (c->scratch[slot])
		cudaFree(c->scratch[slot]);
	c->scratch[slot] = NULL;
	c->scratch_bytes[slot] = 0;
	bytes = bytes < 4096 ? 4096 : bytes + bytes / 4;
	if (!cuda_check(c, cudaMalloc(&c->scratch[slot], bytes), "cudaMalloc (scratch)"))
		return NULL;
	c->scratch_bytes[slot] = bytes;
	return c->scratch[slot];
}

/* Copy a result to the host: the op's synchronisation point. */
bool
cuda_read_back(CudaBackend *c, void *dst, const void *src, size_t bytes)
{
	return cuda_check(c, cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

/* Remember a live allocation, so that destroy can free what the caller did not. */
static bool
track(CudaBackend *c, void *p)
{
	if (c->n_allocs == c->cap_allocs)
	{
		size_t		cap = c->cap_allocs ? 2 * c->cap_allocs : 64;
		void	  **grown = (void **) realloc(c->allocs, cap * sizeof(void *));

		if (grown == NULL)
			return false;
		c->allocs = grown;
		c->cap_allocs = cap;
	}
	c->allocs[c->n_allocs++] = p;
	return true;
}

static void *
cuda_alloc(SaeBackend *be, size_t bytes)
{
	CudaBackend *c = cuda_of(be);
	void	   *p = NULL;
	cudaError_t e;

	if (!cuda_ready(c))
		return NULL;
	if ((e = cudaMalloc(&p, bytes ? bytes : 1)) != cudaSuccess)
	{
		if (e == cudaErrorMemoryAllocation)
			(void) cudaGetLastError();	/* out of memory is the caller's to report */
		else
			cuda_check(c, e, "cudaMalloc");	/* a fault that showed here */
		return NULL;
	}
	if (!cuda_check(c, cudaMemset(p, 0, bytes), "cudaMemset") || !track(c, p))
	{
		cudaFree(p);
		return NULL;
	}
	return p;
}

static void
cuda_free(SaeBackend *be, void *ptr)
{
	CudaBackend *c = cuda_of(be);

	if (ptr == NULL)
		return;
	for (size_t i = c->n_allocs; i-- > 0;)
		if (c->allocs[i] == ptr)
		{
			c->allocs[i] = c->allocs[--c->n_allocs];
			cudaSetDevice(c->device);
			cudaFree(ptr);		/* fails only after an error already kept */
			return;
		}
	cuda_check(c, cudaErrorInvalidValue, "free of memory this backend did not allocate (or freed twice)");
}

static void
cuda_to_device(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	CudaBackend *c = cuda_of(be);

	if (bytes > 0 && cuda_ready(c))
		cuda_check(c, cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

static void
cuda_to_host(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	CudaBackend *c = cuda_of(be);

	if (bytes > 0 && cuda_ready(c))
		cuda_read_back(c, dst, src, bytes);
	else if (bytes > 0)
		memset(dst, 0, bytes);	/* after an error: defined contents, not garbage */
}

static void
cuda_copy(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	CudaBackend *c = cuda_of(be);

	if (dst != src && bytes > 0 && cuda_ready(c))
		cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0),
				   "cudaMemcpy on the device");
}

static __global__ void
fill_kernel(float *x, size_t n, float value)
{
	FOR_EACH(i, n)
		x[i] = value;
}

static void
cuda_fill(SaeBackend *be, float *x, size_t n, float value)
{
	CudaBackend *c = cuda_of(be);

	if (n == 0 || !cuda_ready(c))
		return;
	fill_kernel<<<cuda_blocks(n), CUDA_THREADS>>>(x, n, value);
	CUDA_LAUNCHED(c, "fill");
}

/*
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
 * row-major matrix read column-major is its transpose: so cuBLAS gets the
 * operands swapped, each with its own transpose flag, and M and N swapped.
 */
static void
cuda_gemm(SaeBackend *be, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
		  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	CudaBackend *c = cuda_of(be);

	if (M == 0 || N == 0 || !cuda_ready(c))
		return;
	cuda_check_blas(c, cublasSgemm(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
								   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha,
								   B, ldb, A, lda, &beta, C, ldc), "cublasSgemm");
}

/* Wait for queued work; its first failure becomes the backend's error. */
static const char *
cuda_device_error(SaeBackend *be)
{
	CudaBackend *c = cuda_of(be);

	if (cuda_ready(c))
		cuda_check(c, cudaStreamSynchronize(0), "a kernel");
	return c->failed ? c->error : NULL;
}

/* Frees everything the backend still holds: a cancelled run's buffers too. */
static void
cuda_destroy(SaeBackend *be)
{
	CudaBackend *c = cuda_of(be);

	cudaSetDevice(c->device);
	for (size_t i = 0; i < c->n_allocs; i++)
		cudaFree(c->allocs[i]);
	for (int s = 0; s < SCRATCH_COUNT; s++)
		if (c->scratch[s])
			cudaFree(c->scratch[s]);
	if (c->blas)
		cublasDestroy(c->blas);
	(void) cudaGetLastError();
	free(c->allocs);
	free(c);
}

static SaeBackend *
create(int index, bool tf32, char *msg, size_t size)
{
	CudaBackend *c = (CudaBackend *) calloc(1, sizeof(CudaBackend));
	cudaError_t e;
	cublasStatus_t s = CUBLAS_STATUS_SUCCESS;

	if (c == NULL)
	{
		snprintf(msg, size, "out of memory");
		return NULL;
	}
	c->device = index;
	if ((e = cudaSetDevice(index)) != cudaSuccess || (e = cudaFree(0)) != cudaSuccess)
	{
		snprintf(msg, size, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
		free(c);
		return NULL;
	}
	if ((s = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS ||
		(s = cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)) !=
		CUBLAS_STATUS_SUCCESS)
	{
		snprintf(msg, size, "cuBLAS: %s", cublasGetStatusString(s));
		if (c->blas)
			cublasDestroy(c->blas);
		free(c);
		return NULL;
	}
	c->be.name = tf32 ? "cuda (tf32)" : "cuda";
	c->be.impl = c;
	c->be.alloc = cuda_alloc;
	c->be.free = cuda_free;
	c->be.to_device = cuda_to_device;
	c->be.to_host = cuda_to_host;
	c->be.copy = cuda_copy;
	c->be.fill = cuda_fill;
	c->be.gemm = cuda_gemm;
	c->be.destroy = cuda_destroy;
	c->be.device_error = cuda_device_error;
	c->be.host_memory = false;
	c->be.device_index = index;
	cuda_sae_ops(&c->be);
	cuda_sparse_ops(&c->be);
	cuda_lm_ops(&c->be);
	return &c->be;
}

static bool
device_count(int *n, char *msg, size_t size)
{
	cudaError_t e = cudaGetDeviceCount(n);

	if (e != cudaSuccess)
	{
		*n = 0;
		snprintf(msg, size, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
		(void) cudaGetLastError();
		return false;
	}
	return true;
}

static bool
device_info(int index, SaeDeviceInfo *out, char *msg, size_t size)
{
	cudaDeviceProp p;
	size_t		free_b = 0,
				total_b = 0;
	cudaError_t e;

	memset(out, 0, sizeof(*out));
	if ((e = cudaGetDeviceProperties(&p, index)) != cudaSuccess ||
		(e = cudaSetDevice(index)) != cudaSuccess ||
		(e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess ||
		(e = cudaDriverGetVersion(&out->driver_version)) != cudaSuccess ||
		(e = cudaRuntimeGetVersion(&out->runtime_version)) != cudaSuccess)
	{
		snprintf(msg, size, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
		(void) cudaGetLastError();
		return false;
	}
	out->index = index;
	snprintf(out->name, sizeof(out->name), "%s", p.name);
	out->total_bytes = (int64_t) total_b;
	out->free_bytes = (int64_t) free_b;
	out->major = p.major;
	out->minor = p.minor;
	out->multiprocessors = p.multiProcessorCount;
	return true;
}

static const SaeCudaModule module = {
	SAE_CUDA_ABI_VERSION,
	sizeof(SaeBackend),
	device_count,
	device_info,
	create,
};

extern "C" __attribute__((visibility("default"))) const SaeCudaModule *
sae_cuda_module(void)
{
	return &module;
}
