/*
 * test_adam.c — the backend's Adam against PyTorch's update written out in
 * float64 (reference/saelens.md §2.4):
 *   m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
 *   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 */
#include "unit.h"
#include "helpers.h"
#include "backend.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>

#define AN 257					/* odd, so no SIMD-width luck */
#define ASTEPS 7

/* One PyTorch Adam step in double. */
static void
adam_ref(double *p, const double *g, double *m, double *v, int n, double lr,
		 double b1, double b2, double eps, int t)
{
	double		bc1 = 1 - pow(b1, t),
				bc2 = 1 - pow(b2, t);

	for (int i = 0; i < n; i++)
	{
		m[i] = b1 * m[i] + (1 - b1) * g[i];
		v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
		p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
	}
}

/* Gradient of element i at step t: mixed scales, signs, a few exact zeros and tiny values. */
static float
grad_at(int i, int t, double scale)
{
	if (i % 17 == 0)
		return 0.0f;
	if (i % 13 == 0)
		return (float) (1e-9 * (1 + sae_uniform(7, 200 + t, i)));	/* eps-dominated */
	return (float) (scale * sae_normal(7, 300 + t, i) * (1 + i % 5));
}

/* Run ASTEPS steps through be->adam and the reference; check params and both moments. */
static void
check_adam(double b1, double b2, double lr, double scale)
{
	SaeBackend *be = test_backend();
	float	   *p = be->alloc(be, sizeof(float) * AN),
			   *g = be->alloc(be, sizeof(float) * AN),
			   *m1 = be->alloc(be, sizeof(float) * AN),
			   *m2 = be->alloc(be, sizeof(float) * AN);
	double		pr[AN],
				gr[AN],
				mr[AN] = {0},
				vr[AN] = {0},
				p0[AN],
				worst = 0;

	for (int i = 0; i < AN; i++)
		p[i] = (float) (p0[i] = pr[i] = (float) (sae_uniform(7, 100, i) * 2 - 1));
	for (int t = 1; t <= ASTEPS; t++)
	{
		for (int i = 0; i < AN; i++)
			gr[i] = g[i] = grad_at(i, t, scale);
		be->adam(be, p, g, m1, m2, AN, lr, b1, b2, 1e-8, t);
		adam_ref(pr, gr, mr, vr, AN, lr, b1, b2, 1e-8, t);
	}
	for (int i = 0; i < AN; i++)
	{
		/* compare the displacement, which Adam keeps near lr per step */
		double		err = fabs((p[i] - p0[i]) - (pr[i] - p0[i])) / (lr * ASTEPS);

		worst = fmax(worst, err);
		CHECK_MSG(err <= 1e-4, "b1=%g elem %d: param %.9g, reference %.9g (displacement err %.2e of lr*t)",
				  b1, i, p[i], pr[i], err);
		CHECK_REL(m1[i], mr[i], 1e-5, 1e-30);
		CHECK_REL(m2[i], vr[i], 1e-5, 1e-30);
		if (unit_current_failed())
			break;
	}
	unit_note("beta1 %g beta2 %g lr %g grad scale %g: max displacement err %.2e (of lr*steps)",
			  b1, b2, lr, scale, worst);
	/* zero gradients never move a parameter */
	CHECK(p[0] == (float) p0[0] && p[17] == (float) p0[17]);
	be->free(be, p);
	be->free(be, g);
	be->free(be, m1);
	be->free(be, m2);
	be->destroy(be);
}

/* SAELens's default beta1 = 0: no momentum, only the second moment. */
UNIT_TEST(beta1_zero)
{
	check_adam(0.0, 0.999, 1e-3, 1.0);
}

/* PyTorch's default beta1 = 0.9, with bias correction of the first moment. */
UNIT_TEST(beta1_0_9)
{
	check_adam(0.9, 0.999, 1e-3, 1.0);
}

/* Small gradients (1e-6): eps sits outside the bias-corrected sqrt(v), as in torch. */
UNIT_TEST(small_gradients_eps_placement)
{
	check_adam(0.9, 0.999, 1e-2, 1e-6);
	check_adam(0.0, 0.99, 1e-2, 1e-7);
}

/* The first step with beta1 = 0 moves every element by about lr * sign(g). */
UNIT_TEST(first_step_is_lr_sign)
{
	SaeBackend *be = test_backend();
	float		p[3] = {0, 0, 0},
				g[3] = {2.0f, -0.5f, 1e-3f},
				m1[3] = {0},
				m2[3] = {0};

	be->adam(be, p, g, m1, m2, 3, 0.01, 0.0, 0.999, 1e-8, 1);
	CHECK_REL(p[0], -0.01, 1e-5, 0);
	CHECK_REL(p[1], 0.01, 1e-5, 0);
	CHECK_REL(p[2], -0.01 * 1e-3 / (1e-3 + 1e-8), 1e-5, 0);
	be->destroy(be);
}
