/*
 * eval.c — SAELens's evaluation of an SAE spliced into a language model
 * (see eval.h).  Contexts run one at a time, so only one context's logits
 * (T x d_vocab) are held at once.
 */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sums over tokens, turned into means at the end. */
typedef struct EvalSums
{
	double		ce[3];			/* clean, sae, zero: summed next-token losses */
	double		kl[2];			/* sae, zero */
	int64_t		ce_positions;
	int64_t		kl_positions;
	double		norm_in,
				norm_out,
				ratio,
				l0,
				sse;
	double	   *x_sum,			/* per dimension, for SST */
			   *x_sq_sum;
	int64_t		tokens;
} EvalSums;

/* What the edit callback needs: the mode, the SAE, scratch and the sums. */
typedef struct EditState
{
	const SaeEvalSpec *spec;
	EvalSums   *sums;
	bool		zero;			/* zero ablation instead of the SAE */
	float	   *x,
			   *f,
			   *xhat,
			   *full;			/* host scratch: rows x d_in, rows x d_sae, rows x d_in, rows x width */
} EditState;

/* log-softmax of each of rows rows of V logits, in place. */
static void
log_softmax_rows(float *x, int rows, int V)
{
	for (int r = 0; r < rows; r++)
	{
		float	   *row = x + (size_t) r * V;
		float		max = row[0];
		double		sum = 0,
					lse;

		for (int v = 1; v < V; v++)
			max = row[v] > max ? row[v] : max;
		for (int v = 0; v < V; v++)
			sum += exp((double) row[v] - max);
		lse = max + log(sum);
		for (int v = 0; v < V; v++)
			row[v] = (float) (row[v] - lse);
	}
}

/* Per-token reconstruction sums of x against x_hat with features f. */
static void
add_reconstruction(EvalSums *s, const float *x, const float *xhat, const float *f,
				   int rows, int d, int m)
{
	for (int r = 0; r < rows; r++)
	{
		const float *xr = x + (size_t) r * d,
				   *hr = xhat + (size_t) r * d;
		double		in = 0,
					out = 0,
					sse = 0;
		int64_t		l0 = 0;

		for (int j = 0; j < d; j++)
		{
			in += (double) xr[j] * xr[j];
			out += (double) hr[j] * hr[j];
			sse += ((double) xr[j] - hr[j]) * ((double) xr[j] - hr[j]);
			s->x_sum[j] += xr[j];
			s->x_sq_sum[j] += (double) xr[j] * xr[j];
		}
		for (int i = 0; i < m; i++)
			l0 += f[(size_t) r * m + i] > 0;
		s->norm_in += sqrt(in);
		s->norm_out += sqrt(out);
		s->ratio += sqrt(out) / (sqrt(in) < 1e-4 ? 1.0 : sqrt(in));
		s->l0 += l0;
		s->sse += sse;
	}
	s->tokens += rows;
}

/*
 * The splice: the SAE's reconstruction (or zeros) replaces the activation,
 * or with a head index only that head's columns.
 */
static int
splice(void *arg, float *act, int64_t row0, int rows, int width, SaeError *err)
{
	EditState  *e = arg;
	const SaeEvalSpec *spec = e->spec;
	SaeBackend *be = sae_lm_backend(spec->lm);
	int			d = spec->d_in;
	int			off = spec->head_index >= 0 ? spec->head_index * d : 0;
	int			rc;

	if (spec->head_index < 0 && width != d)
		return sae_error(err, SAE_ERR_INTERNAL, "hook width %d is not d_in %d", width, d);
	be->to_host(be, e->full, act, sizeof(float) * rows * width);
	for (int r = 0; r < rows; r++)
		memcpy(e->x + (size_t) r * d, e->full + (size_t) r * width + off, sizeof(float) * d);
	if (e->zero)
		memset(e->xhat, 0, sizeof(float) * rows * d);
	else
	{
		if ((rc = sae_weights_apply(spec->sae, e->x, rows, e->f, e->xhat, err)) != SAE_OK)
			return rc;
		add_reconstruction(e->sums, e->x, e->xhat, e->f, rows, d, spec->d_sae);
	}
	for (int r = 0; r < rows; r++)
		memcpy(e->full + (size_t) r * width + off, e->xhat + (size_t) r * d, sizeof(float) * d);
	be->to_device(be, act, e->full, sizeof(float) * rows * width);
	return SAE_OK;
}

/* CE over positions 0..T-2 and, against clean log-probs, KL over all T positions. */
static void
add_losses(EvalSums *s, int which, const float *lp, const float *clean_lp, const int32_t *tokens,
		   int T, int V)
{
	for (int t = 0; t + 1 < T; t++)
		s->ce[which] -= lp[(size_t) t * V + tokens[t + 1]];
	if (which == 0)
	{
		s->ce_positions += T - 1;
		return;
	}
	for (int t = 0; t < T; t++)
	{
		double		kl = 0;

		for (int v = 0; v < V; v++)
		{
			double		pc = clean_lp[(size_t) t * V + v];

			kl += exp(pc) * (pc - lp[(size_t) t * V + v]);
		}
		s->kl[which - 1] += kl;
	}
	if (which == 1)
		s->kl_positions += T;
}

/* The three passes over one context. */
static int
eval_context(const SaeEvalSpec *spec, EditState *e, const int32_t *tokens, int T,
			 float *clean_lp, float *lp, SaeError *err)
{
	int			V = sae_lm_config(spec->lm)->d_vocab;
	int			rc;

	for (int which = 0; which < 3; which++)
	{
		SaeLmRequest req = {.tokens = tokens, .B = 1, .T = T, .logits = which == 0 ? clean_lp : lp,
		.should_stop = spec->should_stop, .stop_arg = spec->stop_arg};

		if (which > 0)
		{
			req.edit_on = true;
			req.edit_hook = spec->hook;
			req.edit = splice;
			req.edit_arg = e;
			e->zero = which == 2;
		}
		if ((rc = sae_lm_forward(spec->lm, &req, err)) != SAE_OK)
			return rc;
		log_softmax_rows(which == 0 ? clean_lp : lp, T, V);
		add_losses(e->sums, which, which == 0 ? clean_lp : lp, clean_lp, tokens, T, V);
	}
	return SAE_OK;
}

/* Sums to the result's means and scores. */
static void
finish(const EvalSums *s, int d, SaeEvalResult *out)
{
	double		sst = 0;
	double		n = (double) s->tokens;

	memset(out, 0, sizeof(*out));
	out->tokens = s->tokens;
	out->ce_loss_without_sae = s->ce[0] / s->ce_positions;
	out->ce_loss_with_sae = s->ce[1] / s->ce_positions;
	out->ce_loss_with_ablation = s->ce[2] / s->ce_positions;
	out->ce_loss_score = (out->ce_loss_with_ablation - out->ce_loss_with_sae) /
		(out->ce_loss_with_ablation - out->ce_loss_without_sae);
	out->kl_div_with_sae = s->kl[0] / s->kl_positions;
	out->kl_div_with_ablation = s->kl[1] / s->kl_positions;
	out->kl_div_score = (out->kl_div_with_ablation - out->kl_div_with_sae) / out->kl_div_with_ablation;
	out->l2_norm_in = s->norm_in / n;
	out->l2_norm_out = s->norm_out / n;
	out->l2_ratio = s->ratio / n;
	out->l0 = s->l0 / n;
	out->mse = s->sse / (n * d);
	for (int j = 0; j < d; j++)
		sst += s->x_sq_sum[j] - s->x_sum[j] * s->x_sum[j] / n;
	out->explained_variance = sst > 0 ? 1 - s->sse / sst : 0;
}

int
sae_eval(const SaeEvalSpec *spec, const int32_t *tokens, int n, int T, SaeEvalResult *out,
		 SaeError *err)
{
	const SaeLmConfig *c = sae_lm_config(spec->lm);
	size_t		V = c->d_vocab;
	int			width = spec->head_index >= 0 ? c->d_model : spec->d_in;
	EvalSums	sums;
	EditState	e;
	float	   *clean_lp = malloc(sizeof(float) * T * V);
	float	   *lp = malloc(sizeof(float) * T * V);
	int			rc = SAE_OK;

	memset(&sums, 0, sizeof(sums));
	memset(&e, 0, sizeof(e));
	e.spec = spec;
	e.sums = &sums;
	sums.x_sum = calloc(spec->d_in, sizeof(double));
	sums.x_sq_sum = calloc(spec->d_in, sizeof(double));
	e.x = malloc(sizeof(float) * T * spec->d_in);
	e.f = malloc(sizeof(float) * T * spec->d_sae);
	e.xhat = malloc(sizeof(float) * T * spec->d_in);
	e.full = malloc(sizeof(float) * T * width);
	if (!clean_lp || !lp || !sums.x_sum || !sums.x_sq_sum || !e.x || !e.f || !e.xhat || !e.full)
		rc = sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory evaluating the SAE");
	if (n < 1 || T < 2)
		rc = sae_error(err, SAE_ERR_NO_DATA, "no contexts of at least 2 tokens to evaluate on");
	for (int i = 0; i < n && rc == SAE_OK; i++)
		rc = eval_context(spec, &e, tokens + (size_t) i * T, T, clean_lp, lp, err);
	if (rc == SAE_OK)
		finish(&sums, spec->d_in, out);
	free(clean_lp);
	free(lp);
	free(sums.x_sum);
	free(sums.x_sq_sum);
	free(e.x);
	free(e.f);
	free(e.xhat);
	free(e.full);
	return rc;
}
