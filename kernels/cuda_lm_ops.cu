/*
 * cuda_lm_ops.cu — the language model's passes between its GEMMs on the
 * GPU: LayerNorm, the MLP nonlinearity, residual adds, the attention mask
 * and softmax, and attention itself.
 *
 * As on the CPU (backend_cpu_lm.c) these follow HF transformers' float32
 * math: LayerNorm statistics in double, scores divided (not multiplied)
 * by the divisor, softmax after subtracting the row's max.
 */
#include "cuda_internal.cuh"

/* One block per row: two passes, the mean and then the variance, as torch does. */
static __global__ void
layernorm_kernel(float *y, float *scale, const float *x, int cols, float eps)
{
	__shared__ double sh[32];
	const float *xr = x + (size_t) blockIdx.x * cols;
	float	   *yr = y + (size_t) blockIdx.x * cols;
	double		sum = 0,
				var = 0;
	float		mean,
				rstd;

	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		sum += xr[c];
	mean = (float) (block_sum(sum, sh) / cols);
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
	{
		double		d = (double) xr[c] - mean;

		var += d * d;
	}
	var = block_sum(var, sh) / cols;
	if (scale && threadIdx.x == 0)
		scale[blockIdx.x] = (float) sqrt(var + eps);
	rstd = (float) (1.0 / sqrt(var + eps));
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		yr[c] = (xr[c] - mean) * rstd;
}

static void
cuda_layernorm(SaeBackend *be, float *y, float *scale, const float *x, int rows, int cols, float eps)
{
	CudaBackend *c = cuda_of(be);

	if (rows == 0 || !cuda_ready(c))
		return;
	layernorm_kernel<<<rows, CUDA_THREADS>>>(y, scale, x, cols, eps);
	CUDA_LAUNCHED(c, "layernorm");
}

static __global__ void
scale_shift_kernel(float *y, const float *w, const float *b, int rows, int cols)
{
	FOR_EACH(k, (size_t) rows * cols)
		y[k] = y[k] * w[k % cols] + b[k % cols];
}

static void
cuda_scale_shift(SaeBackend *be, float *y, const float *w, const float *b, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) rows * cols == 0 || !cuda_ready(c))
		return;
	scale_shift_kernel<<<cuda_blocks((size_t) rows * cols), CUDA_THREADS>>>(y, w, b, rows, cols);
	CUDA_LAUNCHED(c, "scale_shift");
}

static __global__ void
lm_activation_kernel(float *y, const float *x, size_t n, SaeLmAct act)
{
	FOR_EACH(i, n)
	{
		float		u = x[i];

		if (act == SAE_LM_GELU_NEW)
			y[i] = 0.5f * u * (1.0f + tanhf(0.7978845608028654f * (u + 0.044715f * u * u * u)));
		else if (act == SAE_LM_GELU)
			y[i] = 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
		else
			y[i] = u > 0 ? u : 0;
	}
}

static void
cuda_lm_activation(SaeBackend *be, float *y, const float *x, size_t n, SaeLmAct act)
{
	CudaBackend *c = cuda_of(be);

	if (n == 0 || !cuda_ready(c))
		return;
	lm_activation_kernel<<<cuda_blocks(n), CUDA_THREADS>>>(y, x, n, act);
	CUDA_LAUNCHED(c, "lm_activation");
}

static __global__ void
add_kernel(float *dst, const float *a, const float *b, size_t n)
{
	FOR_EACH(i, n)
		dst[i] = a[i] + b[i];
}

static void
cuda_add(SaeBackend *be, float *dst, const float *a, const float *b, size_t n)
{
	CudaBackend *c = cuda_of(be);

	if (n == 0 || !cuda_ready(c))
		return;
	add_kernel<<<cuda_blocks(n), CUDA_THREADS>>>(dst, a, b, n);
	CUDA_LAUNCHED(c, "add");
}

/* May query i (at position q_offset + i) see key j?  Causal, and within the window if any. */
static __device__ inline bool
visible(int i, int j, int q_offset, int window)
{
	int			last = q_offset + i;

	return j <= last && (window <= 0 || j > last - window);
}

/* scores[i][h][j]: divided where visible, -inf elsewhere. */
static __global__ void
attn_mask_kernel(float *scores, int H, int Tk, int q_offset, float divisor, int window, size_t n)
{
	FOR_EACH(k, n)
	{
		int			j = (int) (k % Tk);
		int			i = (int) (k / ((size_t) Tk * H));

		scores[k] = visible(i, j, q_offset, window) ? scores[k] / divisor : -INFINITY;
	}
}

static void
cuda_attn_mask(SaeBackend *be, float *scores, int Tq, int H, int Tk, int q_offset, float divisor,
			   int window)
{
	CudaBackend *c = cuda_of(be);
	size_t		n = (size_t) Tq * H * Tk;

	if (n == 0 || !cuda_ready(c))
		return;
	attn_mask_kernel<<<cuda_blocks(n), CUDA_THREADS>>>(scores, H, Tk, q_offset, divisor, window, n);
	CUDA_LAUNCHED(c, "attn_mask");
}

/*
 * One block per row: dst = softmax(src), all -inf giving zeros.  With
 * mask_rows > 0 the row is first masked and divided as attn_mask would:
 * row r is query r % mask_rows (rows ordered head-major, [H][Tq][Tk]).
 */
static __global__ void
softmax_kernel(float *dst, const float *src, int cols, int mask_rows, int q_offset, float divisor,
			   int window)
{
	__shared__ float shm[32];
	__shared__ double shs[32];
	const float *s = src + (size_t) blockIdx.x * cols;
	float	   *d = dst + (size_t) blockIdx.x * cols;
	int			i = mask_rows > 0 ? (int) (blockIdx.x % mask_rows) : 0;
	float		max = -INFINITY;
	double		sum = 0;
	float		sumf;

	for (int j = threadIdx.x; j < cols; j += blockDim.x)
	{
		float		v = s[j];

		if (mask_rows > 0)
			v = visible(i, j, q_offset, window) ? v / divisor : -INFINITY;
		d[j] = v;
		max = fmaxf(max, v);
	}
	max = block_max(max, shm);
	for (int j = threadIdx.x; j < cols; j += blockDim.x)
	{
		float		e = max == -INFINITY ? 0.0f : expf(d[j] - max);

		d[j] = e;
		sum += e;
	}
	sumf = (float) block_sum(sum, shs);
	for (int j = threadIdx.x; j < cols; j += blockDim.x)
		d[j] = max == -INFINITY ? 0.0f : d[j] / sumf;
}

static void
cuda_softmax_rows(SaeBackend *be, float *dst, const float *src, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);

	if (rows == 0 || !cuda_ready(c))
		return;
	softmax_kernel<<<rows, CUDA_THREADS>>>(dst, src, cols, 0, 0, 1.0f, 0);
	CUDA_LAUNCHED(c, "softmax_rows");
}

/*
 * Per sequence: S_h = Q_h K_h^T for all heads in one strided-batched GEMM
 * (head h's rows start h * D floats into each row of q and k), the masked
 * softmax over S, then Z_h = P_h V_h the same way.  The row-major to
 * column-major swap is the one cuda_gemm explains.
 */
static bool
cuda_attention(SaeBackend *be, float *z, const float *q, const float *k, const float *v,
			   int B, int Tq, int Tk, int H, int D, int q_offset, float divisor, int window)
{
	CudaBackend *c = cuda_of(be);
	int			C = H * D;
	size_t		per_head = (size_t) Tq * Tk;
	const float one = 1.0f,
				zero = 0.0f;
	float	   *S;

	if (B == 0 || Tq == 0 || !cuda_ready(c))
		return true;
	if ((S = (float *) cuda_scratch(c, SCRATCH_ATTN, sizeof(float) * per_head * H)) == NULL)
	{
		c->failed = false;		/* out of memory is the caller's to report, not sticky */
		(void) cudaGetLastError();
		return false;
	}
	for (int b = 0; b < B; b++)
	{
		const float *qb = q + (size_t) b * Tq * C,
				   *kb = k + (size_t) b * Tk * C,
				   *vb = v + (size_t) b * Tk * C;
		float	   *zb = z + (size_t) b * Tq * C;

		if (!cuda_check_blas(c, cublasSgemmStridedBatched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, Tk, Tq, D,
														  &one, kb, C, D, qb, C, D, &zero,
														  S, Tk, per_head, H), "attention scores"))
			return true;
		softmax_kernel<<<Tq * H, CUDA_THREADS>>>(S, S, Tk, Tq, q_offset, divisor, window);
		if (!CUDA_LAUNCHED(c, "attention softmax") ||
			!cuda_check_blas(c, cublasSgemmStridedBatched(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, D, Tq, Tk,
														  &one, vb, C, D, S, Tk, per_head, &zero,
														  zb, C, D, H), "attention values"))
			return true;
	}
	return true;
}

void
cuda_lm_ops(SaeBackend *be)
{
	be->layernorm = cuda_layernorm;
	be->scale_shift = cuda_scale_shift;
	be->lm_activation = cuda_lm_activation;
	be->add = cuda_add;
	be->attn_mask = cuda_attn_mask;
	be->softmax_rows = cuda_softmax_rows;
	be->attention = cuda_attention;
}
