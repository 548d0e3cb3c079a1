/*
 * cuda_internal.cuh — what the CUDA backend's files share: the backend
 * struct, error recording, scratch buffers and the reductions the kernels
 * use.
 *
 * Every op runs on the legacy default stream, in the order the engine calls
 * it, so a model and a trainer in one process (two backends on one GPU)
 * read each other's results without further synchronisation; the engine
 * synchronises where it copies to the host.
 *
 * Errors are sticky: the first failed CUDA or cuBLAS call is kept as a
 * message, every later op returns at once, and device_error() reports it
 * (the engine checks once per step).  Out of memory in alloc is not an
 * error of this kind: alloc returns NULL, as the interface says.
 */
#ifndef SAE_CUDA_INTERNAL_CUH
#define SAE_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <stdint.h>

extern "C"
{
#include "backend.h"
}

/* Scratch buffers the ops reuse; each grows to the largest size asked for. */
enum CudaScratch
{
	SCRATCH_SUMS,				/* doubles: an op's per-column sums */
	SCRATCH_SUMS2,				/* doubles: an op's per-row values */
	SCRATCH_ROWS,				/* a third array: per row, or per column (meanf) */
	SCRATCH_COLS,				/* cuda_col_sums' partial sums per block of rows */
	SCRATCH_RESULT,				/* a few doubles or counters copied to the host */
	SCRATCH_INTS,				/* int32 counts of the sparse path */
	SCRATCH_CUB,				/* CUB's temporary storage */
	SCRATCH_ATTN,				/* attention scores of one sequence */
	SCRATCH_COUNT
};

typedef struct CudaBackend
{
	SaeBackend	be;				/* first: a SaeBackend * is a CudaBackend * */
	int			device;
	cublasHandle_t blas;
	bool		failed;
	char		error[512];
	void	   *scratch[SCRATCH_COUNT];
	size_t		scratch_bytes[SCRATCH_COUNT];
	void	  **allocs;			/* live alloc() results, freed by destroy */
	size_t		n_allocs,
				cap_allocs;
} CudaBackend;

static inline CudaBackend *
cuda_of(SaeBackend *be)
{
	return (CudaBackend *) be;
}

/* Threads per block of the elementwise and per-row kernels. */
#define CUDA_THREADS 256

/* A grid-stride loop over n elements. */
#define FOR_EACH(k, n) \
	for (size_t k = blockIdx.x * (size_t) blockDim.x + threadIdx.x; k < (size_t) (n); \
		 k += (size_t) gridDim.x * blockDim.x)

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned
cuda_blocks(size_t n)
{
	size_t		b = (n + CUDA_THREADS - 1) / CUDA_THREADS;

	return (unsigned) (b == 0 ? 1 : b > 65536 ? 65536 : b);
}

/* cuda_backend.cu */
bool		cuda_ready(CudaBackend *c);
bool		cuda_check(CudaBackend *c, cudaError_t e, const char *what);
bool		cuda_check_blas(CudaBackend *c, cublasStatus_t s, const char *what);
void	   *cuda_scratch(CudaBackend *c, CudaScratch slot, size_t bytes);
bool		cuda_read_back(CudaBackend *c, void *dst, const void *src, size_t bytes);

/* after a launch: a bad configuration shows here, a fault at the next sync */
#define CUDA_LAUNCHED(c, name) cuda_check((c), cudaGetLastError(), (name))

/* cuda_sae_ops.cu: helpers the sparse and LM files use too */
bool		cuda_sum_doubles(CudaBackend *c, const double *v, int64_t n, int stride, double *out_dev);
bool		cuda_col_sums(CudaBackend *c, const float *src, const float *sub, const double *w,
						  int64_t rows, int cols, double *out_dev);

/* The ops of each file, installed into the table by cuda_backend.cu. */
void		cuda_sae_ops(SaeBackend *be);
void		cuda_sparse_ops(SaeBackend *be);
void		cuda_lm_ops(SaeBackend *be);

/* Rows per block of count_positive_kernel (and of the column sums). */
#define COL_BLOCK_ROWS 256

/*
 * count[i] += #{b : f[b][i] > 0} for a B x m matrix: one thread per column
 * per block of rows, added atomically (exact: the counts are integers).
 * Launch on dim3((m + CUDA_THREADS - 1) / CUDA_THREADS, (B + COL_BLOCK_ROWS - 1) / COL_BLOCK_ROWS).
 */
template <typename T>
static __global__ void
count_positive_kernel(const float *f, int B, int m, T *count)
{
	int			i = blockIdx.x * blockDim.x + threadIdx.x;
	int			b0 = blockIdx.y * COL_BLOCK_ROWS,
				b1 = b0 + COL_BLOCK_ROWS < B ? b0 + COL_BLOCK_ROWS : B;
	int			n = 0;

	if (i >= m)
		return;
	for (int b = b0; b < b1; b++)
		n += f[(size_t) b * m + i] > 0;
	if (n > 0)
		atomicAdd(&count[i], (T) n);
}

static inline dim3
count_positive_grid(int B, int m)
{
	return dim3((m + CUDA_THREADS - 1) / CUDA_THREADS, (B + COL_BLOCK_ROWS - 1) / COL_BLOCK_ROWS);
}

/*
 * Sum of v over the block's threads, returned to every thread.  shared
 * holds 32 doubles; the order of additions is fixed by the thread layout,
 * so a result is the same on every run.
 */
static __device__ inline double
block_sum(double v, double *shared)
{
	int			lane = threadIdx.x % 32,
				warp = threadIdx.x / 32;

	for (int o = 16; o > 0; o /= 2)
		v += __shfl_down_sync(0xffffffffu, v, o);
	__syncthreads();			/* shared may still be read by an earlier call */
	if (lane == 0)
		shared[warp] = v;
	__syncthreads();
	if (warp == 0)
	{
		v = lane < (int) (blockDim.x + 31) / 32 ? shared[lane] : 0.0;
		for (int o = 16; o > 0; o /= 2)
			v += __shfl_down_sync(0xffffffffu, v, o);
		if (lane == 0)
			shared[0] = v;
	}
	__syncthreads();
	return shared[0];
}

/* The largest of v over the block's threads, returned to every thread. */
static __device__ inline float
block_max(float v, float *shared)
{
	int			lane = threadIdx.x % 32,
				warp = threadIdx.x / 32;

	for (int o = 16; o > 0; o /= 2)
		v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
	__syncthreads();
	if (lane == 0)
		shared[warp] = v;
	__syncthreads();
	if (warp == 0)
	{
		v = lane < (int) (blockDim.x + 31) / 32 ? shared[lane] : -INFINITY;
		for (int o = 16; o > 0; o /= 2)
			v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
		if (lane == 0)
			shared[0] = v;
	}
	__syncthreads();
	return shared[0];
}

#endif
