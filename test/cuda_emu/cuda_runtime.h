/*
 * cuda_runtime.h — CUDA emulated on the CPU, for testing the CUDA backend's
 * logic on machines without a GPU (see README.md).  This header stands in
 * for the CUDA runtime and the kernel language when the kernels/ sources are
 * compiled by g++ (after launches.py rewrote their <<<>>> launches).
 *
 * Memory is host memory, counted (cudaMemGetInfo says what is in use, and
 * cudaFree refuses pointers it did not hand out); every call is synchronous; a launch runs its
 * blocks one after another, each block's threads as fibers that switch at
 * __syncthreads and warp shuffles.  __shared__ becomes static, which is
 * block-shared memory because blocks never overlap.
 */
#ifndef SAE_CUDA_EMU_RUNTIME_H
#define SAE_CUDA_EMU_RUNTIME_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline

struct uint3
{
	unsigned	x, y, z;
};

struct dim3
{
	unsigned	x, y, z;

	dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

/* Run body as every thread of every block of the grid (launches.py writes these calls). */
void		emu_launch(dim3 grid, dim3 block, const std::function<void()> &body);

void		__syncthreads();

/* Warp shuffles: each lane leaves its value, waits for the warp, reads another lane's. */
int			emu_shfl_put(const void *v, size_t size);
void		emu_shfl_get(int gen, unsigned lane, void *out, size_t size);

template <typename T>
T
__shfl_down_sync(unsigned mask, T v, int offset)
{
	unsigned	lane = threadIdx.x % 32;
	int			gen = emu_shfl_put(&v, sizeof(T));
	T			out = v;

	emu_shfl_get(gen, lane + offset < 32 ? lane + offset : lane, &out, sizeof(T));
	return out;
}

/* Fibers of one block never run at the same time: plain additions are atomic here. */
template <typename T, typename U>
T
atomicAdd(T *addr, U v)
{
	T			old = *addr;

	*addr = old + (T) v;
	return old;
}

typedef enum cudaError
{
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidDevice = 101,
	cudaErrorNoDevice = 100,
	cudaErrorLaunchFailure = 719
} cudaError_t;

enum cudaMemcpyKind
{
	cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice
};

typedef struct CUstream_st *cudaStream_t;

struct cudaDeviceProp
{
	char		name[256];
	int			major;
	int			minor;
	int			multiProcessorCount;
};

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);

template <typename T>
cudaError_t
cudaMalloc(T **p, size_t bytes)
{
	return cudaMalloc((void **) p, bytes);
}

#endif
