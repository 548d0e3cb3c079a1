/*
 * backend_math.h — per-element formulas the CPU backend and the CUDA
 * kernels share, so that both compute each value with the same float and
 * double operations (the backends then differ in summation order and in the
 * last bits of the math library's functions).
 * Plain C; under nvcc each function is also a device function.
 */
#ifndef SAE_BACKEND_MATH_H
#define SAE_BACKEND_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define SAE_HD static inline __host__ __device__
#else
#define SAE_HD static inline
#endif

/* The encoder nonlinearity of one pre-activation plus its noise: relu, or tanh(relu). */
SAE_HD float
sae_activate(float z, int tanh_relu)
{
	float		out = z > 0 ? z : 0;

	return tanh_relu ? tanhf(out) : out;
}

/* d||f||_p / df_i for f_i >= 0, given the row norm. */
SAE_HD float
sae_lp_norm_grad(float f, float norm, double lp)
{
	if (f <= 0 || norm <= 0)
		return 0;
	if (lp == 1.0)
		return 1;
	if (lp == 2.0)
		return f / norm;
	return (float) (pow((double) f, lp - 1) / pow((double) norm, lp - 1));
}

/* The constants of one Adam step, from lr, the betas, eps and the step number t >= 1. */
typedef struct SaeAdamStep
{
	float		step_size;		/* lr / (1 - beta1^t) */
	float		w;				/* 1 - beta1 */
	float		b2;
	float		one_minus_b2;
	float		bc2s;			/* sqrt(1 - beta2^t) */
	float		eps;
} SaeAdamStep;

SAE_HD SaeAdamStep
sae_adam_step(double lr, double beta1, double beta2, double eps, long long t)
{
	SaeAdamStep s;

	s.step_size = (float) (lr / (1 - pow(beta1, (double) t)));
	s.w = (float) (1 - beta1);
	s.b2 = (float) beta2;
	s.one_minus_b2 = (float) (1 - beta2);
	s.bc2s = (float) sqrt(1 - pow(beta2, (double) t));
	s.eps = (float) eps;
	return s;
}

/* torch.optim.Adam's single-tensor update of one parameter, operation for operation. */
SAE_HD void
sae_adam_update(const SaeAdamStep *s, float *param, float g, float *m1, float *m2)
{
	float		m = *m1;
	float		v;

	m = s->w < 0.5f ? m + s->w * (g - m) : g - (g - m) * (1 - s->w);
	v = *m2 * s->b2 + g * g * s->one_minus_b2;
	*m1 = m;
	*m2 = v;
	*param += -s->step_size * (m / (sqrtf(v) / s->bc2s + s->eps));
}

#endif
