/*
 * cuda_sparse_ops.cu — the sparse path on the GPU: listing the active
 * features of a batch by row and by column, and the decoder, its backward
 * and the weight gradients over those entries only.
 *
 * Entries are listed in the CPU backend's order (columns ascending within
 * a row, rows ascending within a column); the decoder and the weight
 * gradients add them in that order, as the CPU does (the backprop's dot
 * products sum across a warp instead).
 */
#include "cuda_internal.cuh"

#include <cub/cub.cuh>

/* count[b] = #{i : f[b][i] > 0}; one block per row. */
static __global__ void
row_counts_kernel(const float *f, int m, int32_t *count)
{
	__shared__ double sh[32];
	const float *fr = f + (size_t) blockIdx.x * m;
	double		n = 0;

	for (int i = threadIdx.x; i < m; i += blockDim.x)
		n += fr[i] > 0;
	n = block_sum(n, sh);
	if (threadIdx.x == 0)
		count[blockIdx.x] = (int32_t) n;
}

/* col_idx of row b, ascending: a block scan over tiles of the row. */
static __global__ void
row_entries_kernel(const float *f, int m, const int32_t *row_ptr, int32_t *col_idx)
{
	typedef cub::BlockScan<int, CUDA_THREADS> Scan;
	__shared__ typename Scan::TempStorage tmp;
	const float *fr = f + (size_t) blockIdx.x * m;
	int32_t		base = row_ptr[blockIdx.x];

	for (int t0 = 0; t0 < m; t0 += CUDA_THREADS)
	{
		int			i = t0 + threadIdx.x;
		int			flag = i < m && fr[i] > 0;
		int			pos,
					total;

		Scan(tmp).ExclusiveSum(flag, pos, total);
		if (flag)
			col_idx[base + pos] = i;
		base += total;
		__syncthreads();		/* tmp is reused by the next tile */
	}
}

/* row_of[k] = the row of CSR entry k; one block per row. */
static __global__ void
entry_rows_kernel(const int32_t *row_ptr, int32_t *row_of)
{
	for (int32_t k = row_ptr[blockIdx.x] + threadIdx.x; k < row_ptr[blockIdx.x + 1]; k += blockDim.x)
		row_of[k] = blockIdx.x;
}

/* ptr[0] = 0, ptr[1..n] = running sums of count[0..n-1]. */
static bool
offsets(CudaBackend *c, const int32_t *count, int32_t *ptr, int n)
{
	size_t		bytes = 0;
	void	   *tmp;

	if (!cuda_check(c, cub::DeviceScan::InclusiveSum(NULL, bytes, count, ptr + 1, n), "cub scan") ||
		(tmp = cuda_scratch(c, SCRATCH_CUB, bytes)) == NULL ||
		!cuda_check(c, cudaMemsetAsync(ptr, 0, sizeof(int32_t), 0), "cudaMemset"))
		return false;
	return cuda_check(c, cub::DeviceScan::InclusiveSum(tmp, bytes, count, ptr + 1, n), "cub scan");
}

/*
 * CSR by a count, a scan and an ordered compaction per row; CSC by sorting
 * the CSR entries' row numbers by column with a stable radix sort, which
 * keeps each column's rows ascending.
 */
static int64_t
cuda_sparsify(SaeBackend *be, const float *f, int B, int m, int32_t *row_ptr, int32_t *col_idx,
			  int32_t *col_ptr, int32_t *row_idx, int64_t capacity)
{
	CudaBackend *c = cuda_of(be);
	int			n = B > m ? B : m;
	int			bits = 1;
	int32_t    *ints,
				nnz = 0;
	size_t		bytes = 0;
	void	   *tmp;

	if (B == 0 || m == 0 || !cuda_ready(c) ||
		(ints = (int32_t *) cuda_scratch(c, SCRATCH_INTS, sizeof(int32_t) * n)) == NULL)
		return 0;
	row_counts_kernel<<<B, CUDA_THREADS>>>(f, m, ints);
	if (!CUDA_LAUNCHED(c, "sparsify") || !offsets(c, ints, row_ptr, B) ||
		!cuda_read_back(c, &nnz, row_ptr + B, sizeof(nnz)))
		return 0;
	if (nnz > capacity)
		return -1;
	row_entries_kernel<<<B, CUDA_THREADS>>>(f, m, row_ptr, col_idx);

	/* scratch: m column counts, then each entry's row, then the sorted keys */
	if ((ints = (int32_t *) cuda_scratch(c, SCRATCH_INTS, sizeof(int32_t) * (n + 2 * (size_t) nnz))) == NULL ||
		!cuda_check(c, cudaMemsetAsync(ints, 0, sizeof(int32_t) * m, 0), "cudaMemset"))
		return 0;
	count_positive_kernel<<<count_positive_grid(B, m), CUDA_THREADS>>>(f, B, m, ints);
	entry_rows_kernel<<<B, CUDA_THREADS>>>(row_ptr, ints + n);
	if (!CUDA_LAUNCHED(c, "sparsify") || !offsets(c, ints, col_ptr, m))
		return 0;
	while ((1 << bits) < m)
		bits++;
	if (!cuda_check(c, cub::DeviceRadixSort::SortPairs(NULL, bytes, col_idx, ints + n + nnz, ints + n,
														 row_idx, nnz, 0, bits), "cub sort") ||
		(tmp = cuda_scratch(c, SCRATCH_CUB, bytes)) == NULL ||
		!cuda_check(c, cub::DeviceRadixSort::SortPairs(tmp, bytes, col_idx, ints + n + nnz, ints + n,
														 row_idx, nnz, 0, bits), "cub sort"))
		return 0;
	return nnz;
}

/* One block per row b: x_hat_b = sum over its entries of f_bi W_dec_i. */
static __global__ void
sparse_decode_kernel(const int32_t *row_ptr, const int32_t *col_idx, const float *f,
					 const float *w_dec, float *x_hat, int m, int d)
{
	size_t		b = blockIdx.x;
	int32_t		k0 = row_ptr[b],
				k1 = row_ptr[b + 1];

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		float		acc = 0;

		for (int32_t k = k0; k < k1; k++)
		{
			int32_t		i = col_idx[k];

			acc += f[b * m + i] * w_dec[(size_t) i * d + j];
		}
		x_hat[b * d + j] = acc;
	}
}

static void
cuda_sparse_decode(SaeBackend *be, const int32_t *row_ptr, const int32_t *col_idx, const float *f,
				   const float *w_dec, float *x_hat, int B, int m, int d)
{
	CudaBackend *c = cuda_of(be);

	if (B == 0 || !cuda_ready(c))
		return;
	sparse_decode_kernel<<<B, CUDA_THREADS>>>(row_ptr, col_idx, f, w_dec, x_hat, m, d);
	CUDA_LAUNCHED(c, "sparse_decode");
}

/* One block per row b, one warp per entry: dh[b][i] = <d_xhat_b, W_dec_i>. */
static __global__ void
sparse_backprop_kernel(const int32_t *row_ptr, const int32_t *col_idx, const float *d_xhat,
					   const float *w_dec, float *dh, int m, int d)
{
	size_t		b = blockIdx.x;
	int			lane = threadIdx.x % 32,
				warps = blockDim.x / 32;
	const float *g = d_xhat + b * d;

	for (int32_t k = row_ptr[b] + threadIdx.x / 32; k < row_ptr[b + 1]; k += warps)
	{
		int32_t		i = col_idx[k];
		const float *w = w_dec + (size_t) i * d;
		float		dot = 0;

		for (int j = lane; j < d; j += 32)
			dot += g[j] * w[j];
		for (int o = 16; o > 0; o /= 2)
			dot += __shfl_down_sync(0xffffffffu, dot, o);
		if (lane == 0)
			dh[b * m + i] = dot;
	}
}

static void
cuda_sparse_backprop(SaeBackend *be, const int32_t *row_ptr, const int32_t *col_idx,
					 const float *d_xhat, const float *w_dec, float *dh, int B, int m, int d)
{
	CudaBackend *c = cuda_of(be);

	if (B == 0 || !cuda_ready(c))
		return;
	sparse_backprop_kernel<<<B, CUDA_THREADS>>>(row_ptr, col_idx, d_xhat, w_dec, dh, m, d);
	CUDA_LAUNCHED(c, "sparse_backprop");
}

/* One block per row i of grad: sum over column i's entries of vals[b][i] rows_b. */
static __global__ void
sparse_weight_grad_kernel(const int32_t *col_ptr, const int32_t *row_idx, const float *vals,
						  const float *rows, float *grad, int m, int d)
{
	size_t		i = blockIdx.x;
	int32_t		k0 = col_ptr[i],
				k1 = col_ptr[i + 1];

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		float		acc = 0;

		for (int32_t k = k0; k < k1; k++)
		{
			size_t		b = row_idx[k];

			acc += vals[b * m + i] * rows[b * d + j];
		}
		grad[i * d + j] = acc;
	}
}

static void
cuda_sparse_weight_grad(SaeBackend *be, const int32_t *col_ptr, const int32_t *row_idx,
						const float *vals, const float *rows, float *grad, int B, int m, int d)
{
	CudaBackend *c = cuda_of(be);

	if (m == 0 || !cuda_ready(c))
		return;
	sparse_weight_grad_kernel<<<m, CUDA_THREADS>>>(col_ptr, row_idx, vals, rows, grad, m, d);
	CUDA_LAUNCHED(c, "sparse_weight_grad");
}

void
cuda_sparse_ops(SaeBackend *be)
{
	be->sparsify = cuda_sparsify;
	be->sparse_decode = cuda_sparse_decode;
	be->sparse_backprop = cuda_sparse_backprop;
	be->sparse_weight_grad = cuda_sparse_weight_grad;
}
