/*
 * backend_cpu_lm.c — the CPU backend's language-model ops: LayerNorm, the
 * MLP nonlinearity, residual adds and the attention mask and softmax.
 *
 * The matrix products of the model go through the backend's gemm
 * (OpenBLAS); these are the passes between them.  Each follows HF
 * transformers' float32 math (reference/models.md §3.3); the LayerNorm
 * statistics are taken in double, which keeps them within float rounding
 * of torch's.
 */
#include "backend.h"

#include <math.h>
#include <stddef.h>

#include <omp.h>

/* Loops over fewer elements than this run on one thread (as in backend_cpu.c). */
#define LM_PARALLEL_MIN 65536

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

/* gelu_new, exactly HF's NewGELUActivation in float32 */
static inline float
gelu_new(float u)
{
	const float c = 0.7978845608028654f;	/* sqrt(2 / pi) */

	return 0.5f * u * (1.0f + tanhf(c * (u + 0.044715f * u * u * u)));
}

static void
cpu_lm_activation(SaeBackend *be, float *y, const float *x, size_t n, SaeLmAct act)
{
#pragma omp parallel for schedule(static) if(n >= LM_PARALLEL_MIN)
	for (size_t i = 0; i < n; i++)
	{
		float		u = x[i];

		switch (act)
		{
			case SAE_LM_GELU_NEW:
				y[i] = gelu_new(u);
				break;
			case SAE_LM_GELU:
				y[i] = 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
				break;
			case SAE_LM_RELU:
				y[i] = u > 0 ? u : 0;
				break;
		}
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

void
sae_backend_cpu_lm_ops(SaeBackend *be)
{
	be->layernorm = cpu_layernorm;
	be->scale_shift = cpu_scale_shift;
	be->lm_activation = cpu_lm_activation;
	be->add = cpu_add;
	be->attn_mask = cpu_attn_mask;
	be->softmax_rows = cpu_softmax_rows;
}
