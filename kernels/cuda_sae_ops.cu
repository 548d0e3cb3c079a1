/*
 * cuda_sae_ops.cu — the training step's ops on the GPU: the fused encoder
 * activation with its L0 and norm reductions, the MSE and explained-variance
 * sums, the sparsity backward, dead-feature tracking, ghost grads, the
 * decoder row normalisation and projection, Adam, and the geometric
 * median's Weiszfeld step.
 *
 * Each kernel follows its CPU twin in backend_cpu.c formula for formula
 * (the per-element ones shared through backend_math.h; built without fused
 * multiply-adds), so the two backends differ only in summation order and
 * in the last bits of exp, tanh, log, cos and pow.  Sums are taken in double, per row by one block, or
 * per column over fixed blocks of rows then in block order: a seeded run
 * gives the same weights every time.
 */
#include "cuda_internal.cuh"

extern "C"
{
#include "backend_math.h"
#include "rng.h"
}

/* Results a few ops copy to the host: doubles and counters at fixed places. */
enum
{
	RES_SUM0 = 0,				/* up to 8 doubles */
	RES_COUNT = 8,				/* an unsigned long long */
	RES_SLOTS = 9
};

/* out[k] = sum over i of v[i * stride + k]; one block per k. */
static __global__ void
sum_strided_kernel(const double *v, int64_t n, int stride, double *out)
{
	__shared__ double sh[32];
	double		s = 0;

	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		s += v[i * stride + blockIdx.x];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

bool
cuda_sum_doubles(CudaBackend *c, const double *v, int64_t n, int stride, double *out_dev)
{
	sum_strided_kernel<<<stride, CUDA_THREADS>>>(v, n, stride, out_dev);
	return CUDA_LAUNCHED(c, "sum");
}

/* part[k][c] = sum over rows r of block k of w[r] * (src[r][c] - sub[r][c]). */
static __global__ void
col_partial_kernel(const float *src, const float *sub, const double *w, int64_t rows, int cols,
				   double *part)
{
	int			col = blockIdx.x * blockDim.x + threadIdx.x;
	int64_t		r0 = (int64_t) blockIdx.y * COL_BLOCK_ROWS,
				r1 = r0 + COL_BLOCK_ROWS < rows ? r0 + COL_BLOCK_ROWS : rows;
	double		s = 0;

	if (col >= cols)
		return;
	for (int64_t r = r0; r < r1; r++)
	{
		size_t		k = (size_t) r * cols + col;
		double		v = sub ? (double) src[k] - sub[k] : (double) src[k];

		s += w ? w[r] * v : v;
	}
	part[(size_t) blockIdx.y * cols + col] = s;
}

static __global__ void
col_total_kernel(const double *part, int64_t nblocks, int cols, double *out)
{
	int			col = blockIdx.x * blockDim.x + threadIdx.x;
	double		s = 0;

	if (col >= cols)
		return;
	for (int64_t k = 0; k < nblocks; k++)
		s += part[(size_t) k * cols + col];
	out[col] = s;
}

/*
 * out_dev[c] = sum_r w[r] (src[r][c] - sub[r][c]) in double (sub, w NULL:
 * 0 and 1): per block of rows, then the blocks in order.
 */
bool
cuda_col_sums(CudaBackend *c, const float *src, const float *sub, const double *w,
			  int64_t rows, int cols, double *out_dev)
{
	int64_t		nblocks = (rows + COL_BLOCK_ROWS - 1) / COL_BLOCK_ROWS;
	double	   *part = (double *) cuda_scratch(c, SCRATCH_COLS,
											   sizeof(double) * (nblocks > 0 ? nblocks : 1) * cols);
	dim3		grid((cols + CUDA_THREADS - 1) / CUDA_THREADS, (unsigned) (nblocks > 0 ? nblocks : 1));

	if (part == NULL)
		return false;
	if (nblocks > 0)
		col_partial_kernel<<<grid, CUDA_THREADS>>>(src, sub, w, rows, cols, part);
	col_total_kernel<<<grid.x, CUDA_THREADS>>>(part, nblocks, cols, out_dev);
	return CUDA_LAUNCHED(c, "column sums");
}

/* dst[i] = (float) (src[i] / divisor) */
static __global__ void
to_float_kernel(float *dst, const double *src, int n, double divisor)
{
	FOR_EACH(i, n)
		dst[i] = (float) (src[i] / divisor);
}

static __global__ void
gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int rows, int cols)
{
	FOR_EACH(k, (size_t) rows * cols)
	{
		size_t		r = k / cols;

		dst[k] = src[(size_t) idx[r] * cols + k % cols];
	}
}

static void
cuda_gather_rows(SaeBackend *be, float *dst, const float *src, const int32_t *idx, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) rows * cols == 0 || !cuda_ready(c))
		return;
	gather_rows_kernel<<<cuda_blocks((size_t) rows * cols), CUDA_THREADS>>>(dst, src, idx, rows, cols);
	CUDA_LAUNCHED(c, "gather_rows");
}

static __global__ void
add_row_vector_kernel(float *dst, const float *src, const float *vec, int rows, int cols, float alpha)
{
	FOR_EACH(k, (size_t) rows * cols)
		dst[k] = src[k] + alpha * vec[k % cols];
}

static void
cuda_add_row_vector(SaeBackend *be, float *dst, const float *src, const float *vec,
					int rows, int cols, float alpha)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) rows * cols == 0 || !cuda_ready(c))
		return;
	add_row_vector_kernel<<<cuda_blocks((size_t) rows * cols), CUDA_THREADS>>>(dst, src, vec, rows, cols, alpha);
	CUDA_LAUNCHED(c, "add_row_vector");
}

static void
cuda_col_sum(SaeBackend *be, float *dst, const float *src, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);
	double	   *acc;

	if (cols == 0 || !cuda_ready(c) ||
		(acc = (double *) cuda_scratch(c, SCRATCH_SUMS, sizeof(double) * cols)) == NULL ||
		!cuda_col_sums(c, src, NULL, NULL, rows, cols, acc))
		return;
	to_float_kernel<<<cuda_blocks(cols), CUDA_THREADS>>>(dst, acc, cols, 1.0);
	CUDA_LAUNCHED(c, "col_sum");
}

/* One block per row: scale it to unit norm (a zero row stays zero). */
static __global__ void
normalize_rows_kernel(float *w, int cols)
{
	__shared__ double sh[32];
	float	   *row = w + (size_t) blockIdx.x * cols;
	double		ss = 0;

	for (int j = threadIdx.x; j < cols; j += blockDim.x)
		ss += (double) row[j] * row[j];
	ss = block_sum(ss, sh);
	if (ss > 0)
	{
		float		norm = (float) sqrt(ss);

		for (int j = threadIdx.x; j < cols; j += blockDim.x)
			row[j] /= norm;
	}
}

static void
cuda_normalize_rows(SaeBackend *be, float *w, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);

	if (rows == 0 || !cuda_ready(c))
		return;
	normalize_rows_kernel<<<rows, CUDA_THREADS>>>(w, cols);
	CUDA_LAUNCHED(c, "normalize_rows");
}

/* One block per row: g -= <g, w> w. */
static __global__ void
project_rows_kernel(float *g, const float *w, int cols)
{
	__shared__ double sh[32];
	float	   *gr = g + (size_t) blockIdx.x * cols;
	const float *wr = w + (size_t) blockIdx.x * cols;
	double		dot = 0;

	for (int j = threadIdx.x; j < cols; j += blockDim.x)
		dot += (double) gr[j] * wr[j];
	dot = block_sum(dot, sh);
	for (int j = threadIdx.x; j < cols; j += blockDim.x)
		gr[j] -= (float) dot * wr[j];
}

static void
cuda_project_rows(SaeBackend *be, float *g, const float *w, int rows, int cols)
{
	CudaBackend *c = cuda_of(be);

	if (rows == 0 || !cuda_ready(c))
		return;
	project_rows_kernel<<<rows, CUDA_THREADS>>>(g, w, cols);
	CUDA_LAUNCHED(c, "project_rows");
}

/*
 * One block per row b: pre-activation, noise, nonlinearity, the row's
 * Lp norm and its count of active features (added to *l0).
 */
static __global__ void
encode_activate_kernel(float *h, const float *b_enc, float *f, int m, SaeActivation act,
					   float noise_scale, uint64_t seed, uint64_t stream, double lp,
					   float *row_norm, unsigned long long *l0)
{
	__shared__ double sh[32];
	size_t		b = blockIdx.x;
	float	   *hr = h + b * m;
	float	   *fr = f + b * m;
	double		norm = 0,
				active = 0;

	for (int i = threadIdx.x; i < m; i += blockDim.x)
	{
		float		pre = hr[i] + b_enc[i];
		float		z = pre;
		float		out;

		hr[i] = pre;
		if (noise_scale > 0)
			z += noise_scale * sae_normal(seed, stream, (uint64_t) b * m + i);
		out = sae_activate(z, act == SAE_ACT_TANH_RELU);
		fr[i] = out;
		active += out > 0;
		norm += lp == 1.0 ? (double) out : lp == 2.0 ? (double) out * out : pow((double) out, lp);
	}
	norm = block_sum(norm, sh);
	active = block_sum(active, sh);
	if (threadIdx.x == 0)
	{
		row_norm[b] = lp == 1.0 ? (float) norm : lp == 2.0 ? (float) sqrt(norm) : (float) pow(norm, 1.0 / lp);
		atomicAdd(l0, (unsigned long long) active);
	}
}

static double
cuda_encode_activate(SaeBackend *be, float *h, const float *b_enc, float *f, int B, int m,
					 SaeActivation act, float noise_scale, uint64_t seed, uint64_t noise_stream,
					 double lp, float *row_norm, float *fire_count)
{
	CudaBackend *c = cuda_of(be);
	double	   *res;
	unsigned long long *l0,
				host = 0;

	if (B == 0 || !cuda_ready(c) ||
		(res = (double *) cuda_scratch(c, SCRATCH_RESULT, sizeof(double) * RES_SLOTS)) == NULL)
		return 0;
	l0 = (unsigned long long *) (res + RES_COUNT);
	if (!cuda_check(c, cudaMemsetAsync(l0, 0, sizeof(*l0), 0), "cudaMemset"))
		return 0;
	encode_activate_kernel<<<B, CUDA_THREADS>>>(h, b_enc, f, m, act, noise_scale, seed,
												  noise_stream, lp, row_norm, l0);
	if (fire_count)
		count_positive_kernel<<<count_positive_grid(B, m), CUDA_THREADS>>>(f, B, m, fire_count);
	if (!CUDA_LAUNCHED(c, "encode_activate") || !cuda_read_back(c, &host, l0, sizeof(host)))
		return 0;
	return (double) host;
}

/* Per-row quantities of the MSE op, as on the CPU. */
enum
{
	MSE_WE, MSE_E, MSE_T, MSE_EV, MSE_EV2, MSE_L2, MSE_RATIO, MSE_NSTATS
};

/* One block per row: the row's error sums, its gradient, weight and stats. */
static __global__ void
mse_kernel(const float *x, const float *xhat, const float *meanf, int d, bool dense_batch,
		   double scale, float *d_xhat, float *row_w, float *x_sq, double *stats)
{
	__shared__ double sh[32];
	size_t		b = blockIdx.x;
	const float *xr = x + b * d;
	const float *yr = xhat + b * d;
	float	   *gr = d_xhat + b * d;
	double		e = 0,
				t = 0,
				xx = 0,
				yy = 0;
	float		w;

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		double		diff = (double) yr[j] - xr[j];
		double		cen = (double) xr[j] - meanf[j];

		e += diff * diff;
		t += cen * cen;
		xx += (double) xr[j] * xr[j];
		yy += (double) yr[j] * yr[j];
	}
	e = block_sum(e, sh);
	t = block_sum(t, sh);
	xx = block_sum(xx, sh);
	yy = block_sum(yy, sh);
	w = dense_batch ? (float) (1.0 / (sqrt(t) + 1e-6)) : 1.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x)
		gr[j] = (float) (scale * w) * (yr[j] - xr[j]);
	if (threadIdx.x == 0)
	{
		double	   *out = stats + b * MSE_NSTATS;
		double		ev = t > 0 ? 1.0 - e / t : 0.0;

		row_w[b] = w;
		x_sq[b] = (float) xx;
		out[MSE_WE] = w * e;
		out[MSE_E] = e;
		out[MSE_T] = t;
		out[MSE_EV] = ev;
		out[MSE_EV2] = ev * ev;
		out[MSE_L2] = sqrt(yy);
		out[MSE_RATIO] = sqrt(yy) / (sqrt(xx) < 1e-4 ? 1.0 : sqrt(xx));
	}
}

static void
cuda_mse_forward_backward(SaeBackend *be, const float *x, const float *xhat, int B, int d,
						  bool dense_batch, float *d_xhat, float *row_w, float *x_sq,
						  SaeMseStats *st)
{
	CudaBackend *c = cuda_of(be);
	double	   *mean,
			   *stats,
			   *res;
	float	   *meanf;
	double		sums[MSE_NSTATS] = {0};

	memset(st, 0, sizeof(*st));
	if (B == 0 || !cuda_ready(c) ||
		(mean = (double *) cuda_scratch(c, SCRATCH_SUMS, sizeof(double) * d)) == NULL ||
		(stats = (double *) cuda_scratch(c, SCRATCH_SUMS2, sizeof(double) * MSE_NSTATS * B)) == NULL ||
		(meanf = (float *) cuda_scratch(c, SCRATCH_ROWS, sizeof(float) * d)) == NULL ||
		(res = (double *) cuda_scratch(c, SCRATCH_RESULT, sizeof(double) * RES_SLOTS)) == NULL ||
		!cuda_col_sums(c, x, NULL, NULL, B, d, mean))
		return;
	to_float_kernel<<<cuda_blocks(d), CUDA_THREADS>>>(meanf, mean, d, (double) B);
	mse_kernel<<<B, CUDA_THREADS>>>(x, xhat, meanf, d, dense_batch, 2.0 / ((double) B * d),
									d_xhat, row_w, x_sq, stats);
	if (!CUDA_LAUNCHED(c, "mse_forward_backward") ||
		!cuda_sum_doubles(c, stats, B, MSE_NSTATS, res + RES_SUM0) ||
		!cuda_read_back(c, sums, res + RES_SUM0, sizeof(sums)))
		return;
	st->mse_sum = sums[MSE_WE];
	st->sse = sums[MSE_E];
	st->sst = sums[MSE_T];
	st->ev_legacy_sum = sums[MSE_EV];
	st->ev_legacy_sumsq = sums[MSE_EV2];
	st->l2_norm_out = sums[MSE_L2];
	st->l2_ratio = sums[MSE_RATIO];
}

static __global__ void
activation_backward_kernel(float *dh, const float *f, const float *row_norm, const float *row_scale,
						   float l1_scale, double lp, int B, int m, SaeActivation act)
{
	FOR_EACH(k, (size_t) B * m)
	{
		size_t		b = k / m;
		float		fi = f[k];

		if (fi > 0)
		{
			float		s = l1_scale * (row_scale ? row_scale[b] : 1.0f);
			float		g = dh[k] + s * sae_lp_norm_grad(fi, row_norm[b], lp);

			dh[k] = act == SAE_ACT_TANH_RELU ? g * (1 - fi * fi) : g;
		}
		else
			dh[k] = 0;
	}
}

static void
cuda_activation_backward(SaeBackend *be, float *dh, const float *f, const float *row_norm,
						 const float *row_scale, float l1_scale, double lp, int B, int m,
						 SaeActivation act)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) B * m == 0 || !cuda_ready(c))
		return;
	activation_backward_kernel<<<cuda_blocks((size_t) B * m), CUDA_THREADS>>>(dh, f, row_norm, row_scale,
																			   l1_scale, lp, B, m, act);
	CUDA_LAUNCHED(c, "activation_backward");
}

static __global__ void
update_fire_stats_kernel(float *fire_count, float *since, float *act_freq, float *dead_mask, int m,
						 float window, unsigned long long *dead)
{
	FOR_EACH(i, m)
	{
		since[i] = fire_count[i] > 0 ? 0 : since[i] + 1;
		act_freq[i] += fire_count[i];
		fire_count[i] = 0;
		dead_mask[i] = since[i] > window ? 1.0f : 0.0f;
		if (since[i] > window)
			atomicAdd(dead, 1ULL);
	}
}

static int64_t
cuda_update_fire_stats(SaeBackend *be, float *fire_count, float *since, float *act_freq,
					   float *dead_mask, int m, float window)
{
	CudaBackend *c = cuda_of(be);
	double	   *res;
	unsigned long long *dead,
				host = 0;

	if (m == 0 || !cuda_ready(c) ||
		(res = (double *) cuda_scratch(c, SCRATCH_RESULT, sizeof(double) * RES_SLOTS)) == NULL)
		return 0;
	dead = (unsigned long long *) (res + RES_COUNT);
	if (!cuda_check(c, cudaMemsetAsync(dead, 0, sizeof(*dead), 0), "cudaMemset"))
		return 0;
	update_fire_stats_kernel<<<cuda_blocks(m), CUDA_THREADS>>>(fire_count, since, act_freq, dead_mask,
															   m, window, dead);
	if (!CUDA_LAUNCHED(c, "update_fire_stats") || !cuda_read_back(c, &host, dead, sizeof(host)))
		return 0;
	return (int64_t) host;
}

static __global__ void
exp_masked_kernel(float *g, const float *h, const float *mask, int B, int m)
{
	FOR_EACH(k, (size_t) B * m)
		g[k] = mask[k % m] > 0 ? expf(h[k]) : 0.0f;
}

static void
cuda_exp_masked(SaeBackend *be, float *g, const float *h, const float *mask, int B, int m)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) B * m == 0 || !cuda_ready(c))
		return;
	exp_masked_kernel<<<cuda_blocks((size_t) B * m), CUDA_THREADS>>>(g, h, mask, B, m);
	CUDA_LAUNCHED(c, "exp_masked");
}

/* wg[b] = 1 / (||r_b - mean(r)|| + 1e-6) for the residual r = x - xhat; one block per row. */
static __global__ void
residual_weights_kernel(const float *x, const float *xhat, const double *mean_sum, int B, int d,
						float *wg)
{
	__shared__ double sh[32];
	size_t		b = blockIdx.x;
	double		ss = 0;

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		double		cen = (double) x[b * d + j] - xhat[b * d + j] - mean_sum[j] / B;

		ss += cen * cen;
	}
	ss = block_sum(ss, sh);
	if (threadIdx.x == 0)
		wg[b] = (float) (1.0 / (sqrt(ss) + 1e-6));
}

/* One block per row of the ghost loss: its loss term, and y's gradient in place. */
static __global__ void
ghost_loss_kernel(const float *x, const float *xhat, float *y, const float *row_w, const float *wg,
				  int d, double scale, double *row_loss)
{
	__shared__ double sh[32];
	size_t		b = blockIdx.x;
	const float *xr = x + b * d;
	const float *yr = xhat + b * d;
	float	   *gy = y + b * d;
	float		w = row_w[b],
				wgb = wg ? wg[b] : 1.0f,
				cf;
	double		rr = 0,
				ny = 0,
				loss_b = 0;

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		double		r = (double) xr[j] - yr[j];

		rr += r * r;
		ny += (double) gy[j] * gy[j];
	}
	rr = block_sum(rr, sh);
	ny = block_sum(ny, sh);
	cf = (float) (sqrt(rr) / (1e-6 + 2 * sqrt(ny)));
	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		float		r = xr[j] - yr[j];
		float		diff = gy[j] * cf - r;
		float		eg = diff * diff * wgb;
		float		e = r * r * w;
		float		ratio = e / (eg + 1e-6f);

		loss_b += (double) ratio * eg;
		gy[j] = (float) (scale * ratio * diff * wgb) * cf;
	}
	loss_b = block_sum(loss_b, sh);
	if (threadIdx.x == 0)
		row_loss[b] = loss_b;
}

static double
cuda_ghost_loss(SaeBackend *be, const float *x, const float *xhat, float *y, const float *row_w,
				bool dense_batch, int B, int d)
{
	CudaBackend *c = cuda_of(be);
	double	   *mean,
			   *row_loss,
			   *res,
				loss = 0;
	float	   *wg = NULL;

	if (B == 0 || !cuda_ready(c) ||
		(row_loss = (double *) cuda_scratch(c, SCRATCH_SUMS2, sizeof(double) * B)) == NULL ||
		(res = (double *) cuda_scratch(c, SCRATCH_RESULT, sizeof(double) * RES_SLOTS)) == NULL)
		return 0;
	if (dense_batch)
	{
		if ((mean = (double *) cuda_scratch(c, SCRATCH_SUMS, sizeof(double) * d)) == NULL ||
			(wg = (float *) cuda_scratch(c, SCRATCH_ROWS, sizeof(float) * B)) == NULL ||
			!cuda_col_sums(c, x, xhat, NULL, B, d, mean))
			return 0;
		residual_weights_kernel<<<B, CUDA_THREADS>>>(x, xhat, mean, B, d, wg);
	}
	ghost_loss_kernel<<<B, CUDA_THREADS>>>(x, xhat, y, row_w, wg, d, 2.0 / ((double) B * d), row_loss);
	if (!CUDA_LAUNCHED(c, "ghost_loss") || !cuda_sum_doubles(c, row_loss, B, 1, res + RES_SUM0) ||
		!cuda_read_back(c, &loss, res + RES_SUM0, sizeof(loss)))
		return 0;
	return loss / ((double) B * d);
}

static __global__ void
ghost_backward_kernel(float *dh, const float *dg, const float *h, const float *mask, int B, int m)
{
	FOR_EACH(k, (size_t) B * m)
		if (mask[k % m] > 0)
			dh[k] += dg[k] * expf(h[k]);
}

static void
cuda_ghost_backward(SaeBackend *be, float *dh, const float *dg, const float *h, const float *mask,
					int B, int m)
{
	CudaBackend *c = cuda_of(be);

	if ((size_t) B * m == 0 || !cuda_ready(c))
		return;
	ghost_backward_kernel<<<cuda_blocks((size_t) B * m), CUDA_THREADS>>>(dh, dg, h, mask, B, m);
	CUDA_LAUNCHED(c, "ghost_backward");
}

/* torch.optim.Adam's single-tensor update (backend_math.h). */
static __global__ void
adam_kernel(float *param, const float *grad, float *m1, float *m2, size_t n, SaeAdamStep s)
{
	FOR_EACH(i, n)
		sae_adam_update(&s, &param[i], grad[i], &m1[i], &m2[i]);
}

static void
cuda_adam(SaeBackend *be, float *param, const float *grad, float *m1, float *m2, size_t n,
		  double lr, double beta1, double beta2, double eps, int64_t t)
{
	CudaBackend *c = cuda_of(be);

	if (n == 0 || !cuda_ready(c))
		return;
	adam_kernel<<<cuda_blocks(n), CUDA_THREADS>>>(param, grad, m1, m2, n,
												  sae_adam_step(lr, beta1, beta2, eps, t));
	CUDA_LAUNCHED(c, "adam");
}

/* One block per point: its distance to mu and its Weiszfeld weight. */
static __global__ void
weiszfeld_dist_kernel(const float *x, int d, const float *mu, double eps, double *dist, double *w)
{
	__shared__ double sh[32];
	size_t		t = blockIdx.x;
	double		ss = 0;

	for (int j = threadIdx.x; j < d; j += blockDim.x)
	{
		double		diff = (double) x[t * d + j] - mu[j];

		ss += diff * diff;
	}
	ss = block_sum(ss, sh);
	if (threadIdx.x == 0)
	{
		dist[t] = sqrt(ss);
		w[t] = 1.0 / (dist[t] > eps ? dist[t] : eps);
	}
}

static __global__ void
weiszfeld_mu_kernel(float *new_mu, const double *acc, const double *wsum, int d)
{
	FOR_EACH(j, d)
		new_mu[j] = (float) (acc[j] / *wsum);
}

static double
cuda_weiszfeld_step(SaeBackend *be, const float *x, int64_t n, int d, const float *mu,
					float *new_mu, double eps)
{
	CudaBackend *c = cuda_of(be);
	double	   *dist,
			   *w,
			   *acc,
			   *res,
				obj = 0;

	if (n == 0 || !cuda_ready(c) ||
		(dist = (double *) cuda_scratch(c, SCRATCH_SUMS2, sizeof(double) * n)) == NULL ||
		(w = (double *) cuda_scratch(c, SCRATCH_ROWS, sizeof(double) * n)) == NULL ||
		(acc = (double *) cuda_scratch(c, SCRATCH_SUMS, sizeof(double) * d)) == NULL ||
		(res = (double *) cuda_scratch(c, SCRATCH_RESULT, sizeof(double) * RES_SLOTS)) == NULL)
		return 0;
	weiszfeld_dist_kernel<<<(unsigned) n, CUDA_THREADS>>>(x, d, mu, eps, dist, w);
	if (!CUDA_LAUNCHED(c, "weiszfeld_step") ||
		!cuda_sum_doubles(c, dist, n, 1, res + RES_SUM0) ||
		!cuda_sum_doubles(c, w, n, 1, res + RES_SUM0 + 1) ||
		!cuda_col_sums(c, x, NULL, w, n, d, acc))
		return 0;
	weiszfeld_mu_kernel<<<cuda_blocks(d), CUDA_THREADS>>>(new_mu, acc, res + RES_SUM0 + 1, d);
	if (!CUDA_LAUNCHED(c, "weiszfeld_step") || !cuda_read_back(c, &obj, res + RES_SUM0, sizeof(obj)))
		return 0;
	return obj;
}

void
cuda_sae_ops(SaeBackend *be)
{
	be->gather_rows = cuda_gather_rows;
	be->add_row_vector = cuda_add_row_vector;
	be->col_sum = cuda_col_sum;
	be->normalize_rows = cuda_normalize_rows;
	be->project_rows = cuda_project_rows;
	be->encode_activate = cuda_encode_activate;
	be->mse_forward_backward = cuda_mse_forward_backward;
	be->activation_backward = cuda_activation_backward;
	be->update_fire_stats = cuda_update_fire_stats;
	be->exp_masked = cuda_exp_masked;
	be->ghost_loss = cuda_ghost_loss;
	be->ghost_backward = cuda_ghost_backward;
	be->adam = cuda_adam;
	be->weiszfeld_step = cuda_weiszfeld_step;
}
