/*
 * backend_cpu_lm.c — the CPU backend's language-model ops: LayerNorm, the
 * MLP nonlinearity, residual adds, the attention mask and softmax, and a
 * fused attention for passes that do not look at the scores.
 *
 * The model's weight products go through the backend's gemm (OpenBLAS);
 * these are the passes between them.  Each follows HF transformers' float32
 * math (reference/models.md §3.3) up to rounding: the LayerNorm statistics
 * are taken in double, exp is a vectorised polynomial (within 2 ulp).
 */
#include "backend.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

/* Loops over fewer elements than this run on one thread (as in backend_cpu.c). */
#define LM_PARALLEL_MIN 65536
/* Elementwise loops hand out this many elements per task. */
#define LM_CHUNK 4096
/* The fused attention takes query rows in blocks of this many. */
#define ATTN_QBLOCK 64

/* One row of LayerNorm: two passes (mean, then variance), as torch and llm.c do. */
static void
layernorm_row(float *y, float *scale, const float *x, int cols, float eps)
{
	double		sum = 0,
				var = 0;
	float		mean,
				rstd;

	for (int c = 0; c < cols; c++)
		sum += x[c];
	mean = (float) (sum / cols);
	for (int c = 0; c < cols; c++)
	{
		double		d = (double) x[c] - mean;

		var += d * d;
	}
	var /= cols;
	if (scale)
		*scale = (float) sqrt(var + eps);
	rstd = (float) (1.0 / sqrt(var + eps));
	for (int c = 0; c < cols; c++)
		y[c] = (x[c] - mean) * rstd;
}

static void
cpu_layernorm(SaeBackend *be, float *y, float *scale, const float *x, int rows, int cols,
			  float eps)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= LM_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
		layernorm_row(y + (size_t) r * cols, scale ? scale + r : NULL, x + (size_t) r * cols,
					  cols, eps);
}

static void
cpu_scale_shift(SaeBackend *be, float *y, const float *w, const float *b, int rows, int cols)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= LM_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
	{
		float	   *row = y + (size_t) r * cols;

		for (int c = 0; c < cols; c++)
			row[c] = row[c] * w[c] + b[c];
	}
}

/*
 * The loops below vectorise only without -ftrapping-math (GCC's default):
 * a float compare or a float-to-int conversion may raise an FP exception, so
 * GCC keeps the branches.  The option changes no result, only which FP
 * exception flags a loop may set.
 */
#pragma GCC optimize ("no-trapping-math")

/*
 * expf for x <= 0 (softmax's x - max, GELU's -2|y|): Cody-Waite reduction
 * and a degree-6 polynomial, within 2 ulp, in plain C that GCC vectorises
 * under "omp simd" (glibc's expf is a call per element).  x < -87 gives 0.
 */
static inline float
expf_nonpositive(float x)
{
	float		n,
				r,
				p,
				scale;
	int32_t		bits;

	x = x < -87.0f ? -87.0f : x;
	n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;	/* round(x / ln 2) */
	r = x - n * 0.693145751953125f;
	r = r - n * 1.428606765330187045e-06f;
	p = 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	bits = ((int32_t) n + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return x <= -87.0f ? 0.0f : p * scale;
}

/*
 * gelu_new, HF's NewGELUActivation, 0.5 u (1 + tanh(y)) with
 * y = sqrt(2/pi) (u + 0.044715 u^3), and tanh(y) written as
 * sign(y) (1 - e) / (1 + e), e = exp(-2|y|): within 1e-7 of torch's float32
 * tanh, and ten times faster than a tanhf call per element, which was a
 * fifth of a forward pass.
 */
static void
gelu_new(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if(n >= LM_PARALLEL_MIN)
	for (size_t c0 = 0; c0 < n; c0 += LM_CHUNK)
	{
		size_t		len = n - c0 < LM_CHUNK ? n - c0 : LM_CHUNK;

#pragma omp simd
		for (size_t i = c0; i < c0 + len; i++)
		{
			float		u = x[i];
			float		a = 0.7978845608028654f * (u + 0.044715f * u * u * u);
			float		e = expf_nonpositive(-2.0f * fabsf(a));

			y[i] = 0.5f * u * (1.0f + copysignf((1.0f - e) / (1.0f + e), a));
		}
	}
}

static void
cpu_lm_activation(SaeBackend *be, float *y, const float *x, size_t n, SaeLmAct act)
{
	if (act == SAE_LM_GELU_NEW)
	{
		gelu_new(y, x, n);
		return;
	}
#pragma omp parallel for schedule(static) if(n >= LM_PARALLEL_MIN)
	for (size_t i = 0; i < n; i++)
	{
		float		u = x[i];

		if (act == SAE_LM_GELU)
			y[i] = 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
		else
			y[i] = u > 0 ? u : 0;
	}
}

static void
cpu_add(SaeBackend *be, float *dst, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if(n >= LM_PARALLEL_MIN)
	for (size_t i = 0; i < n; i++)
		dst[i] = a[i] + b[i];
}

static void
cpu_attn_mask(SaeBackend *be, float *scores, int Tq, int H, int Tk, int q_offset,
			  float divisor, int window)
{
#pragma omp parallel for schedule(static) if((size_t) Tq * H * Tk >= LM_PARALLEL_MIN)
	for (int i = 0; i < Tq; i++)
	{
		int			last = q_offset + i;	/* the newest key this query sees */
		int			first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;

		for (int h = 0; h < H; h++)
		{
			float	   *s = scores + ((size_t) i * H + h) * Tk;

			for (int j = 0; j < Tk; j++)
				s[j] = (j >= first && j <= last) ? s[j] / divisor : -INFINITY;
		}
	}
}

/* Subtract the row max, exponentiate, divide by the sum: torch's softmax in float32. */
static void
cpu_softmax_rows(SaeBackend *be, float *dst, const float *src, int rows, int cols)
{
#pragma omp parallel for schedule(static) if((size_t) rows * cols >= LM_PARALLEL_MIN)
	for (int r = 0; r < rows; r++)
	{
		const float *s = src + (size_t) r * cols;
		float	   *d = dst + (size_t) r * cols;
		float		max = -INFINITY,
					sum = 0;

		for (int c = 0; c < cols; c++)
			max = s[c] > max ? s[c] : max;
		if (max == -INFINITY)
		{
			for (int c = 0; c < cols; c++)
				d[c] = 0;
			continue;
		}
		for (int c = 0; c < cols; c++)
		{
			d[c] = expf(s[c] - max);
			sum += d[c];
		}
		for (int c = 0; c < cols; c++)
			d[c] /= sum;
	}
}

/*
 * Softmax of one query's scores over the keys it may see, s[first..last],
 * after dividing by divisor; zero for the others (of n).  The same steps as
 * attn_mask followed by softmax_rows.
 */
static void
masked_softmax(float *s, int n, int first, int last, float divisor)
{
	float		max = -INFINITY,
				sum = 0;

#pragma omp simd reduction(max:max)
	for (int j = first; j <= last; j++)
	{
		s[j] /= divisor;
		max = s[j] > max ? s[j] : max;
	}
#pragma omp simd reduction(+:sum)
	for (int j = first; j <= last; j++)
	{
		s[j] = expf_nonpositive(s[j] - max);
		sum += s[j];
	}
	for (int j = first; j <= last; j++)
		s[j] /= sum;
	for (int j = 0; j < first; j++)
		s[j] = 0;
	for (int j = last + 1; j < n; j++)
		s[j] = 0;
}

/*
 * One head of one sequence, a block of query rows at a time: each block
 * multiplies only the keys its rows may see (the causal half, or the local
 * window), so scores are never made for masked pairs.  S holds
 * ATTN_QBLOCK x Tk floats.  Called inside a parallel region, so OpenBLAS's
 * OpenMP build runs these GEMMs on the calling thread.
 */
static void
attend_head(float *z, const float *q, const float *k, const float *v, int Tq, int D, int ld,
			int q_offset, float divisor, int window, float *S)
{
	for (int r0 = 0; r0 < Tq; r0 += ATTN_QBLOCK)
	{
		int			r1 = r0 + ATTN_QBLOCK < Tq ? r0 + ATTN_QBLOCK : Tq;
		int			last = q_offset + r1 - 1;	/* newest key of the block's last query */
		int			first = window > 0 && q_offset + r0 - window + 1 > 0 ? q_offset + r0 - window + 1 : 0;
		int			nk = last - first + 1;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, nk, D, 1.0f,
					q + (size_t) r0 * ld, ld, k + (size_t) first * ld, ld, 0.0f, S, nk);
		for (int i = r0; i < r1; i++)
		{
			int			row_last = q_offset + i;
			int			row_first = window > 0 && row_last - window + 1 > 0 ? row_last - window + 1 : 0;

			masked_softmax(S + (size_t) (i - r0) * nk, nk, row_first - first, row_last - first,
						   divisor);
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, D, nk, 1.0f,
					S, nk, v + (size_t) first * ld, ld, 0.0f, z + (size_t) r0 * ld, ld);
	}
}

/* Every (sequence, head) pair is a task of one thread. */
static bool
cpu_attention(SaeBackend *be, float *z, const float *q, const float *k, const float *v,
			  int B, int Tq, int Tk, int H, int D, int q_offset, float divisor, int window)
{
	int			C = H * D;
	bool		ok = true;

#pragma omp parallel if((size_t) B * H * Tq * Tk >= LM_PARALLEL_MIN)
	{
		float	   *S = malloc(sizeof(float) * ATTN_QBLOCK * Tk);

		if (S == NULL)
		{
#pragma omp atomic write
			ok = false;
		}
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int b = 0; b < B; b++)
			for (int h = 0; h < H; h++)
				if (S)
					attend_head(z + (size_t) b * Tq * C + h * D, q + (size_t) b * Tq * C + h * D,
								k + (size_t) b * Tk * C + h * D, v + (size_t) b * Tk * C + h * D,
								Tq, D, C, q_offset, divisor, window, S);
		free(S);
	}
	return ok;
}

void
sae_backend_cpu_lm_ops(SaeBackend *be)
{
	be->layernorm = cpu_layernorm;
	be->scale_shift = cpu_scale_shift;
	be->lm_activation = cpu_lm_activation;
	be->add = cpu_add;
	be->attn_mask = cpu_attn_mask;
	be->softmax_rows = cpu_softmax_rows;
	be->attention = cpu_attention;
}
