/*
 * test_init.c — parameter initialisation (saelens.md §2.1, §8) and the
 * b_dec initialisation methods (§1.3).
 */
#include "unit.h"
#include "helpers.h"
#include "rng.h"
#include "trainer.h"

#include <math.h>
#include <stdlib.h>

typedef struct Params
{
	int			d,
				m;
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec;
} Params;

/* Initialise a trainer of d x m with the given type/orthogonality/seed and read its params. */
static bool
init_params(int d, int m, const char *sae_type, bool orthogonal, int seed, Params *p)
{
	SaeConfig	c;
	SaeBackend *be = test_backend();
	SaeTrainer *t = NULL;
	SaeError	err;
	bool		ok;

	cfg_base(&c);
	cfg_num(&c, "d_in", d);
	cfg_num(&c, "d_sae", m);
	cfg_str(&c, "sae_type", sae_type);
	if (strcmp(sae_type, "tanh_sae") == 0)
		cfg_num(&c, "noise_scale", 1);
	cfg_bool(&c, "decoder_orthogonal_init", orthogonal);
	cfg_num(&c, "seed", seed);
	ok = cfg_finish(&c) && sae_trainer_create(&c, be, 4, &t, &err) == SAE_OK &&
		sae_trainer_init_params(t, &err) == SAE_OK;
	p->d = d;
	p->m = m;
	p->w_enc = calloc((size_t) d * m, sizeof(float));
	p->b_enc = calloc(m, sizeof(float));
	p->w_dec = calloc((size_t) d * m, sizeof(float));
	p->b_dec = calloc(d, sizeof(float));
	if (ok)
		sae_trainer_get_params(t, p->w_enc, p->b_enc, p->w_dec, p->b_dec);
	else
		unit_fail(__FILE__, __LINE__, "could not create/init a %d x %d trainer", d, m);
	sae_trainer_destroy(t);
	be->destroy(be);
	return ok;
}

/* Free the four host arrays of init_params. */
static void
free_params(Params *p)
{
	free(p->w_enc);
	free(p->b_enc);
	free(p->w_dec);
	free(p->b_dec);
}

/* Largest |G - I| where G = W^T W (gram of columns, d x d) or W W^T (rows, m x m). */
static double
gram_error(const float *w, int m, int d, bool columns)
{
	int			n = columns ? d : m,
				len = columns ? m : d;
	double		worst = 0;

	for (int a = 0; a < n; a++)
		for (int b = 0; b < n; b++)
		{
			double		s = 0;

			for (int k = 0; k < len; k++)
				s += columns ? (double) w[k * d + a] * w[k * d + b]
					: (double) w[a * d + k] * w[b * d + k];
			worst = fmax(worst, fabs(s - (a == b)));
		}
	return worst;
}

/* Largest | ||row|| - 1 | of an m x d matrix. */
static double
row_norm_error(const float *w, int m, int d)
{
	double		worst = 0;

	for (int i = 0; i < m; i++)
	{
		double		ss = 0;

		for (int j = 0; j < d; j++)
			ss += (double) w[i * d + j] * w[i * d + j];
		worst = fmax(worst, fabs(sqrt(ss) - 1));
	}
	return worst;
}

/* Kaiming-uniform with torch's fan_in = size(1): W_enc (d x m) ~ U(+-sqrt(6/m)); biases zero; unit decoder rows. */
UNIT_TEST(kaiming_and_unit_rows)
{
	Params		p;
	int			d = 24,
				m = 96;
	double		bound = sqrt(6.0 / m),
				sum = 0,
				sumsq = 0,
				maxabs = 0;

	REQUIRE(init_params(d, m, "unit_norm_sae", false, 42, &p));
	for (int k = 0; k < d * m; k++)
	{
		sum += p.w_enc[k];
		sumsq += (double) p.w_enc[k] * p.w_enc[k];
		maxabs = fmax(maxabs, fabs(p.w_enc[k]));
	}
	CHECK_MSG(maxabs <= bound && maxabs > 0.95 * bound, "max |W_enc| %.4f, bound %.4f", maxabs, bound);
	CHECK_NEAR(sum / (d * m), 0, 0.05 * bound);
	CHECK_REL(sumsq / (d * m), bound * bound / 3, 0.1, 0);
	CHECK_NEAR(row_norm_error(p.w_dec, m, d), 0, 1e-5);
	for (int i = 0; i < m; i++)
		CHECK_NEAR(p.b_enc[i], 0, 0);
	for (int j = 0; j < d; j++)
		CHECK_NEAR(p.b_dec[j], 0, 0);
	free_params(&p);
}

/* tanh_sae keeps the raw kaiming decoder: W_dec ~ U(+-sqrt(6/d)), rows not normalised. */
UNIT_TEST(tanh_decoder_not_normalised)
{
	Params		p;
	int			d = 24,
				m = 96;
	double		bound = sqrt(6.0 / d),
				maxabs = 0;

	REQUIRE(init_params(d, m, "tanh_sae", false, 42, &p));
	for (int k = 0; k < d * m; k++)
		maxabs = fmax(maxabs, fabs(p.w_dec[k]));
	CHECK_MSG(maxabs <= bound && maxabs > 0.9 * bound, "max |W_dec| %.4f, bound %.4f", maxabs, bound);
	CHECK_MSG(row_norm_error(p.w_dec, m, d) > 0.1, "tanh_sae decoder rows look normalised");
	free_params(&p);
}

/* decoder_orthogonal_init with m >= d: W_dec^T W_dec = I_d (orthonormal columns). */
UNIT_TEST(orthogonal_wide)
{
	Params		p;

	REQUIRE(init_params(16, 64, "tanh_sae", true, 3, &p));
	CHECK_NEAR(gram_error(p.w_dec, 64, 16, true), 0, 1e-5);
	/* rows then have norm ~ sqrt(d/m) = 0.5 on average */
	{
		double		ss = 0;

		for (int k = 0; k < 64 * 16; k++)
			ss += (double) p.w_dec[k] * p.w_dec[k];
		CHECK_NEAR(ss / 64, 16.0 / 64.0, 1e-4);
	}
	free_params(&p);
}

/* decoder_orthogonal_init with m < d: W_dec W_dec^T = I_m (orthonormal rows). */
UNIT_TEST(orthogonal_narrow)
{
	Params		p;

	REQUIRE(init_params(32, 8, "tanh_sae", true, 3, &p));
	CHECK_NEAR(gram_error(p.w_dec, 8, 32, false), 0, 1e-5);
	free_params(&p);
}

/* unit_norm_sae + orthogonal init: rows end unit-norm (normalised after the QR). */
UNIT_TEST(orthogonal_then_unit_rows)
{
	Params		p;

	REQUIRE(init_params(16, 64, "unit_norm_sae", true, 3, &p));
	CHECK_NEAR(row_norm_error(p.w_dec, 64, 16), 0, 1e-5);
	free_params(&p);
}

/* Initialisation is a function of the seed. */
UNIT_TEST(seeded)
{
	Params		a,
				b,
				c;

	REQUIRE(init_params(8, 32, "unit_norm_sae", false, 5, &a));
	REQUIRE(init_params(8, 32, "unit_norm_sae", false, 5, &b));
	REQUIRE(init_params(8, 32, "unit_norm_sae", false, 6, &c));
	CHECK(memcmp(a.w_enc, b.w_enc, sizeof(float) * 8 * 32) == 0);
	CHECK(memcmp(a.w_dec, b.w_dec, sizeof(float) * 8 * 32) == 0);
	CHECK(memcmp(a.w_enc, c.w_enc, sizeof(float) * 8 * 32) != 0);
	CHECK(memcmp(a.w_dec, c.w_dec, sizeof(float) * 8 * 32) != 0);
	free_params(&a);
	free_params(&b);
	free_params(&c);
}

/* b_dec after sae_trainer_init_b_dec with `method` on n x d host rows. */
static void
b_dec_for(const char *method, const float *x, int n, int d, float *b_dec, double *obj)
{
	SaeConfig	c;
	SaeBackend *be = test_backend();
	SaeTrainer *t = NULL;
	SaeError	err;
	float	   *xd = be->alloc(be, sizeof(float) * n * d);

	cfg_base(&c);
	cfg_num(&c, "d_in", d);
	cfg_num(&c, "d_sae", 2 * d);
	cfg_str(&c, "b_dec_init_method", method);
	be->to_device(be, xd, x, sizeof(float) * n * d);
	if (cfg_finish(&c) && sae_trainer_create(&c, be, 4, &t, &err) == SAE_OK &&
		sae_trainer_init_params(t, &err) == SAE_OK &&
		sae_trainer_init_b_dec(t, xd, n, obj, &err) == SAE_OK)
		sae_trainer_get_params(t, NULL, NULL, NULL, b_dec);
	else
		unit_fail(__FILE__, __LINE__, "b_dec init \"%s\" failed", method);
	sae_trainer_destroy(t);
	be->free(be, xd);
	be->destroy(be);
}

/* b_dec_init_method: mean is the column mean, zeros is zero, geometric_median is Weiszfeld's. */
UNIT_TEST(b_dec_methods)
{
	enum
	{
		N = 50, D = 5
	};
	float		x[N * D],
				b[D],
				gm[D];
	double		mean[D] = {0},
				obj = -1,
				gm_obj;
	SaeBackend *be = test_backend();
	SaeError	err;

	for (int k = 0; k < N * D; k++)
		x[k] = sae_normal(9, 1, k) + (k % D) + (k < 5 * D ? 30.0f : 0.0f);	/* 5 outliers */
	for (int k = 0; k < N * D; k++)
		mean[k % D] += x[k] / (double) N;
	b_dec_for("mean", x, N, D, b, &obj);
	for (int j = 0; j < D; j++)
		CHECK_NEAR(b[j], mean[j], 1e-5);
	b_dec_for("zeros", x, N, D, b, &obj);
	for (int j = 0; j < D; j++)
		CHECK_NEAR(b[j], 0, 0);
	b_dec_for("geometric_median", x, N, D, b, &obj);
	REQUIRE(sae_geometric_median(be, x, N, D, 100, gm, &gm_obj, &err) == SAE_OK);
	for (int j = 0; j < D; j++)
		CHECK_NEAR(b[j], gm[j], 0);
	CHECK_REL(obj, gm_obj, 1e-12, 0);
	/* the outliers move the mean, not the median */
	CHECK(fabs(b[0] - mean[0]) > 1.0);
	be->destroy(be);
}
