/*
 * emu.cpp — the CPU side of the CUDA emulation (see cuda_runtime.h): the
 * runtime calls, the fiber scheduler behind launches, __syncthreads and
 * warp shuffles, and cuBLAS's two products.
 *
 * A launch runs blocks one at a time.  A block's threads are fibers
 * (a stack each, switched by emu_switch below), resumed in thread order; a fiber runs until it finishes or waits
 * at __syncthreads (released when every unfinished thread of the block is
 * waiting there) or at a warp shuffle (released when every unfinished lane
 * of its warp is).  Anything else left waiting is a deadlock, which the
 * real GPU would not survive either: the emulator aborts saying so.
 */
#include "cublas_v2.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include <vector>

uint3		threadIdx, blockIdx;
dim3		blockDim, gridDim;

namespace
{

enum FiberState
{
	RUNNABLE, AT_SYNC, AT_WARP, DONE
};

struct Fiber
{
	void	   *sp;				/* its saved stack pointer while switched out */
	FiberState	state;
	int			shfl_gen;		/* shuffles done: picks the half of shfl_slots to use */
};

const size_t STACK_BYTES = 256 * 1024;
const int	MAX_THREADS = 1024;

void	   *scheduler;
std::vector<Fiber> fibers(MAX_THREADS);
std::vector<char *> stacks(MAX_THREADS);
Fiber	   *current;
const std::function<void()> *kernel_body;
/* [gen & 1][thread]: each lane's value of a shuffle, two halves so a fast lane cannot overwrite one still read */
unsigned long long shfl_slots[2][MAX_THREADS];

}								/* namespace */

/*
 * Save the callee-saved registers on this stack and its pointer in *save,
 * then continue on the stack load saved the same way (x86-64 System V).
 * glibc's swapcontext would do, but makes a system call per switch.  The
 * floating-point control state (MXCSR, x87) is not switched: nothing here
 * changes it.
 */
extern "C" void emu_switch(void **save, void *load);
asm(".pushsection .text\n"
	".globl emu_switch\n"
	".hidden emu_switch\n"
	".type emu_switch, @function\n"
	"emu_switch:\n"
	"	pushq %rbp\n	pushq %rbx\n	pushq %r12\n	pushq %r13\n	pushq %r14\n	pushq %r15\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	popq %r15\n	popq %r14\n	popq %r13\n	popq %r12\n	popq %rbx\n	popq %rbp\n"
	"	ret\n"
	".size emu_switch, . - emu_switch\n"
	".popsection\n");

namespace
{

/* Where a new fiber starts: the kernel, then back to the scheduler for good. */
void
fiber_main()
{
	(*kernel_body) ();
	current->state = DONE;
	emu_switch(&current->sp, scheduler);
}

/* STACK_BYTES of stack above a guard page, so that an overflow faults rather than corrupts. */
char *
new_stack()
{
	char	   *p = (char *) mmap(NULL, STACK_BYTES + 4096, PROT_READ | PROT_WRITE,
								  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p, 4096, PROT_NONE) != 0)
	{
		fprintf(stderr, "cuda_emu: no memory for fiber stacks\n");
		abort();
	}
	return p + 4096;
}

/*
 * A fresh stack that emu_switch can load: six zero registers, then
 * fiber_main as the return address, entered with the stack aligned as
 * after a call.
 */
void *
fresh_stack(char *base)
{
	uintptr_t	top = ((uintptr_t) base + STACK_BYTES) & ~(uintptr_t) 15;
	void	  **sp = (void **) top;

	*--sp = NULL;				/* fiber_main's return address: never used */
	*--sp = (void *) fiber_main;
	for (int i = 0; i < 6; i++)
		*--sp = NULL;
	return sp;
}

void
wait_as(FiberState s)
{
	current->state = s;
	emu_switch(&current->sp, scheduler);
}

/* Release the waiters whose barrier is complete; false if none could be. */
bool
release(int n)
{
	bool		all_sync = true,
				any_waiting = false,
				released = false;

	for (int w = 0; w * 32 < n; w++)
	{
		bool		warp_ready = true,
					warp_waits = false;

		for (int i = w * 32; i < n && i < w * 32 + 32; i++)
		{
			warp_waits |= fibers[i].state == AT_WARP;
			warp_ready &= fibers[i].state == AT_WARP || fibers[i].state == DONE;
		}
		for (int i = w * 32; warp_waits && warp_ready && i < n && i < w * 32 + 32; i++)
			if (fibers[i].state == DONE)
			{
				fprintf(stderr, "cuda_emu: a warp shuffle in block (%u, %u) while lane %d has exited\n",
						blockIdx.x, blockIdx.y, i % 32);
				abort();
			}
		if (warp_waits && warp_ready)
		{
			for (int i = w * 32; i < n && i < w * 32 + 32; i++)
				if (fibers[i].state == AT_WARP)
					fibers[i].state = RUNNABLE;
			released = true;
		}
	}
	for (int i = 0; i < n; i++)
	{
		any_waiting |= fibers[i].state == AT_SYNC;
		all_sync &= fibers[i].state == AT_SYNC || fibers[i].state == DONE;
	}
	if (any_waiting && all_sync)
	{
		for (int i = 0; i < n; i++)
			if (fibers[i].state == AT_SYNC)
				fibers[i].state = RUNNABLE;
		released = true;
	}
	return released;
}

void
run_block(int n)
{
	for (int i = 0; i < n; i++)
	{
		if (stacks[i] == NULL)
			stacks[i] = new_stack();
		fibers[i].sp = fresh_stack(stacks[i]);
		fibers[i].state = RUNNABLE;
		fibers[i].shfl_gen = 0;
	}
	for (;;)
	{
		bool		ran = false,
					done = true;

		for (int i = 0; i < n; i++)
			if (fibers[i].state == RUNNABLE)
			{
				current = &fibers[i];
				threadIdx = {(unsigned) i % blockDim.x, (unsigned) i / blockDim.x % blockDim.y,
				(unsigned) i / (blockDim.x * blockDim.y)};
				emu_switch(&scheduler, fibers[i].sp);
				ran = true;
			}
		for (int i = 0; i < n; i++)
			done &= fibers[i].state == DONE;
		if (done)
			return;
		if (!release(n) && !ran)
		{
			fprintf(stderr, "cuda_emu: deadlock in block (%u, %u): threads wait at barriers others never reach\n",
					blockIdx.x, blockIdx.y);
			abort();
		}
	}
}

/*
 * A fault, on request (sae_cuda_emu_fail_after): sticky as a real kernel
 * fault is, every later call returns it until the tests reset it.
 */
int			launches_until_fault = -1;
cudaError_t sticky = cudaSuccess;

}								/* namespace */

/* Tests: the n-th launch from now faults (n <= 0: none; n < 0 also clears a fault). */
extern "C" __attribute__((visibility("default"))) void
sae_cuda_emu_fail_after(int n)
{
	launches_until_fault = n;
	if (n < 0)
		sticky = cudaSuccess;
}

void
emu_launch(dim3 grid, dim3 block, const std::function<void()> &body)
{
	int			n = (int) (block.x * block.y * block.z);

	if (sticky != cudaSuccess || (launches_until_fault > 0 && --launches_until_fault == 0))
	{
		sticky = cudaErrorLaunchFailure;
		return;
	}

	if (n > MAX_THREADS || n % 32 != 0)
	{
		fprintf(stderr, "cuda_emu: a block of %d threads (the backend uses multiples of 32, at most %d)\n",
				n, MAX_THREADS);
		abort();
	}
	if (grid.x < 1 || grid.x > 2147483647u || grid.y < 1 || grid.y > 65535 || grid.z < 1 || grid.z > 65535)
	{
		fprintf(stderr, "cuda_emu: grid (%u, %u, %u) is beyond CUDA's limits\n", grid.x, grid.y, grid.z);
		abort();
	}
	gridDim = grid;
	blockDim = block;
	kernel_body = &body;
	for (unsigned z = 0; z < grid.z; z++)
		for (unsigned y = 0; y < grid.y; y++)
			for (unsigned x = 0; x < grid.x; x++)
			{
				blockIdx = {x, y, z};
				run_block(n);
			}
}

void
__syncthreads()
{
	wait_as(AT_SYNC);
}

int
emu_shfl_put(const void *v, size_t size)
{
	int			gen = current->shfl_gen++;
	int			me = (int) (current - &fibers[0]);

	memcpy(&shfl_slots[gen & 1][me], v, size);
	wait_as(AT_WARP);
	return gen;
}

void
emu_shfl_get(int gen, unsigned lane, void *out, size_t size)
{
	int			me = (int) (current - &fibers[0]);

	memcpy(out, &shfl_slots[gen & 1][me - me % 32 + lane], size);
}

/* ------------------------------------------------------------------ runtime */

const char *
cudaGetErrorString(cudaError_t e)
{
	switch (e)
	{
		case cudaSuccess:
			return "no error";
		case cudaErrorMemoryAllocation:
			return "out of memory";
		case cudaErrorLaunchFailure:
			return "unspecified launch failure";
		default:
			return "invalid argument";
	}
}

const char *
cudaGetErrorName(cudaError_t e)
{
	switch (e)
	{
		case cudaSuccess:
			return "cudaSuccess";
		case cudaErrorMemoryAllocation:
			return "cudaErrorMemoryAllocation";
		case cudaErrorLaunchFailure:
			return "cudaErrorLaunchFailure";
		default:
			return "cudaErrorInvalidValue";
	}
}

cudaError_t cudaGetLastError(void) { return sticky; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return sticky; }

cudaError_t
cudaSetDevice(int device)
{
	return sticky != cudaSuccess ? sticky : device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t
cudaGetDeviceCount(int *n)
{
	*n = 1;
	return cudaSuccess;
}

cudaError_t
cudaGetDeviceProperties(cudaDeviceProp *p, int device)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "CUDA emulated on the CPU (test/cuda_emu)");
	p->multiProcessorCount = 1;
	return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

/* The emulated device's memory: 4 GiB, less what cudaMalloc handed out and cudaFree did not take back. */
static const size_t TOTAL_BYTES = (size_t) 1 << 32;
static std::unordered_map<void *, size_t> live;
static size_t live_bytes;

cudaError_t
cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
	*total_bytes = TOTAL_BYTES;
	*free_bytes = TOTAL_BYTES - live_bytes;
	return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) { *v = 0; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 0; return cudaSuccess; }

/* "Device" memory is host memory, filled with a pattern so that reading what was never written shows. */
cudaError_t
cudaMalloc(void **p, size_t bytes)
{
	if (sticky != cudaSuccess)
		return sticky;
	*p = live_bytes + bytes > TOTAL_BYTES ? NULL : malloc(bytes ? bytes : 1);
	if (*p == NULL)
		return cudaErrorMemoryAllocation;
	memset(*p, 0xA5, bytes);
	live[*p] = bytes;
	live_bytes += bytes;
	return cudaSuccess;
}

cudaError_t
cudaFree(void *p)
{
	auto		it = live.find(p);

	if (p == NULL)
		return cudaSuccess;
	if (it == live.end())
	{
		fprintf(stderr, "cuda_emu: cudaFree(%p): not from cudaMalloc, or freed twice\n", p);
		abort();
	}
	live_bytes -= it->second;
	live.erase(it);
	free(p);
	return sticky;
}

cudaError_t
cudaMemset(void *p, int value, size_t bytes)
{
	if (sticky == cudaSuccess)
		memset(p, value, bytes);
	return sticky;
}

cudaError_t
cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s)
{
	return cudaMemset(p, value, bytes);
}

/* Overlapping copies are undefined in CUDA: the emulator refuses them. */
cudaError_t
cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
	if ((char *) dst < (const char *) src + bytes && (const char *) src < (char *) dst + bytes && dst != src)
	{
		fprintf(stderr, "cuda_emu: cudaMemcpy of %zu bytes between overlapping regions\n", bytes);
		abort();
	}
	if (sticky == cudaSuccess)
		memcpy(dst, src, bytes);
	return sticky;
}

cudaError_t
cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s)
{
	return cudaMemcpy(dst, src, bytes, kind);
}

/* ------------------------------------------------------------------ cuBLAS */

struct cublasContext
{
	cublasMath_t mode;
};

cublasStatus_t
cublasCreate(cublasHandle_t *h)
{
	*h = new cublasContext {CUBLAS_DEFAULT_MATH};
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDestroy(cublasHandle_t h)
{
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
	h->mode = mode;
	return CUBLAS_STATUS_SUCCESS;
}

/* A float rounded to TF32 (10 mantissa bits), as tensor cores read their inputs. */
static float
tf32(float x)
{
	uint32_t	u;

	memcpy(&u, &x, 4);
	if ((u & 0x7f800000u) != 0x7f800000u)	/* not inf or NaN: round to nearest, ties away */
		u = (u + 0x1000u) & 0xffffe000u;
	memcpy(&x, &u, 4);
	return x;
}
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "invalid value" : "success"; }
const char *cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }

/*
 * C = alpha op(A) op(B) + beta C, column-major, op(A) m x k, op(B) k x n;
 * beta 0 ignores C's old contents, as BLAS does.  The leading dimensions
 * are checked as cuBLAS checks them.  In TF32 mode the inputs are rounded
 * to TF32 first, so tests see TF32's error (sums stay in double here).
 */
cublasStatus_t
cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			const float *alpha, const float *A, int lda, const float *B, int ldb,
			const float *beta, float *C, int ldc)
{
	if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
		ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++)
		{
			double		s = 0;

			for (int l = 0; l < k; l++)
			{
				float		a = ta == CUBLAS_OP_N ? A[i + (size_t) l * lda] : A[l + (size_t) i * lda],
							b = tb == CUBLAS_OP_N ? B[l + (size_t) j * ldb] : B[j + (size_t) l * ldb];

				s += h->mode == CUBLAS_TF32_TENSOR_OP_MATH ? (double) tf32(a) * tf32(b) : (double) a * b;
			}
			C[i + (size_t) j * ldc] = (float) (*alpha * s + (*beta == 0 ? 0 : *beta * C[i + (size_t) j * ldc]));
		}
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
						  const float *alpha, const float *A, int lda, long long strideA,
						  const float *B, int ldb, long long strideB, const float *beta,
						  float *C, int ldc, long long strideC, int batch)
{
	for (int b = 0; b < batch; b++)
	{
		cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, A + b * strideA, lda, B + b * strideB,
									   ldb, beta, C + b * strideC, ldc);

		if (s != CUBLAS_STATUS_SUCCESS)
			return s;
	}
	return CUBLAS_STATUS_SUCCESS;
}
