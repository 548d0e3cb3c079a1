/*
 * test_schedule.c — sae_lr_at against PyTorch's SequentialLR (golden file
 * written by test/golden/make_golden.py from the real torch schedulers) and
 * against the closed forms of reference/saelens.md §1.4.
 */
#include "unit.h"
#include "helpers.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define PI 3.14159265358979323846

/* A config with just the schedule fields set (sae_lr_at reads nothing else). */
static SaeConfig
schedule_config(const char *sched, double lr, int64_t warm, int64_t decay,
				double lr_end, int64_t cycles)
{
	SaeConfig	c;

	sae_config_defaults(&c);
	c.lr = lr;
	c.lr_warm_up_steps = warm;
	c.lr_decay_steps = decay;
	c.lr_end = lr_end;
	c.n_restart_cycles = cycles;
	if (strcmp(sched, "cosineannealing") == 0)
		c.lr_scheduler_name = SAE_LR_COSINE;
	else if (strcmp(sched, "cosineannealingwarmrestarts") == 0)
		c.lr_scheduler_name = SAE_LR_COSINE_RESTARTS;
	else
		c.lr_scheduler_name = SAE_LR_CONSTANT;
	return c;
}

/* Compare one golden block (T values) with sae_lr_at; returns the worst relative error. */
static double
compare_block(FILE *fp, const char *name, const SaeConfig *c, int64_t T, int *bad)
{
	double		worst = 0;
	char		line[256];

	for (int64_t k = 0; k < T; k++)
	{
		double		want,
					got,
					rel;

		if (fgets(line, sizeof(line), fp) == NULL)
		{
			unit_fail(__FILE__, __LINE__, "%s: file ends at step %lld of %lld", name, (long long) k, (long long) T);
			(*bad)++;
			return worst;
		}
		want = strtod(line, NULL);
		got = sae_lr_at(c, T, k);
		rel = fabs(got - want) / fmax(fabs(want), 1e-12);
		worst = fmax(worst, rel);
		/* torch's chainable cosine recursion drifts ~1e-15; 1e-9 is far below any real bug */
		if (!(fabs(got - want) <= 1e-9 * fabs(want) + 1e-15) && (*bad)++ < 10)
			unit_fail(__FILE__, __LINE__, "%s step %lld: sae_lr_at %.17g, torch %.17g",
					  name, (long long) k, got, want);
	}
	return worst;
}

/* Every step of every torch schedule in the golden file matches sae_lr_at. */
UNIT_TEST(golden_torch_sequentiallr)
{
	char		path[512],
				line[256];
	FILE	   *fp = fopen(fixture_path("lr_schedules.txt", path, sizeof(path)), "r");
	int			blocks = 0,
				bad = 0;

	REQUIRE(fp != NULL);
	while (fgets(line, sizeof(line), fp) != NULL)
	{
		char		name[64],
					sched[64];
		long long	T,
					W,
					D,
					nc;
		double		lr,
					lr_end,
					worst;
		SaeConfig	c;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%63s %lld %lf %lld %lld %lf %lld %63s", name, &T, &lr, &W, &D,
				   &lr_end, &nc, sched) != 8)
		{
			unit_fail(__FILE__, __LINE__, "bad header line: %s", line);
			break;
		}
		c = schedule_config(sched, lr, W, D, lr_end, nc);
		worst = compare_block(fp, name, &c, T, &bad);
		unit_note("%-32s T=%lld %-28s max rel err %.2e", name, T, sched, worst);
		blocks++;
	}
	fclose(fp);
	CHECK_MSG(blocks >= 11, "only %d schedule blocks in %s", blocks, path);
	CHECK_INT_EQ(bad, 0);
}

/* Linear warm-up: lr/W at step 0, lr at step W-1, linear in between. */
UNIT_TEST(warmup_closed_form)
{
	SaeConfig	c = schedule_config("constant", 1e-3, 10, 0, 1e-4, 1);

	CHECK_REL(sae_lr_at(&c, 100, 0), 1e-3 / 10, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 9), 1e-3, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 4), 1e-3 * (0.1 + 0.9 * 4.0 / 9.0), 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 10), 1e-3, 1e-12, 0);
	/* W = 1: LinearLR with total_iters 0 is the full lr at once */
	c = schedule_config("constant", 1e-3, 1, 0, 1e-4, 1);
	CHECK_REL(sae_lr_at(&c, 100, 0), 1e-3, 1e-12, 0);
	/* W = 0: no warm-up at all */
	c = schedule_config("constant", 1e-3, 0, 0, 1e-4, 1);
	for (int k = 0; k < 100; k += 7)
		CHECK_REL(sae_lr_at(&c, 100, k), 1e-3, 1e-15, 0);
}

/* Cosine: lr at the main phase's start, the midpoint at (lr+lr_end)/2, decays from lr_end to 0. */
UNIT_TEST(cosine_closed_form)
{
	int64_t		T = 130,
				W = 10,
				D = 20,
				Tm = T - W - D;
	double		lr = 2e-3,
				end = 2e-4;
	SaeConfig	c = schedule_config("cosineannealing", lr, W, D, end, 1);

	CHECK_REL(sae_lr_at(&c, T, W), lr, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, W + Tm / 2), (lr + end) / 2, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, W + 17), end + (lr - end) * (1 + cos(PI * 17 / Tm)) / 2, 1e-12, 0);
	/* the decay phase starts at lr_end (not at the cosine's last value) and reaches 0 at T */
	CHECK_REL(sae_lr_at(&c, T, T - D), end, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, T - D + 5), end * (1 - 5.0 / D), 1e-12, 0);
	CHECK_NEAR(sae_lr_at(&c, T, T), 0, 1e-18);
	/* the loop runs one step past T when tokens are not a multiple of the batch: stays 0 */
	CHECK_NEAR(sae_lr_at(&c, T, T + 1), 0, 1e-18);
}

/* Constant with decay ignores lr_end: the decay starts from lr itself. */
UNIT_TEST(constant_decay_from_lr)
{
	SaeConfig	c = schedule_config("constant", 1e-3, 5, 10, 1e-5, 1);

	CHECK_REL(sae_lr_at(&c, 100, 89), 1e-3, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 90), 1e-3, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 95), 1e-3 * 0.5, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, 100, 99), 1e-3 * 0.1, 1e-12, 0);
}

/* Warm restarts: T_0 = T_main // cycles, back to lr at each restart. */
UNIT_TEST(restarts_closed_form)
{
	int64_t		T = 100,
				T0 = 100 / 3;	/* 33 */
	double		lr = 1e-3,
				end = 1e-4;
	SaeConfig	c = schedule_config("cosineannealingwarmrestarts", lr, 0, 0, end, 3);

	CHECK_REL(sae_lr_at(&c, T, 0), lr, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, T0), lr, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, 2 * T0), lr, 1e-12, 0);
	CHECK_REL(sae_lr_at(&c, T, T0 - 1), end + (lr - end) * (1 + cos(PI * (T0 - 1) / T0)) / 2, 1e-12, 0);
	/* the leftover step T_main - 3*T0 = 1 starts a fourth cycle */
	CHECK_REL(sae_lr_at(&c, T, 99), lr, 1e-12, 0);
}
