/*
 * backend_cpu.c — the reference backend: OpenBLAS for matrix products,
 * OpenMP loops for everything else.
 *
 * Each fused op makes one pass over its B x m or B x d data where it can,
 * because on a CPU these passes, not the GEMMs, are what a naive
 * implementation spends its time on.  Sums run in double, and every sum is
 * taken in an order fixed by the data (per row, or per fixed block of rows,
 * then in row order), never in the order threads finish: a seeded run gives
 * the same weights whatever the thread count.
 */
#define _DEFAULT_SOURCE			/* madvise's MADV_HUGEPAGE */

#include "backend.h"
#include "backend_math.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <omp.h>

/* Loops over fewer elements than this run on one thread: waking a team costs more. */
#define SAE_PARALLEL_MIN 65536

/* Buffers of at least this many bytes are asked to use 2 MiB pages. */
#define SAE_HUGE_ALLOC (4u << 20)

/*
 * Zeroed memory.  Large buffers (weights, Adam moments, the B x m
 * activations: gigabytes for a 16k-feature SAE) are aligned to 2 MiB and
 * marked for transparent huge pages: in a VM each 4 KiB first-touch fault
 * costs microseconds, so a first training step spent ~1 s faulting.
 */
static void *
cpu_alloc(SaeBackend *be, size_t bytes)
{
	void	   *p;

	if (bytes < SAE_HUGE_ALLOC)
		return calloc(1, bytes ? bytes : 1);
	if (posix_memalign(&p, 2u << 20, bytes) != 0)
		return NULL;
	(void) madvise(p, bytes, MADV_HUGEPAGE);	/* a hint: fine if THP is off */
	memset(p, 0, bytes);
	return p;
}

static void
cpu_free(SaeBackend *be, void *ptr)
{
	free(ptr);
}

static void
cpu_memcpy(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	if (dst != src && bytes > 0)
		memmove(dst, src, bytes);
}

static void
cpu_fill(SaeBackend *be, float *x, size_t n, float value)
{
#pragma omp parallel for schedule(static) if(n >= SAE_PARALLEL_MIN)
	for (size_t i = 0; i < n; i++)
		x[i] = value;
}

static void
cpu_gemm(SaeBackend *be, bool trans_a, bool trans_b, int M, int N, int K,
		 float alpha, const float *A, int lda, const float *B, int ldb,
		 float beta, float *C, int ldc)
{
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
				trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
				A, lda, B, ldb, beta, C, ldc);
}

static void
cpu_gather_rows(SaeBackend *be, float *dst, const float *src,
				const int32_t *idx, int rows, int cols)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= SAE_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
		memcpy(dst + (size_t) r * cols, src + (size_t) idx[r] * cols, sizeof(float) * cols);
}

static void
cpu_add_row_vector(SaeBackend *be, float *dst, const float *src,
				   const float *vec, int rows, int cols, float alpha)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= SAE_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
	{
		const float *s = src + (size_t) r * cols;
		float	   *o = dst + (size_t) r * cols;

		for (int c = 0; c < cols; c++)
			o[c] = s[c] + alpha * vec[c];
	}
}

#define SAE_BLOCK_ROWS 256

/*
 * dst[c] = sum_r w[r] * src[r][c] (w NULL: 1), in double: partial sums over
 * fixed blocks of rows in parallel, then the blocks in order.
 */
static void
block_col_sums(const float *src, const double *w, int64_t rows, int cols, double *dst)
{
	int64_t		nblocks = (rows + SAE_BLOCK_ROWS - 1) / SAE_BLOCK_ROWS;
	double	   *part = calloc((size_t) nblocks * cols, sizeof(double));

#pragma omp parallel for schedule(static) if((size_t) rows * cols >= SAE_PARALLEL_MIN)
	for (int64_t k = 0; k < nblocks; k++)
	{
		double	   *p = part + (size_t) k * cols;
		int64_t		end = (k + 1) * SAE_BLOCK_ROWS < rows ? (k + 1) * SAE_BLOCK_ROWS : rows;

		for (int64_t r = k * SAE_BLOCK_ROWS; r < end; r++)
		{
			const float *row = src + (size_t) r * cols;
			double		wr = w ? w[r] : 1.0;

			for (int c = 0; c < cols; c++)
				p[c] += wr * row[c];
		}
	}
	memset(dst, 0, sizeof(double) * cols);
	for (int64_t k = 0; k < nblocks; k++)
		for (int c = 0; c < cols; c++)
			dst[c] += part[(size_t) k * cols + c];
	free(part);
}

static void
cpu_col_sum(SaeBackend *be, float *dst, const float *src, int rows, int cols)
{
	double	   *acc = malloc(sizeof(double) * cols);

	block_col_sums(src, NULL, rows, cols, acc);
	for (int c = 0; c < cols; c++)
		dst[c] = (float) acc[c];
	free(acc);
}

/* Sum of n doubles in index order. */
static double
ordered_sum(const double *v, int64_t n)
{
	double		s = 0;

	for (int64_t i = 0; i < n; i++)
		s += v[i];
	return s;
}

static void
cpu_normalize_rows(SaeBackend *be, float *w, int rows, int cols)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= SAE_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
	{
		float	   *row = w + (size_t) r * cols;
		double		ss = 0;

		for (int c = 0; c < cols; c++)
			ss += (double) row[c] * row[c];
		if (ss > 0)
		{
			float		norm = (float) sqrt(ss);

			for (int c = 0; c < cols; c++)
				row[c] /= norm;
		}
	}
}

static void
cpu_project_rows(SaeBackend *be, float *g, const float *w, int rows, int cols)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= SAE_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
	{
		float	   *gr = g + (size_t) r * cols;
		const float *wr = w + (size_t) r * cols;
		double		dot = 0;

		for (int c = 0; c < cols; c++)
			dot += (double) gr[c] * wr[c];
		for (int c = 0; c < cols; c++)
			gr[c] -= (float) dot * wr[c];
	}
}

/* ||f||_p of one row, f >= 0 after ReLU. */
static float
row_lp_norm(const float *f, int m, double lp)
{
	double		s = 0;

	if (lp == 1.0)
	{
		for (int i = 0; i < m; i++)
			s += fabsf(f[i]);
		return (float) s;
	}
	if (lp == 2.0)
	{
		for (int i = 0; i < m; i++)
			s += (double) f[i] * f[i];
		return (float) sqrt(s);
	}
	for (int i = 0; i < m; i++)
		s += pow(fabsf(f[i]), lp);
	return (float) pow(s, 1.0 / lp);
}

static double
cpu_encode_activate(SaeBackend *be, float *h, const float *b_enc, float *f,
					int B, int m, SaeActivation act, float noise_scale,
					uint64_t seed, uint64_t noise_stream, double lp,
					float *row_norm, float *fire_count)
{
	double		l0 = 0;

	/* l0 and fire_count are integer counts: exact in any summation order */
#pragma omp parallel reduction(+:l0) if((size_t) B * m >= SAE_PARALLEL_MIN)
	{
		float	   *fired = fire_count ? calloc(m, sizeof(float)) : NULL;

#pragma omp for schedule(static)
		for (int b = 0; b < B; b++)
		{
			float	   *hr = h + (size_t) b * m;
			float	   *fr = f + (size_t) b * m;
			int			active = 0;

			for (int i = 0; i < m; i++)
			{
				float		pre = hr[i] + b_enc[i];
				float		z = pre;
				float		out;

				hr[i] = pre;
				if (noise_scale > 0)
					z += noise_scale * sae_normal(seed, noise_stream, (uint64_t) b * m + i);
				out = sae_activate(z, act == SAE_ACT_TANH_RELU);
				fr[i] = out;
				if (out > 0)
				{
					active++;
					if (fired)
						fired[i] += 1;
				}
			}
			row_norm[b] = row_lp_norm(fr, m, lp);
			l0 += active;
		}
		if (fired)
		{
#pragma omp critical
			for (int i = 0; i < m; i++)
				fire_count[i] += fired[i];
			free(fired);
		}
	}
	return l0;
}

/* Per-row quantities of the MSE op, summed in row order afterwards. */
enum
{
	MSE_WE, MSE_E, MSE_T, MSE_EV, MSE_EV2, MSE_L2, MSE_RATIO, MSE_NSTATS
};

static void
cpu_mse_forward_backward(SaeBackend *be, const float *x, const float *xhat,
						 int B, int d, bool dense_batch, float *d_xhat,
						 float *row_w, float *x_sq, SaeMseStats *st)
{
	double	   *mean = malloc(sizeof(double) * d);
	float	   *meanf = malloc(sizeof(float) * d);
	double	   *stats = malloc(sizeof(double) * MSE_NSTATS * B);
	double		sums[MSE_NSTATS] = {0};
	double		scale = 2.0 / ((double) B * d);

	block_col_sums(x, NULL, B, d, mean);
	for (int j = 0; j < d; j++)
		meanf[j] = (float) (mean[j] / B);

#pragma omp parallel for schedule(static) if((size_t) B * d >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		const float *xr = x + (size_t) b * d;
		const float *yr = xhat + (size_t) b * d;
		float	   *gr = d_xhat + (size_t) b * d;
		double	   *out = stats + (size_t) b * MSE_NSTATS;
		double		e = 0,
					t = 0,
					xx = 0,
					yy = 0,
					ev;
		float		w;

		for (int j = 0; j < d; j++)
		{
			double		diff = (double) yr[j] - xr[j];
			double		cen = (double) xr[j] - meanf[j];

			e += diff * diff;
			t += cen * cen;
			xx += (double) xr[j] * xr[j];
			yy += (double) yr[j] * yr[j];
		}
		w = dense_batch ? (float) (1.0 / (sqrt(t) + 1e-6)) : 1.0f;
		for (int j = 0; j < d; j++)
			gr[j] = (float) (scale * w) * (yr[j] - xr[j]);
		row_w[b] = w;
		x_sq[b] = (float) xx;
		ev = t > 0 ? 1.0 - e / t : 0.0;
		out[MSE_WE] = w * e;
		out[MSE_E] = e;
		out[MSE_T] = t;
		out[MSE_EV] = ev;
		out[MSE_EV2] = ev * ev;
		out[MSE_L2] = sqrt(yy);
		out[MSE_RATIO] = sqrt(yy) / (sqrt(xx) < 1e-4 ? 1.0 : sqrt(xx));
	}
	for (int b = 0; b < B; b++)
		for (int k = 0; k < MSE_NSTATS; k++)
			sums[k] += stats[(size_t) b * MSE_NSTATS + k];
	st->mse_sum = sums[MSE_WE];
	st->sse = sums[MSE_E];
	st->sst = sums[MSE_T];
	st->ev_legacy_sum = sums[MSE_EV];
	st->ev_legacy_sumsq = sums[MSE_EV2];
	st->l2_norm_out = sums[MSE_L2];
	st->l2_ratio = sums[MSE_RATIO];
	free(mean);
	free(meanf);
	free(stats);
}

static void
cpu_activation_backward(SaeBackend *be, float *dh, const float *f,
						const float *row_norm, const float *row_scale,
						float l1_scale, double lp, int B, int m, SaeActivation act)
{
#pragma omp parallel for schedule(static) if((size_t) B * m >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		float	   *gr = dh + (size_t) b * m;
		const float *fr = f + (size_t) b * m;
		float		s = l1_scale * (row_scale ? row_scale[b] : 1.0f);
		float		norm = row_norm[b];

		for (int i = 0; i < m; i++)
		{
			float		fi = fr[i];

			if (fi > 0)
			{
				float		g = gr[i] + s * sae_lp_norm_grad(fi, norm, lp);

				gr[i] = act == SAE_ACT_TANH_RELU ? g * (1 - fi * fi) : g;
			}
			else
				gr[i] = 0;
		}
	}
}

static int64_t
cpu_update_fire_stats(SaeBackend *be, float *fire_count, float *since,
					  float *act_freq, float *dead_mask, int m, float window)
{
	int64_t		dead = 0;

#pragma omp parallel for schedule(static) reduction(+:dead) if((size_t) m >= SAE_PARALLEL_MIN)
	for (int i = 0; i < m; i++)
	{
		since[i] = fire_count[i] > 0 ? 0 : since[i] + 1;
		act_freq[i] += fire_count[i];
		fire_count[i] = 0;
		dead_mask[i] = since[i] > window ? 1.0f : 0.0f;
		dead += since[i] > window;
	}
	return dead;
}

static void
cpu_exp_masked(SaeBackend *be, float *g, const float *h, const float *mask, int B, int m)
{
#pragma omp parallel for schedule(static) if((size_t) B * m >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
		for (int i = 0; i < m; i++)
		{
			size_t		k = (size_t) b * m + i;

			g[k] = mask[i] > 0 ? expf(h[k]) : 0.0f;
		}
}

/* 1/(||r_b - mean_b r|| + 1e-6) per row of the residual r = x - xhat. */
static void
residual_row_weights(const float *x, const float *xhat, int B, int d, float *wg)
{
	double	   *mean = calloc(d, sizeof(double));

	for (int b = 0; b < B; b++)
		for (int j = 0; j < d; j++)
			mean[j] += (double) x[(size_t) b * d + j] - xhat[(size_t) b * d + j];
	for (int j = 0; j < d; j++)
		mean[j] /= B;
#pragma omp parallel for schedule(static) if((size_t) B * d >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		double		ss = 0;

		for (int j = 0; j < d; j++)
		{
			double		c = (double) x[(size_t) b * d + j] - xhat[(size_t) b * d + j] - mean[j];

			ss += c * c;
		}
		wg[b] = (float) (1.0 / (sqrt(ss) + 1e-6));
	}
	free(mean);
}

static double
cpu_ghost_loss(SaeBackend *be, const float *x, const float *xhat, float *y,
			   const float *row_w, bool dense_batch, int B, int d)
{
	double		scale = 2.0 / ((double) B * d);
	float	   *wg = malloc(sizeof(float) * B);
	double	   *row_loss = calloc(B, sizeof(double));
	double		loss;

	for (int b = 0; b < B; b++)
		wg[b] = 1.0f;
	if (dense_batch)
		residual_row_weights(x, xhat, B, d, wg);

#pragma omp parallel for schedule(static) if((size_t) B * d >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		const float *xr = x + (size_t) b * d;
		const float *yr = xhat + (size_t) b * d;
		float	   *gy = y + (size_t) b * d;
		double		loss_b = 0;
		double		rr = 0,
					ny = 0;
		float		c,
					w = row_w[b];

		for (int j = 0; j < d; j++)
		{
			double		r = (double) xr[j] - yr[j];

			rr += r * r;
			ny += (double) gy[j] * gy[j];
		}
		c = (float) (sqrt(rr) / (1e-6 + 2 * sqrt(ny)));
		for (int j = 0; j < d; j++)
		{
			float		r = xr[j] - yr[j];
			float		diff = gy[j] * c - r;
			float		eg = diff * diff * wg[b];
			float		e = r * r * w;
			float		ratio = e / (eg + 1e-6f);

			loss_b += (double) ratio * eg;
			gy[j] = (float) (scale * ratio * diff * wg[b]) * c;
		}
		row_loss[b] = loss_b;
	}
	loss = ordered_sum(row_loss, B);
	free(wg);
	free(row_loss);
	return loss / ((double) B * d);
}

static void
cpu_ghost_backward(SaeBackend *be, float *dh, const float *dg, const float *h,
				   const float *mask, int B, int m)
{
#pragma omp parallel for schedule(static) if((size_t) B * m >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
		for (int i = 0; i < m; i++)
		{
			size_t		k = (size_t) b * m + i;

			if (mask[i] > 0)
				dh[k] += dg[k] * expf(h[k]);
		}
}

/* CSR and CSC of the positive entries of f, by counting. */
static int64_t
cpu_sparsify(SaeBackend *be, const float *f, int B, int m, int32_t *row_ptr,
			 int32_t *col_idx, int32_t *col_ptr, int32_t *row_idx, int64_t capacity)
{
	int64_t		nnz = 0;

#pragma omp parallel for schedule(static) if((size_t) B * m >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		const float *fr = f + (size_t) b * m;
		int32_t		count = 0;

		for (int i = 0; i < m; i++)
			count += fr[i] > 0;
		row_ptr[b + 1] = count;
	}
	row_ptr[0] = 0;
	for (int b = 0; b < B; b++)
		row_ptr[b + 1] += row_ptr[b];
	nnz = row_ptr[B];
	if (nnz > capacity)
		return -1;
#pragma omp parallel for schedule(static) if((size_t) B * m >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		const float *fr = f + (size_t) b * m;
		int32_t		k = row_ptr[b];

		for (int i = 0; i < m; i++)
			if (fr[i] > 0)
				col_idx[k++] = i;
	}
	memset(col_ptr, 0, sizeof(int32_t) * (m + 1));
	for (int64_t k = 0; k < nnz; k++)
		col_ptr[col_idx[k] + 1]++;
	for (int i = 0; i < m; i++)
		col_ptr[i + 1] += col_ptr[i];
	{
		int32_t    *next = malloc(sizeof(int32_t) * m);

		memcpy(next, col_ptr, sizeof(int32_t) * m);
		for (int b = 0; b < B; b++)
			for (int32_t k = row_ptr[b]; k < row_ptr[b + 1]; k++)
				row_idx[next[col_idx[k]]++] = b;
		free(next);
	}
	return nnz;
}

static void
cpu_sparse_decode(SaeBackend *be, const int32_t *row_ptr, const int32_t *col_idx,
				  const float *f, const float *w_dec, float *x_hat, int B, int m, int d)
{
#pragma omp parallel for schedule(dynamic, 16) if((size_t) B * d >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		float	   *out = x_hat + (size_t) b * d;

		memset(out, 0, sizeof(float) * d);
		for (int32_t k = row_ptr[b]; k < row_ptr[b + 1]; k++)
		{
			int			i = col_idx[k];
			float		v = f[(size_t) b * m + i];
			const float *w = w_dec + (size_t) i * d;

#pragma omp simd
			for (int j = 0; j < d; j++)
				out[j] += v * w[j];
		}
	}
}

static void
cpu_sparse_backprop(SaeBackend *be, const int32_t *row_ptr, const int32_t *col_idx,
					const float *d_xhat, const float *w_dec, float *dh, int B, int m, int d)
{
#pragma omp parallel for schedule(dynamic, 16) if((size_t) B * d >= SAE_PARALLEL_MIN)
	for (int b = 0; b < B; b++)
	{
		const float *g = d_xhat + (size_t) b * d;

		for (int32_t k = row_ptr[b]; k < row_ptr[b + 1]; k++)
		{
			int			i = col_idx[k];
			const float *w = w_dec + (size_t) i * d;
			float		dot = 0;

#pragma omp simd reduction(+:dot)
			for (int j = 0; j < d; j++)
				dot += g[j] * w[j];
			dh[(size_t) b * m + i] = dot;
		}
	}
}

static void
cpu_sparse_weight_grad(SaeBackend *be, const int32_t *col_ptr, const int32_t *row_idx,
					   const float *vals, const float *rows, float *grad, int B, int m, int d)
{
#pragma omp parallel for schedule(dynamic, 64) if((size_t) m * d >= SAE_PARALLEL_MIN)
	for (int i = 0; i < m; i++)
	{
		float	   *out = grad + (size_t) i * d;

		memset(out, 0, sizeof(float) * d);
		for (int32_t k = col_ptr[i]; k < col_ptr[i + 1]; k++)
		{
			int			b = row_idx[k];
			float		v = vals[(size_t) b * m + i];
			const float *r = rows + (size_t) b * d;

#pragma omp simd
			for (int j = 0; j < d; j++)
				out[j] += v * r[j];
		}
	}
}

/* torch.optim.Adam's single-tensor update (backend_math.h). */
static void
cpu_adam(SaeBackend *be, float *param, const float *grad, float *m1, float *m2,
		 size_t n, double lr, double beta1, double beta2, double eps, int64_t t)
{
	SaeAdamStep s = sae_adam_step(lr, beta1, beta2, eps, t);

#pragma omp parallel for schedule(static) if(n >= SAE_PARALLEL_MIN)
	for (size_t i = 0; i < n; i++)
		sae_adam_update(&s, &param[i], grad[i], &m1[i], &m2[i]);
}

static double
cpu_weiszfeld_step(SaeBackend *be, const float *x, int64_t n, int d,
				   const float *mu, float *new_mu, double eps)
{
	double	   *dist = malloc(sizeof(double) * n);
	double	   *w = malloc(sizeof(double) * n);
	double	   *acc = malloc(sizeof(double) * d);
	double		obj;

#pragma omp parallel for schedule(static) if((size_t) n * d >= SAE_PARALLEL_MIN)
	for (int64_t t = 0; t < n; t++)
	{
		const float *xr = x + (size_t) t * d;
		double		ss = 0;

		for (int j = 0; j < d; j++)
		{
			double		diff = (double) xr[j] - mu[j];

			ss += diff * diff;
		}
		dist[t] = sqrt(ss);
		w[t] = 1.0 / (dist[t] > eps ? dist[t] : eps);
	}
	obj = ordered_sum(dist, n);
	block_col_sums(x, w, n, d, acc);
	{
		double		wsum = ordered_sum(w, n);

		for (int j = 0; j < d; j++)
			new_mu[j] = (float) (acc[j] / wsum);
	}
	free(dist);
	free(w);
	free(acc);
	return obj;
}

static void
cpu_destroy(SaeBackend *be)
{
	free(be);
}

SaeBackend *
sae_backend_cpu_create(int threads)
{
	SaeBackend *be = calloc(1, sizeof(SaeBackend));

	if (be == NULL)
		return NULL;
	be->name = "cpu";
	be->alloc = cpu_alloc;
	be->free = cpu_free;
	be->to_device = cpu_memcpy;
	be->to_host = cpu_memcpy;
	be->copy = cpu_memcpy;
	be->fill = cpu_fill;
	be->gemm = cpu_gemm;
	be->gather_rows = cpu_gather_rows;
	be->add_row_vector = cpu_add_row_vector;
	be->col_sum = cpu_col_sum;
	be->normalize_rows = cpu_normalize_rows;
	be->project_rows = cpu_project_rows;
	be->encode_activate = cpu_encode_activate;
	be->mse_forward_backward = cpu_mse_forward_backward;
	be->activation_backward = cpu_activation_backward;
	be->update_fire_stats = cpu_update_fire_stats;
	be->exp_masked = cpu_exp_masked;
	be->ghost_loss = cpu_ghost_loss;
	be->ghost_backward = cpu_ghost_backward;
	be->sparsify = cpu_sparsify;
	be->sparse_decode = cpu_sparse_decode;
	be->sparse_backprop = cpu_sparse_backprop;
	be->sparse_weight_grad = cpu_sparse_weight_grad;
	be->adam = cpu_adam;
	be->weiszfeld_step = cpu_weiszfeld_step;
	be->destroy = cpu_destroy;
	be->host_memory = true;
	be->device_index = -1;
	sae_backend_cpu_lm_ops(be);
	/* every call sets the count, so "0: all cores" undoes an earlier 1 */
	if (threads <= 0)
		threads = omp_get_num_procs();
	omp_set_num_threads(threads);
	openblas_set_num_threads(threads);
	return be;
}
