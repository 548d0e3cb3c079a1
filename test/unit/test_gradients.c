/*
 * test_gradients.c — the engine's hand-written backward pass against
 * central finite differences of an independent float64 forward pass.
 *
 * The reference below is written from reference/saelens.md §2.2–2.3, §1.5
 * and §8, not from trainer.c: x_c = x - a b_dec, h = x_c W_enc + b_enc,
 * f = relu(h + noise) or tanh(relu(h + noise)), x_hat = f W_dec + b_dec,
 * MSE = mean over B*d of (x_hat - x)^2 w_b (w_b = 1/(||x_b - mean x|| + 1e-6)
 * with dense_batch), L1 = lambda mean_b ||f_b||_p (times ||x_b||^2 with
 * l2_squared), plus the ghost-grad loss with its detached factors frozen at
 * the base point.  One sae_trainer_step on a CPU trainer gives the engine's
 * gradients (sae_trainer_get_grads); for unit_norm_sae the engine's W_dec
 * gradient is projected, so the FD gradient is projected the same way.
 */
#include "unit.h"
#include "helpers.h"
#include "rng.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define GB 8					/* batch rows */
#define GD 6					/* d_in */
#define GM 10					/* d_sae */
#define NPAR (2 * GD * GM + GM + GD)
#define OFF_BENC (GD * GM)
#define OFF_WDEC (OFF_BENC + GM)
#define OFF_BDEC (OFF_WDEC + GM * GD)
#define FD_STEP 1e-6
#define MARGIN 1e-3				/* no pre-activation closer than this to the ReLU kink */

typedef struct Case
{
	const char *name;
	bool		tanh_sae;
	double		noise_scale;
	bool		dense;
	double		lp;
	bool		l2sq;
	bool		apply_b_dec;
	double		lambda;
	int			n_dead;			/* features 0..n_dead-1 made dead; ghost grads on if > 0 */
	bool		sparse;			/* few features fire: the engine's sparse path must run */
} Case;

/* The float64 model at one parameter point, plus the frozen ghost factors. */
typedef struct Ref
{
	const Case *cs;
	double		x[GB * GD];
	double		eps[GB * GM];	/* N(0,1) noise draws of this step */
	double		w[GB];			/* MSE row weights */
	bool		dead[GM];
	bool		frozen;			/* ghost factors below are valid */
	double		gc[GB];			/* c_b */
	double		gr[GB * GD];	/* r = x - x_hat */
	double		gR[GB * GD];	/* R = E / (E^g + 1e-6) */
} Ref;

/* Forward of one parameter point: fills h, f, x_hat (B x m, B x m, B x d). */
static void
ref_forward(const Ref *r, const double *p, double *h, double *f, double *xhat)
{
	const Case *cs = r->cs;
	double		a = cs->apply_b_dec ? 1 : 0;

	for (int b = 0; b < GB; b++)
	{
		for (int i = 0; i < GM; i++)
		{
			double		z = p[OFF_BENC + i];

			for (int j = 0; j < GD; j++)
				z += (r->x[b * GD + j] - a * p[OFF_BDEC + j]) * p[j * GM + i];
			h[b * GM + i] = z;
			z += cs->noise_scale * r->eps[b * GM + i];
			f[b * GM + i] = cs->tanh_sae ? tanh(fmax(z, 0)) : fmax(z, 0);
		}
		for (int j = 0; j < GD; j++)
		{
			double		s = p[OFF_BDEC + j];

			for (int i = 0; i < GM; i++)
				s += f[b * GM + i] * p[OFF_WDEC + i * GD + j];
			xhat[b * GD + j] = s;
		}
	}
}

/* ||f_b||_p (times ||x_b||^2 with l2_squared), averaged over the batch. */
static double
ref_sparsity(const Ref *r, const double *f)
{
	double		total = 0;

	for (int b = 0; b < GB; b++)
	{
		double		s = 0,
					xx = 0;

		for (int i = 0; i < GM; i++)
			s += pow(fabs(f[b * GM + i]), r->cs->lp);
		for (int j = 0; j < GD; j++)
			xx += r->x[b * GD + j] * r->x[b * GD + j];
		total += pow(s, 1.0 / r->cs->lp) * (r->cs->l2sq ? xx : 1.0);
	}
	return total / GB;
}

/* y_b = sum over dead i of exp(h_bi) W_dec[i, :] */
static void
ghost_y(const Ref *r, const double *p, const double *h, int b, double *y)
{
	for (int j = 0; j < GD; j++)
	{
		y[j] = 0;
		for (int i = 0; i < GM; i++)
			if (r->dead[i])
				y[j] += exp(h[b * GM + i]) * p[OFF_WDEC + i * GD + j];
	}
}

/* The ghost loss mean(R * E^g) with c, r, R held at their frozen values. */
static double
ref_ghost(const Ref *r, const double *p, const double *h)
{
	double		total = 0;

	for (int b = 0; b < GB; b++)
	{
		double		y[GD];

		ghost_y(r, p, h, b, y);
		for (int j = 0; j < GD; j++)
		{
			double		diff = r->gc[b] * y[j] - r->gr[b * GD + j];

			total += r->gR[b * GD + j] * diff * diff * r->w[b];
		}
	}
	return total / (GB * GD);
}

/* Total loss at p; the pieces go to *mse, *s, *ghost when asked. */
static double
ref_loss(const Ref *r, const double *p, double *mse_out, double *s_out, double *ghost_out)
{
	double		h[GB * GM],
				f[GB * GM],
				xhat[GB * GD];
	double		mse = 0,
				s,
				ghost = 0;

	ref_forward(r, p, h, f, xhat);
	for (int b = 0; b < GB; b++)
		for (int j = 0; j < GD; j++)
		{
			double		e = xhat[b * GD + j] - r->x[b * GD + j];

			mse += e * e * r->w[b];
		}
	mse /= GB * GD;
	s = ref_sparsity(r, f);
	if (r->frozen)
		ghost = ref_ghost(r, p, h);
	if (mse_out)
		*mse_out = mse;
	if (s_out)
		*s_out = s;
	if (ghost_out)
		*ghost_out = ghost;
	return mse + r->cs->lambda * s + ghost;
}

/* Compute the detached ghost factors c_b, r, R at the base point p (saelens.md §1.5). */
static void
ref_freeze(Ref *r, const double *p)
{
	double		h[GB * GM],
				f[GB * GM],
				xhat[GB * GD];

	ref_forward(r, p, h, f, xhat);
	for (int b = 0; b < GB; b++)
	{
		double		y[GD],
					rr = 0,
					yy = 0;

		ghost_y(r, p, h, b, y);
		for (int j = 0; j < GD; j++)
		{
			r->gr[b * GD + j] = r->x[b * GD + j] - xhat[b * GD + j];
			rr += r->gr[b * GD + j] * r->gr[b * GD + j];
			yy += y[j] * y[j];
		}
		r->gc[b] = sqrt(rr) / (1e-6 + 2 * sqrt(yy));
		for (int j = 0; j < GD; j++)
		{
			double		res = r->gr[b * GD + j];
			double		diff = r->gc[b] * y[j] - res;
			double		e = res * res * r->w[b];
			double		eg = diff * diff * r->w[b];

			r->gR[b * GD + j] = e / (eg + 1e-6);
		}
	}
	r->frozen = true;
}

/* Row weights of the MSE: 1, or 1/(||x_b - mean x|| + 1e-6) with dense_batch. */
static void
ref_row_weights(Ref *r)
{
	double		mean[GD] = {0};

	for (int b = 0; b < GB; b++)
		for (int j = 0; j < GD; j++)
			mean[j] += r->x[b * GD + j] / GB;
	for (int b = 0; b < GB; b++)
	{
		double		ss = 0;

		for (int j = 0; j < GD; j++)
			ss += (r->x[b * GD + j] - mean[j]) * (r->x[b * GD + j] - mean[j]);
		r->w[b] = r->cs->dense ? 1.0 / (sqrt(ss) + 1e-6) : 1.0;
	}
}

/* Central differences of ref_loss for every parameter. */
static void
fd_gradient(const Ref *r, const double *p0, double *g)
{
	double		p[NPAR];

	memcpy(p, p0, sizeof(p));
	for (int k = 0; k < NPAR; k++)
	{
		double		lp,
					lm;

		p[k] = p0[k] + FD_STEP;
		lp = ref_loss(r, p, NULL, NULL, NULL);
		p[k] = p0[k] - FD_STEP;
		lm = ref_loss(r, p, NULL, NULL, NULL);
		p[k] = p0[k];
		g[k] = (lp - lm) / (2 * FD_STEP);
	}
}

/* g_i -= <g_i, w_i> w_i for each decoder row (the unit_norm_sae projection). */
static void
project_decoder(double *g, const double *p)
{
	for (int i = 0; i < GM; i++)
	{
		double		dot = 0;

		for (int j = 0; j < GD; j++)
			dot += g[OFF_WDEC + i * GD + j] * p[OFF_WDEC + i * GD + j];
		for (int j = 0; j < GD; j++)
			g[OFF_WDEC + i * GD + j] -= dot * p[OFF_WDEC + i * GD + j];
	}
}

/* Deterministic data and parameters from `seed`; dead features get b_enc = -4. */
static void
make_point(const Case *cs, uint64_t seed, float *x, float *p)
{
	for (int k = 0; k < GB * GD; k++)
		x[k] = 0.8f * sae_normal(seed, 100, k) + 0.3f * (float) (k % GD) - 0.6f;
	for (int k = 0; k < GD * GM; k++)
		p[k] = (float) (1.2 * sae_uniform(seed, 101, k) - 0.6);
	for (int i = 0; i < GM; i++)
		p[OFF_BENC + i] = i < cs->n_dead ? -4.0f
			: (float) (0.4 * sae_uniform(seed, 102, i) - (cs->sparse && cs->n_dead == 0 ? 1.2 : 0.2));
	for (int i = 0; i < GM; i++)
	{
		double		ss = 0,
					scale = cs->tanh_sae ? 0.5 + sae_uniform(seed, 104, i) : 1.0;

		for (int j = 0; j < GD; j++)
		{
			p[OFF_WDEC + i * GD + j] = sae_normal(seed, 103, i * GD + j);
			ss += (double) p[OFF_WDEC + i * GD + j] * p[OFF_WDEC + i * GD + j];
		}
		for (int j = 0; j < GD; j++)
			p[OFF_WDEC + i * GD + j] = (float) (p[OFF_WDEC + i * GD + j] * scale / sqrt(ss));
	}
	for (int j = 0; j < GD; j++)
		p[OFF_BDEC + j] = (float) (0.6 * sae_uniform(seed, 105, j) - 0.3);
}

/*
 * Smallest |pre-activation incl. noise| over the batch.  Returns 0 (unusable)
 * if the firing pattern is not the one the case asks for: with dead
 * features, exactly features >= n_dead fire; on the sparse path 1..4 of the
 * 80 entries are active (the engine's threshold is 5%).
 */
static double
kink_margin(const Ref *r, const double *p)
{
	double		h[GB * GM],
				f[GB * GM],
				xhat[GB * GD],
				margin = INFINITY;

	bool		fired[GM] = {false};
	int			active = 0;

	ref_forward(r, p, h, f, xhat);
	for (int b = 0; b < GB; b++)
	{

		for (int i = 0; i < GM; i++)
		{
			double		z = h[b * GM + i] + r->cs->noise_scale * r->eps[b * GM + i];

			margin = fmin(margin, fabs(z));
			active += z > 0;
			fired[i] |= z > 0;
		}
	}
	for (int i = 0; i < GM && r->cs->n_dead > 0; i++)
		if (fired[i] != (i >= r->cs->n_dead))
			margin = 0;
	if (r->cs->n_dead == 0 && (r->cs->sparse ? (active < 1 || active > 4) : active <= 4))
		margin = 0;
	return margin;
}

/* The engine config of a case: d 6, m 10, batch 8, constant lr, no warm-up. */
static bool
case_config(const Case *cs, SaeConfig *c)
{
	cfg_base(c);
	cfg_num(c, "d_in", GD);
	cfg_num(c, "d_sae", GM);
	cfg_num(c, "train_batch_size", GB);
	cfg_num(c, "total_training_tokens", GB * 100);
	cfg_num(c, "lr_warm_up_steps", 0);
	cfg_num(c, "lr", 1e-6);
	cfg_num(c, "l1_coefficient", cs->lambda);
	cfg_num(c, "lp_norm", cs->lp);
	cfg_str(c, "sae_type", cs->tanh_sae ? "tanh_sae" : "unit_norm_sae");
	cfg_num(c, "noise_scale", cs->noise_scale);
	if (cs->dense)
		cfg_str(c, "mse_loss_normalization", "dense_batch");
	if (cs->l2sq)
		cfg_str(c, "l1_loss_normalization", "l2_squared");
	cfg_bool(c, "apply_b_dec_to_input", cs->apply_b_dec);
	cfg_bool(c, "use_ghost_grads", cs->n_dead > 0);
	cfg_num(c, "dead_feature_window", 1);
	cfg_num(c, "seed", 1234);
	return cfg_finish(c);
}

/* Run `warm` steps, then one measured step on the chosen path; returns the base params and engine grads. */
static bool
engine_step(const SaeConfig *c, const float *x, float *p, int warm, bool sparse, float *g,
			SaeStepStats *st)
{
	SaeBackend *be = test_backend();
	SaeTrainer *t = NULL;
	SaeError	err;
	float	   *xd = be->alloc(be, sizeof(float) * GB * GD);

	if (sae_trainer_create(c, be, GB, &t, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "sae_trainer_create: %s", err.message);
		be->free(be, xd);
		be->destroy(be);
		return false;
	}
	/* pin the path: density limit 1 always takes the sparse ops, 0 never does */
	if (sae_trainer_set_sparse_density(t, sparse ? 1.0 : 0.0, &err) != SAE_OK)
		unit_fail(__FILE__, __LINE__, "sae_trainer_set_sparse_density: %s", err.message);
	be->to_device(be, xd, x, sizeof(float) * GB * GD);
	sae_trainer_set_params(t, p, p + OFF_BENC, p + OFF_WDEC, p + OFF_BDEC);
	for (int k = 0; k < warm; k++)
		sae_trainer_step(t, xd, GB, st);
	/* the base point is what the measured step sees: params after warm-up, rows renormalised */
	sae_trainer_get_params(t, p, p + OFF_BENC, p + OFF_WDEC, p + OFF_BDEC);
	if (c->sae_type == SAE_TYPE_UNIT_NORM)
		be->normalize_rows(be, p + OFF_WDEC, GM, GD);
	sae_trainer_set_params(t, p, p + OFF_BENC, p + OFF_WDEC, p + OFF_BDEC);
	sae_trainer_step(t, xd, GB, st);
	sae_trainer_get_grads(t, g, g + OFF_BENC, g + OFF_WDEC, g + OFF_BDEC);
	sae_trainer_destroy(t);
	be->free(be, xd);
	be->destroy(be);
	return true;
}

/* Fill the reference's inputs (x, noise of step `step`, weights, dead set). */
static void
ref_init(Ref *r, const Case *cs, const float *x, int64_t step)
{
	memset(r, 0, sizeof(*r));
	r->cs = cs;
	for (int k = 0; k < GB * GD; k++)
		r->x[k] = x[k];
	for (int b = 0; b < GB; b++)
		for (int i = 0; i < GM; i++)
			r->eps[b * GM + i] = cs->noise_scale > 0
				? sae_normal(1234, SAE_STREAM_NOISE + (uint64_t) step, (uint64_t) b * GM + i) : 0;
	for (int i = 0; i < GM; i++)
		r->dead[i] = i < cs->n_dead;
	ref_row_weights(r);
}

/* Compare one parameter block: relative error of the gradient vector. */
static void
compare_block(const char *cs, const char *what, const float *ge, const double *gf, int n)
{
	double		ged[NPAR],
				err,
				norm = 0;

	for (int k = 0; k < n; k++)
	{
		ged[k] = ge[k];
		norm += gf[k] * gf[k];
	}
	err = rel_err_norm_d(ged, gf, n);
	unit_note("%-14s %-6s |g_fd| %.4e  rel err %.2e", cs, what, sqrt(norm), err);
	CHECK_MSG(sqrt(norm) > 1e-5, "%s %s: FD gradient is ~0 (%.3g), the comparison would be vacuous",
			  cs, what, sqrt(norm));
	CHECK_MSG(err <= 1e-3, "%s %s: engine gradient differs from finite differences, rel err %.3e",
			  cs, what, err);
}

/* The whole comparison for one case. */
static void
check_case(const Case *cs)
{
	SaeConfig	c;
	float		x[GB * GD],
				p[NPAR],
				g[NPAR];
	double		pd[NPAR],
				gfd[NPAR],
				mse,
				s,
				ghost;
	SaeStepStats st;
	Ref			r;
	uint64_t	seed;
	int			warm = cs->n_dead > 0 ? 2 : 0;

	REQUIRE(case_config(cs, &c));
	/* pick the first data seed whose pre-activations stay clear of the kink */
	for (seed = 1; seed < 1000; seed++)
	{
		make_point(cs, seed, x, p);
		ref_init(&r, cs, x, warm);
		for (int k = 0; k < NPAR; k++)
			pd[k] = p[k];
		if (kink_margin(&r, pd) > MARGIN * 10)
			break;
	}
	REQUIRE(seed < 1000);
	REQUIRE(engine_step(&c, x, p, warm, cs->sparse, g, &st));
	for (int k = 0; k < NPAR; k++)
		pd[k] = p[k];
	CHECK_MSG(kink_margin(&r, pd) > MARGIN, "%s: warm-up moved a pre-activation onto the kink", cs->name);
	CHECK_INT_EQ(st.dead_features, cs->n_dead);
	/* ghost grads need the dense weight gradient: the engine leaves the sparse path then */
	CHECK_MSG(st.sparse_path == (cs->sparse && cs->n_dead == 0),
			  "%s: engine took the %s path", cs->name, st.sparse_path ? "sparse" : "dense");
	if (cs->n_dead > 0)
		ref_freeze(&r, pd);
	ref_loss(&r, pd, &mse, &s, &ghost);
	/* the forward pass agrees before the gradients are compared */
	CHECK_REL(st.mse_loss, mse, 1e-5, 1e-6);
	CHECK_REL(st.l1_loss, s, 1e-5, 1e-6);
	CHECK_REL(st.ghost_grad_loss, ghost, 1e-4, 1e-6);
	fd_gradient(&r, pd, gfd);
	if (!cs->tanh_sae)
		project_decoder(gfd, pd);
	compare_block(cs->name, "W_enc", g, gfd, GD * GM);
	compare_block(cs->name, "b_enc", g + OFF_BENC, gfd + OFF_BENC, GM);
	compare_block(cs->name, "W_dec", g + OFF_WDEC, gfd + OFF_WDEC, GM * GD);
	compare_block(cs->name, "b_dec", g + OFF_BDEC, gfd + OFF_BDEC, GD);
}

/* relu + L1 (p = 1), plain MSE: the classic SAELens v1.0 step. */
UNIT_TEST(relu_l1)
{
	Case		cs = {"relu_l1", false, 0, false, 1, false, true, 0.05, 0, false};

	check_case(&cs);
}

/* dense_batch: every row's squared error weighted by 1/(||x_b - mean x|| + 1e-6). */
UNIT_TEST(relu_dense_batch)
{
	Case		cs = {"dense_batch", false, 0, true, 1, false, true, 0.05, 0, false};

	check_case(&cs);
}

/* lp_norm 2: the penalty's gradient is f / ||f||_2, coupling a row's features. */
UNIT_TEST(relu_lp2)
{
	Case		cs = {"lp2", false, 0, false, 2, false, true, 0.1, 0, false};

	check_case(&cs);
}

/* A fractional p (1.5) goes through the general pow() path. */
UNIT_TEST(relu_lp1_5)
{
	Case		cs = {"lp1.5", false, 0, false, 1.5, false, true, 0.1, 0, false};

	check_case(&cs);
}

/* tanh_sae with noise and l2_squared: tanh', the step-0 noise stream, ||x_b||^2 scaling. */
UNIT_TEST(tanh_noise_l2_squared)
{
	Case		cs = {"tanh_noise_l2", true, 0.3, false, 1, true, true, 0.02, 0, false};

	check_case(&cs);
}

/* apply_b_dec_to_input false: b_dec gets gradient only through the decoder output. */
UNIT_TEST(no_b_dec_on_input)
{
	Case		cs = {"no_b_dec_in", false, 0, false, 1, false, false, 0.05, 0, false};

	check_case(&cs);
}

/* Ghost grads for two dead features (after two warm-up steps), detached factors frozen. */
UNIT_TEST(ghost_grads)
{
	Case		cs = {"ghost", false, 0, false, 1, false, true, 0.05, 2, false};

	check_case(&cs);
}

/* Ghost grads without b_dec on the input: the ghost term then reaches b_dec not at all. */
UNIT_TEST(ghost_grads_no_b_dec_on_input)
{
	Case		cs = {"ghost_no_bdec", false, 0, false, 1, false, false, 0.05, 2, false};

	check_case(&cs);
}

/*
 * The sparse path (CSR decode, sparse backprop, sparse weight gradients),
 * pinned with sae_trainer_set_sparse_density(1.0), on data where only 1-4 of
 * the 80 entries of f are active, as in a trained SAE.
 */
UNIT_TEST(sparse_relu_l1)
{
	Case		cs = {"sparse_l1", false, 0, false, 1, false, true, 0.05, 0, true};

	check_case(&cs);
}

/* Sparse path with dense_batch and lp_norm 2. */
UNIT_TEST(sparse_dense_batch_lp2)
{
	Case		cs = {"sparse_db_lp2", false, 0, true, 2, false, true, 0.1, 0, true};

	check_case(&cs);
}

/* Sparse path with tanh_sae, noise and l2_squared. */
UNIT_TEST(sparse_tanh_noise_l2_squared)
{
	Case		cs = {"sparse_tanh", true, 0.3, false, 1, true, true, 0.02, 0, true};

	check_case(&cs);
}

/* Sparse path without b_dec on the input. */
UNIT_TEST(sparse_no_b_dec_on_input)
{
	Case		cs = {"sparse_no_bdec", false, 0, false, 1, false, false, 0.05, 0, true};

	check_case(&cs);
}

/* Ghost grads with the sparse path allowed: the step must fall back to dense and stay right. */
UNIT_TEST(sparse_allowed_with_ghost)
{
	Case		cs = {"sparse_ghost", false, 0, false, 1, false, true, 0.05, 2, true};

	check_case(&cs);
}
