/*
 * test_geomedian.c — sae_geometric_median (Weiszfeld, SAELens's b_dec init):
 * against torch's result on the golden point set, and against brute-force
 * search of the objective around it.
 */
#include "unit.h"
#include "helpers.h"
#include "rng.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define GN 200
#define GDIM 8

/* sum_t ||x_t - mu|| in double */
static double
objective(const float *x, int n, int d, const double *mu)
{
	double		total = 0;

	for (int t = 0; t < n; t++)
	{
		double		ss = 0;

		for (int j = 0; j < d; j++)
			ss += (x[t * d + j] - mu[j]) * (x[t * d + j] - mu[j]);
		total += sqrt(ss);
	}
	return total;
}

/* Read "key value" from a meta.txt, as a double (NaN if absent). */
static double
meta_number(const char *path, const char *key)
{
	FILE	   *fp = fopen(path, "r");
	char		k[128];
	double		v,
				found = NAN;

	if (fp == NULL)
		return NAN;
	while (fscanf(fp, "%127s %lf", k, &v) == 2)
		if (strcmp(k, key) == 0)
			found = v;
	fclose(fp);
	return found;
}

/* The engine's median of n x d host points (copied to the backend first). */
static bool
engine_median(const float *pts, int n, int d, float *median, double *obj)
{
	SaeBackend *be = test_backend();
	float	   *x = be->alloc(be, sizeof(float) * n * d);
	SaeError	err;
	int			rc;

	be->to_device(be, x, pts, sizeof(float) * n * d);
	rc = sae_geometric_median(be, x, n, d, 100, median, obj, &err);
	be->free(be, x);
	be->destroy(be);
	CHECK_MSG(rc == SAE_OK, "sae_geometric_median: %d %s", rc, err.message);
	return rc == SAE_OK;
}

/* torch's Weiszfeld (100 iterations, and the ftol-stopped variant) on 200 points with outliers. */
UNIT_TEST(matches_torch)
{
	char		p1[512],
				p2[512],
				p3[512],
				p4[512];
	float	   *pts = read_f32(fixture_path("geomedian/points.f32", p1, sizeof(p1)), GN * GDIM);
	float	   *full = read_f32(fixture_path("geomedian/median_full.f32", p2, sizeof(p2)), GDIM);
	float	   *early = read_f32(fixture_path("geomedian/median.f32", p3, sizeof(p3)), GDIM);
	double		obj_full = meta_number(fixture_path("geomedian/meta.txt", p4, sizeof(p4)), "objective_full");
	float		med[GDIM];
	double		obj = 0;

	if (pts && full && early && !isnan(obj_full) && engine_median(pts, GN, GDIM, med, &obj))
	{
		double		d_full = max_abs_diff_f(med, full, GDIM),
					d_early = max_abs_diff_f(med, early, GDIM);

		unit_note("max |engine - torch 100 iters| %.3g, |engine - torch ftol stop| %.3g, objective %.6f vs %.6f",
				  d_full, d_early, obj, obj_full);
		CHECK_MSG(d_full <= 1e-4, "median differs from torch's by %.3g", d_full);
		CHECK_MSG(d_early <= 1e-4, "median differs from torch's ftol-stopped one by %.3g", d_early);
		CHECK_REL(obj, obj_full, 1e-5, 0);
	}
	else
		CHECK_MSG(false, "fixture files missing or unreadable (see notes)");
	free(pts);
	free(full);
	free(early);
}

/* No candidate near the median (grid along each axis, random directions) has a smaller objective. */
UNIT_TEST(brute_force_optimum)
{
	char		path[512];
	float	   *pts = read_f32(fixture_path("geomedian/points.f32", path, sizeof(path)), GN * GDIM);
	float		med[GDIM];
	double		mu[GDIM],
				mean[GDIM] = {0},
				best,
				obj;
	int			better = 0;

	REQUIRE(pts != NULL);
	REQUIRE(engine_median(pts, GN, GDIM, med, &obj));
	for (int j = 0; j < GDIM; j++)
		mu[j] = med[j];
	best = objective(pts, GN, GDIM, mu);
	/* a grid along each axis: +-1e-3 .. +-1 */
	for (int axis = 0; axis < GDIM; axis++)
		for (int k = -4; k <= 4; k++)
		{
			double		cand[GDIM];

			memcpy(cand, mu, sizeof(cand));
			if (k == 0)
				continue;
			cand[axis] += (k > 0 ? 1 : -1) * 1e-3 * pow(10, abs(k) - 1);
			better += objective(pts, GN, GDIM, cand) < best;
		}
	/* random directions at the same radii */
	for (int c = 0; c < 4000; c++)
	{
		double		cand[GDIM],
					radius = 1e-3 * pow(10, c % 4);

		for (int j = 0; j < GDIM; j++)
			cand[j] = mu[j] + radius * sae_normal(11, 1, (uint64_t) c * GDIM + j) / sqrt(GDIM);
		better += objective(pts, GN, GDIM, cand) < best;
	}
	CHECK_INT_EQ(better, 0);
	/* the outliers pull the mean far away: the median must be much better */
	for (int t = 0; t < GN; t++)
		for (int j = 0; j < GDIM; j++)
			mean[j] += pts[t * GDIM + j] / (double) GN;
	CHECK_MSG(objective(pts, GN, GDIM, mean) > best * 1.05,
			  "mean objective %.4f is not clearly worse than the median's %.4f",
			  objective(pts, GN, GDIM, mean), best);
	free(pts);
}

/* Three points with a 120-degree-free triangle: the Fermat point, known in closed form. */
UNIT_TEST(fermat_point_of_triangle)
{
	/* equilateral-free triangle (0,0), (4,0), (0,3): Fermat point found by Weiszfeld */
	const float pts[] = {0, 0, 4, 0, 0, 3, 0, 0, 4, 0, 0, 3};	/* each point twice */
	float		med[2];
	double		obj,
				mu[2],
				best;
	int			better = 0;

	REQUIRE(engine_median(pts, 6, 2, med, &obj));
	mu[0] = med[0];
	mu[1] = med[1];
	best = objective(pts, 6, 2, mu);
	/* at the Fermat point the unit vectors to the three vertices sum to zero */
	{
		double		sx = 0,
					sy = 0;

		for (int t = 0; t < 3; t++)
		{
			double		dx = pts[2 * t] - mu[0],
						dy = pts[2 * t + 1] - mu[1],
						r = sqrt(dx * dx + dy * dy);

			sx += dx / r;
			sy += dy / r;
		}
		CHECK_MSG(sqrt(sx * sx + sy * sy) < 1e-3, "sum of unit vectors %.3g, %.3g at (%g, %g)",
				  sx, sy, mu[0], mu[1]);
	}
	for (int c = 0; c < 400; c++)
	{
		double		cand[2] = {mu[0] + 1e-3 * cos(c * 0.0157), mu[1] + 1e-3 * sin(c * 0.0157)};

		better += objective(pts, 6, 2, cand) < best;
	}
	CHECK_INT_EQ(better, 0);
}

/*
 * The median is a pure function of the points: with four threads, repeated
 * calls give bit-identical results.  KNOWN ENGINE BUG if this fails:
 * cpu_weiszfeld_step combines per-thread partial sums (critical section and
 * reduction clause) in arrival order, and the double sums of 1/dist weights
 * are not exact, so b_dec (and the whole run) varies between runs.
 */
UNIT_TEST(deterministic_four_threads)
{
	enum
	{
		N = 1000, D = 16, REPS = 30
	};
	float	   *pts = malloc(sizeof(float) * N * D);
	float		first[D],
				again[D];
	double		obj;
	int			differ = 0;
	SaeBackend *be = sae_backend_cpu_create(4);
	SaeBackend *one;
	SaeError	err;

	for (int k = 0; k < N * D; k++)
		pts[k] = sae_normal(1, 1, k) * 100 + (k % 7);
	REQUIRE(sae_geometric_median(be, pts, N, D, 100, first, &obj, &err) == SAE_OK);
	for (int r = 0; r < REPS; r++)
	{
		REQUIRE(sae_geometric_median(be, pts, N, D, 100, again, &obj, &err) == SAE_OK);
		differ += memcmp(first, again, sizeof(first)) != 0;
	}
	be->destroy(be);
	one = test_backend();		/* back to the suite's thread count */
	one->destroy(one);
	free(pts);
	CHECK_MSG(differ == 0, "%d of %d repeated 4-thread medians differ from the first", differ, REPS);
}
