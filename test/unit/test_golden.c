/*
 * test_golden.c — whole training trajectories against a PyTorch reference.
 *
 * Each test/fixtures/golden/<case>/ holds a config (meta.txt, SAELens key
 * names), the batches (x.f32), initial and final parameters, and per-step
 * metrics (losses.f32: mse, l1 without lambda, ghost, overall, l0, lr),
 * written by test/golden/make_golden.py from torch autograd + torch.optim.
 * The engine runs the same steps from the same initial parameters; per-step
 * metrics and final parameters must agree to ~1e-4.
 */
#include "unit.h"
#include "helpers.h"
#include "rng.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_META 64

typedef struct Meta
{
	int			n;
	char		key[MAX_META][64];
	char		val[MAX_META][128];
} Meta;

typedef struct Golden
{
	const char *name;
	Meta		meta;
	int			d,
				m,
				batch,
				steps;
	float	   *x,
			   *init[4],
			   *final[4],
			   *losses,
			   *noise;
	int			dead[256];
} Golden;

static const char *const tensor_names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};

/* meta.txt: one "key value" pair per line. */
static bool
read_meta(const char *path, Meta *meta)
{
	FILE	   *fp = fopen(path, "r");

	meta->n = 0;
	if (fp == NULL)
		return false;
	while (meta->n < MAX_META &&
		   fscanf(fp, "%63s %127s", meta->key[meta->n], meta->val[meta->n]) == 2)
		meta->n++;
	fclose(fp);
	return meta->n > 0;
}

/* The value of key, or NULL. */
static const char *
meta_get(const Meta *meta, const char *key)
{
	for (int i = 0; i < meta->n; i++)
		if (strcmp(meta->key[i], key) == 0)
			return meta->val[i];
	return NULL;
}

/* The value of key as an integer, -1 if absent. */
static int
meta_int(const Meta *meta, const char *key)
{
	const char *v = meta_get(meta, key);

	return v ? atoi(v) : -1;
}

/* Elements of tensor k for this case's shapes. */
static size_t
tensor_size(const Golden *g, int k)
{
	size_t		sizes[4] = {(size_t) g->d * g->m, (size_t) g->m, (size_t) g->m * g->d, (size_t) g->d};

	return sizes[k];
}

/* <case>/<file> as exactly n floats. */
static float *
read_case_file(const Golden *g, const char *file, size_t n)
{
	char		rel[256],
				path[512];

	snprintf(rel, sizeof(rel), "%s/%s", g->name, file);
	return read_f32(fixture_path(rel, path, sizeof(path)), n);
}

/* Load every file of the case; false (with notes) if something is missing. */
static bool
load_golden(Golden *g)
{
	char		rel[256],
				path[512],
				file[64];
	FILE	   *fp;
	bool		ok = true;

	snprintf(rel, sizeof(rel), "%s/meta.txt", g->name);
	if (!read_meta(fixture_path(rel, path, sizeof(path)), &g->meta))
		return false;
	g->d = meta_int(&g->meta, "d_in");
	g->m = meta_int(&g->meta, "d_sae");
	g->batch = meta_int(&g->meta, "batch");
	g->steps = meta_int(&g->meta, "n_steps");
	if (g->d <= 0 || g->m <= 0 || g->batch <= 0 || g->steps <= 0 || g->steps > 256)
		return false;
	g->x = read_case_file(g, "x.f32", (size_t) g->steps * g->batch * g->d);
	g->losses = read_case_file(g, "losses.f32", (size_t) g->steps * 6);
	ok = g->x && g->losses;
	for (int k = 0; k < 4; k++)
	{
		snprintf(file, sizeof(file), "init_%s.f32", tensor_names[k]);
		ok &= (g->init[k] = read_case_file(g, file, tensor_size(g, k))) != NULL;
		snprintf(file, sizeof(file), "final_%s.f32", tensor_names[k]);
		ok &= (g->final[k] = read_case_file(g, file, tensor_size(g, k))) != NULL;
	}
	if (atof(meta_get(&g->meta, "noise_scale") ? meta_get(&g->meta, "noise_scale") : "0") > 0)
		ok &= (g->noise = read_case_file(g, "noise_eps.f32", (size_t) g->steps * g->batch * g->m)) != NULL;
	snprintf(rel, sizeof(rel), "%s/dead_features.txt", g->name);
	fp = fopen(fixture_path(rel, path, sizeof(path)), "r");
	for (int k = 0; k < g->steps; k++)
		if (fp == NULL || fscanf(fp, "%d", &g->dead[k]) != 1)
			ok = false;
	if (fp)
		fclose(fp);
	return ok;
}

/* Free what load_golden read (any of it may be NULL). */
static void
free_golden(Golden *g)
{
	free(g->x);
	free(g->losses);
	free(g->noise);
	for (int k = 0; k < 4; k++)
	{
		free(g->init[k]);
		free(g->final[k]);
	}
}

/* One meta.txt line as sae_config_set: "none" is null, 0/1 flags are booleans. */
static bool
set_meta_key(SaeConfig *c, const char *key, const char *val)
{
	static const char *const skip[] = {"case", "batch", "n_steps", "total_steps", NULL};
	static const char *const bools[] = {"apply_b_dec_to_input", "use_ghost_grads", NULL};
	char	   *end;
	double		num;

	for (int i = 0; skip[i]; i++)
		if (strcmp(key, skip[i]) == 0)
			return true;
	for (int i = 0; bools[i]; i++)
		if (strcmp(key, bools[i]) == 0)
			return cfg_bool(c, key, atoi(val) != 0);
	if (strcmp(val, "none") == 0)
		return cfg_null(c, key);
	num = strtod(val, &end);
	if (*end == '\0')
		return cfg_num(c, key, num);
	return cfg_str(c, key, val);
}

/* The engine config: the case's keys, plus batch and token counts giving n_steps steps. */
static bool
golden_config(const Golden *g, SaeConfig *c)
{
	bool		ok = true;

	cfg_base(c);
	for (int i = 0; i < g->meta.n; i++)
		ok &= set_meta_key(c, g->meta.key[i], g->meta.val[i]);
	ok &= cfg_num(c, "train_batch_size", g->batch);
	ok &= cfg_num(c, "total_training_tokens", (double) g->steps * g->batch);
	ok &= cfg_finish(c);
	if (ok)
		CHECK_INT_EQ(sae_config_total_steps(c), meta_int(&g->meta, "total_steps"));
	return ok;
}

/* The noise draws torch used are the engine's sae_normal, bit for bit. */
static void
check_noise(const Golden *g, int64_t seed)
{
	int64_t		mismatches = 0;

	for (int k = 0; k < g->steps; k++)
		for (int i = 0; i < g->batch * g->m; i++)
		{
			float		want = g->noise[((size_t) k * g->batch * g->m) + i];
			float		got = sae_normal((uint64_t) seed, SAE_STREAM_NOISE + (uint64_t) k, (uint64_t) i);

			if (memcmp(&want, &got, sizeof(float)) != 0 && mismatches++ < 3)
				unit_fail(__FILE__, __LINE__, "%s noise step %d index %d: engine %.9g, fixture %.9g",
						  g->name, k, i, got, want);
		}
	CHECK_INT_EQ(mismatches, 0);
}

/* Compare one step's metrics; updates the worst relative errors seen. */
static void
check_step(const Golden *g, int k, const SaeStepStats *st, double *worst)
{
	static const char *const names[6] = {"mse_loss", "l1_loss", "ghost_grad_loss", "overall_loss", "l0", "lr"};
	const float *want = g->losses + (size_t) k * 6;
	double		got[6] = {st->mse_loss, st->l1_loss, st->ghost_grad_loss, st->overall_loss, st->l0, st->lr};

	for (int q = 0; q < 6; q++)
	{
		/* relative, with an absolute floor of 1e-3 for values near zero (ghost before any death) */
		double		err = fabs(got[q] - want[q]) / fmax(fabs(want[q]), 1e-3);

		worst[q] = fmax(worst[q], err);
		if (err > 1e-4)
			unit_fail(__FILE__, __LINE__, "%s step %d %s: engine %.9g, torch %.9g (rel err %.2e)",
					  g->name, k, names[q], got[q], (double) want[q], err);
	}
	if (st->dead_features != g->dead[k])
		unit_fail(__FILE__, __LINE__, "%s step %d dead_features: engine %lld, torch %d",
				  g->name, k, (long long) st->dead_features, g->dead[k]);
}

/*
 * Train the case on the engine and compare every step and the final
 * parameters.  sparse_density < 0 leaves the engine's own choice of path;
 * otherwise it is pinned with sae_trainer_set_sparse_density.
 */
static void
run_golden(const char *name, double sparse_density)
{
	Golden		g = {.name = name};
	SaeConfig	c;
	SaeBackend *be = test_backend();
	SaeTrainer *t = NULL;
	SaeError	err;
	float	   *xd = NULL,
			   *out[4] = {NULL};
	double		worst[6] = {0};
	int			sparse_steps = 0;

	if (!load_golden(&g) || !golden_config(&g, &c) ||
		sae_trainer_create(&c, be, g.batch, &t, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "%s: could not load the fixture or create the trainer", name);
		goto done;
	}
	if (g.noise)
		check_noise(&g, c.seed);
	if (sparse_density >= 0 && sae_trainer_set_sparse_density(t, sparse_density, &err) != SAE_OK)
		unit_fail(__FILE__, __LINE__, "sae_trainer_set_sparse_density: %s", err.message);
	xd = be->alloc(be, sizeof(float) * g.batch * g.d);
	sae_trainer_set_params(t, g.init[0], g.init[1], g.init[2], g.init[3]);
	for (int k = 0; k < g.steps; k++)
	{
		SaeStepStats st;

		be->to_device(be, xd, g.x + (size_t) k * g.batch * g.d, sizeof(float) * g.batch * g.d);
		sae_trainer_step(t, xd, g.batch, &st);
		check_step(&g, k, &st, worst);
		sparse_steps += st.sparse_path;
	}
	unit_note("%s max rel err per step: mse %.1e l1 %.1e ghost %.1e overall %.1e l0 %.1e lr %.1e (%d sparse-path steps)",
			  name, worst[0], worst[1], worst[2], worst[3], worst[4], worst[5], sparse_steps);
	for (int k = 0; k < 4; k++)
		out[k] = malloc(sizeof(float) * tensor_size(&g, k));
	sae_trainer_get_params(t, out[0], out[1], out[2], out[3]);
	for (int k = 0; k < 4; k++)
	{
		double		rel = rel_err_norm_f(out[k], g.final[k], tensor_size(&g, k));

		unit_note("%s final %-5s rel err %.2e (max abs %.2e)", name, tensor_names[k], rel,
				  max_abs_diff_f(out[k], g.final[k], tensor_size(&g, k)));
		CHECK_MSG(rel <= 1e-4, "%s final %s differs from torch: rel err %.3e", name, tensor_names[k], rel);
		/* the run must have moved the parameter, or the comparison proves little */
		CHECK_MSG(rel_err_norm_f(g.init[k], g.final[k], tensor_size(&g, k)) > 1e-3,
				  "%s %s barely changed in the fixture", name, tensor_names[k]);
		free(out[k]);
	}
done:
	if (t)
		sae_trainer_destroy(t);
	if (xd)
		be->free(be, xd);
	be->destroy(be);
	free_golden(&g);
}

/* unit_norm_sae, relu, L1, constant lr with warm-up, beta1 0: the v1.0 default recipe. */
UNIT_TEST(relu_basic)
{
	run_golden("relu_basic", -1);
}

/* dense_batch MSE, ghost grads from step 4 on (half the features start dead), beta1 0.9, no b_dec on input. */
UNIT_TEST(relu_dense_ghost)
{
	run_golden("relu_dense_ghost", -1);
}

/* tanh_sae with noise 0.5, lp_norm 2, l2_squared, cosine schedule with warm-up and decay. */
UNIT_TEST(tanh_noise)
{
	run_golden("tanh_noise", -1);
}

/* The same three trajectories with the sparse path forced on every step (density limit 1). */
UNIT_TEST(relu_basic_sparse_path)
{
	run_golden("relu_basic", 1.0);
}

/* Ghost steps fall back to dense; the others take the sparse ops. */
UNIT_TEST(relu_dense_ghost_sparse_path)
{
	run_golden("relu_dense_ghost", 1.0);
}

/* tanh' and the noise through the sparse ops. */
UNIT_TEST(tanh_noise_sparse_path)
{
	run_golden("tanh_noise", 1.0);
}
