/*
 * test_recovery.c — end to end: an SAE trained by sae_run on synthetic
 * activations recovers the dictionary that generated them.
 *
 * 64 random unit directions in R^32; each row is ~3 of them with
 * magnitudes in [0.5, 1.5).  A d_sae = 256 SAE trained through the whole
 * run (shuffle buffer, geometric-median b_dec, warm-up, Adam) should have,
 * for almost every true direction, a decoder row pointing the same way.
 * Settings (l1 5e-3, lr 5e-3, batch 512, 1954 steps) were tuned once and
 * pass for run seeds 1-4 with mean max cosine 0.97, explained variance 0.94.
 */
#include "unit.h"
#include "helpers.h"
#include "run.h"
#include "synthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define RD 32
#define RFEAT 64
#define RROWS 60000
#define RACTIVE 3.0

/* Mean over true features of the best |cosine| with any decoder row (rows unit-norm). */
static double
mean_max_cosine(const float *dict, const float *w_dec, int m, double *worst)
{
	double		total = 0;

	*worst = 1;
	for (int f = 0; f < RFEAT; f++)
	{
		double		best = -1;

		for (int i = 0; i < m; i++)
		{
			double		dot = 0,
						nn = 0;

			for (int j = 0; j < RD; j++)
			{
				dot += (double) dict[f * RD + j] * w_dec[(size_t) i * RD + j];
				nn += (double) w_dec[(size_t) i * RD + j] * w_dec[(size_t) i * RD + j];
			}
			best = fmax(best, dot / fmax(sqrt(nn), 1e-12));
		}
		total += best;
		*worst = fmin(*worst, best);
	}
	return total / RFEAT;
}

/* Train with sae_run on the synthetic rows; report and check recovery and explained variance. */
UNIT_TEST(dictionary_recovery)
{
	float	   *dict = malloc(sizeof(float) * RFEAT * RD);
	float	   *rows = malloc(sizeof(float) * (size_t) RROWS * RD);
	float	   *w_dec = NULL;
	MemSource	ms = {.d = RD};
	SaeSource	src;
	SaeRunCallbacks cb = {0};
	SaeConfig	c;
	SaeBackend *be = test_backend();
	SaeRun	   *run = NULL;
	SaeError	err;
	const SaeRunResult *res;
	double		cos_mean,
				cos_worst;
	int			m;

	REQUIRE(dict && rows);
	sae_synthetic_dictionary(RD, RFEAT, 5, dict);
	for (int64_t r = 0; r < RROWS; r++)
		sae_synthetic_row(dict, RD, RFEAT, RACTIVE, 5, r, rows + (size_t) r * RD);
	ms.rows = rows;
	ms.n = RROWS;
	src = mem_source(&ms);

	cfg_base(&c);
	cfg_num(&c, "d_in", RD);
	cfg_num(&c, "expansion_factor", 8);
	cfg_num(&c, "l1_coefficient", 5e-3);
	cfg_num(&c, "lr", 5e-3);
	cfg_num(&c, "lr_warm_up_steps", 100);
	cfg_num(&c, "train_batch_size", 512);
	cfg_num(&c, "total_training_tokens", 1e6);
	cfg_num(&c, "context_size", 1);
	cfg_num(&c, "store_batch_size", 4096);
	cfg_num(&c, "n_batches_in_buffer", 4);
	cfg_num(&c, "adam_beta1", 0);
	cfg_num(&c, "seed", 1);
	REQUIRE(cfg_finish(&c));
	m = (int) c.d_sae;

	if (sae_run_create(&c, be, &src, &cb, &run, &err) != SAE_OK || sae_run_execute(run, &err) != SAE_OK)
		unit_fail(__FILE__, __LINE__, "run failed: %s", err.message);
	else
	{
		res = sae_run_result(run);
		w_dec = malloc(sizeof(float) * (size_t) m * RD);
		sae_trainer_get_params(sae_run_trainer(run), NULL, NULL, w_dec, NULL);
		cos_mean = mean_max_cosine(dict, w_dec, m, &cos_worst);
		unit_note("steps %lld, %.1f s; mean max cosine %.4f (worst feature %.4f); explained variance %.4f; L0 %.2f; mse %.3g; dead %lld",
				  (long long) res->steps, res->seconds, cos_mean, cos_worst, res->last.explained_variance,
				  res->last.l0, res->last.mse_loss, (long long) res->dead_features);
		CHECK_MSG(cos_mean >= 0.9, "mean max cosine %.4f < 0.9", cos_mean);
		CHECK_MSG(res->last.explained_variance >= 0.85, "explained variance %.4f < 0.85",
				  res->last.explained_variance);
		/* a sparse code: under 15% of the 256 features per row (the data has ~3 true ones) */
		CHECK_MSG(res->last.l0 < 0.15 * m, "L0 %.2f: the code is not sparse", res->last.l0);
	}
	sae_run_destroy(run);
	be->destroy(be);
	free(w_dec);
	free(dict);
	free(rows);
}
