/*
 * lm_process.c — TransformerLens's weight processing (reference/models.md
 * §5.1), for users who want the activations of HookedTransformer's
 * from_pretrained defaults rather than of the unprocessed model.
 *
 * The steps run in TransformerLens's order (fold_ln, center_writing_weights,
 * center_unembed, fold_value_biases) on host copies of the weights in one
 * layout, W as [in, out], and the results replace the model's pointers.
 * The checkpoint's mapping is never written.
 */
#include "lm_internal.h"

#include <stdlib.h>
#include <string.h>

/* Weights being processed: host arrays, and the model they go back into. */
typedef struct Proc
{
	SaeLm	   *lm;
	SaeError   *err;
	float	  **host;			/* every host array made, freed at the end */
	size_t		n_host;
	size_t		cap_host;
} Proc;

/* A zeroed host array that the end of processing frees. */
static float *
proc_alloc(Proc *p, size_t n)
{
	float	   *a;

	if (p->n_host == p->cap_host)
	{
		size_t		cap = p->cap_host ? 2 * p->cap_host : 64;
		float	  **grown = realloc(p->host, cap * sizeof(float *));

		if (grown == NULL)
			return NULL;
		p->host = grown;
		p->cap_host = cap;
	}
	a = calloc(n ? n : 1, sizeof(float));
	if (a)
		p->host[p->n_host++] = a;
	return a;
}

/* A host copy of n floats of backend memory (n = 0 or src NULL: zeros). */
static float *
host_copy(Proc *p, const float *src, size_t n)
{
	float	   *a = proc_alloc(p, n);

	if (a && src)
		p->lm->be->to_host(p->lm->be, a, src, n * sizeof(float));
	return a;
}

/* A stored matrix (any ld, maybe transposed) as a host [in, out] array. */
static float *
host_linear(Proc *p, LmLinear lin, int in, int out)
{
	size_t		span = lin.trans ? (size_t) (out - 1) * lin.ld + in : (size_t) (in - 1) * lin.ld + out;
	float	   *stored = malloc(span * sizeof(float));
	float	   *a = proc_alloc(p, (size_t) in * out);

	if (stored == NULL || a == NULL)
	{
		free(stored);
		return NULL;
	}
	p->lm->be->to_host(p->lm->be, stored, lin.w, span * sizeof(float));
	for (int i = 0; i < in; i++)
		for (int o = 0; o < out; o++)
			a[(size_t) i * out + o] = lin.trans ? stored[(size_t) o * lin.ld + i] : stored[(size_t) i * lin.ld + o];
	free(stored);
	return a;
}

/*
 * Fold a LayerNorm's w and b into the matrix that reads it (W [in, out],
 * bias [out]) and centre the matrix's columns over the input dimension:
 * b += b_ln W; W *= w_ln (per input row); W -= mean over rows.
 */
static void
fold_ln_into(float *W, float *bias, const float *ln_w, const float *ln_b, int in, int out)
{
	for (int o = 0; o < out; o++)
	{
		double		acc = 0,
					mean = 0;

		for (int i = 0; i < in; i++)
			acc += (double) ln_b[i] * W[(size_t) i * out + o];
		bias[o] += (float) acc;
		for (int i = 0; i < in; i++)
		{
			W[(size_t) i * out + o] *= ln_w[i];
			mean += W[(size_t) i * out + o];
		}
		mean /= in;
		for (int i = 0; i < in; i++)
			W[(size_t) i * out + o] -= (float) mean;
	}
}

/* Subtract each row's mean (rows x cols): a writing weight centred over d_model. */
static void
center_rows(float *a, size_t rows, int cols)
{
	for (size_t r = 0; r < rows; r++)
	{
		float	   *row = a + r * cols;
		double		mean = 0;

		for (int c = 0; c < cols; c++)
			mean += row[c];
		mean /= cols;
		for (int c = 0; c < cols; c++)
			row[c] -= (float) mean;
	}
}

/* The model's weights in one host layout, to be processed. */
typedef struct HostLayer
{
	float	   *ln1_w,
			   *ln1_b,
			   *q,
			   *k,
			   *v,
			   *b_q,
			   *b_k,
			   *b_v,
			   *o,
			   *b_o,
			   *ln2_w,
			   *ln2_b,
			   *in,
			   *b_in,
			   *out,
			   *b_out;
} HostLayer;

typedef struct HostModel
{
	float	   *wte,
			   *wpe,
			   *lnf_w,
			   *lnf_b,
			   *w_u,			/* [C, V] */
			   *b_u;
	HostLayer  *layers;
} HostModel;

static bool
copy_layer(Proc *p, const LmLayer *L, HostLayer *h)
{
	const SaeLmConfig *c = &p->lm->cfg;
	int			C = c->d_model,
				F = c->d_mlp;

	h->ln1_w = host_copy(p, L->ln1_w, C);
	h->ln1_b = host_copy(p, L->ln1_b, C);
	h->q = host_linear(p, L->q, C, C);
	h->k = host_linear(p, L->k, C, C);
	h->v = host_linear(p, L->v, C, C);
	h->b_q = host_copy(p, L->b_q, C);
	h->b_k = host_copy(p, L->b_k, C);
	h->b_v = host_copy(p, L->b_v, C);
	h->o = host_linear(p, L->o, C, C);
	h->b_o = host_copy(p, L->b_o, C);
	h->ln2_w = host_copy(p, L->ln2_w, C);
	h->ln2_b = host_copy(p, L->ln2_b, C);
	h->in = host_linear(p, L->fc_in, C, F);
	h->b_in = host_copy(p, L->b_in, F);
	h->out = host_linear(p, L->fc_out, F, C);
	h->b_out = host_copy(p, L->b_out, C);
	return h->ln1_w && h->ln1_b && h->q && h->k && h->v && h->b_q && h->b_k && h->b_v &&
		h->o && h->b_o && h->ln2_w && h->ln2_b && h->in && h->b_in && h->out && h->b_out;
}

static bool
copy_model(Proc *p, HostModel *h)
{
	SaeLm	   *lm = p->lm;
	const SaeLmConfig *c = &lm->cfg;

	h->layers = calloc(c->n_layers, sizeof(HostLayer));
	h->wte = host_copy(p, lm->wte, (size_t) c->d_vocab * c->d_model);
	h->wpe = host_copy(p, lm->wpe, (size_t) c->n_positions * c->d_model);
	h->lnf_w = host_copy(p, lm->lnf_w, c->d_model);
	h->lnf_b = host_copy(p, lm->lnf_b, c->d_model);
	h->w_u = host_linear(p, lm->unembed, c->d_model, c->d_vocab);
	h->b_u = host_copy(p, lm->b_u, c->d_vocab);
	if (!h->layers || !h->wte || !h->wpe || !h->lnf_w || !h->lnf_b || !h->w_u || !h->b_u)
		return false;
	for (int l = 0; l < c->n_layers; l++)
		if (!copy_layer(p, &lm->layers[l], &h->layers[l]))
			return false;
	return true;
}

/* The four steps, in TransformerLens's order (load_and_process_state_dict). */
static void
process_host(const SaeLmConfig *c, const SaeLmOptions *opt, HostModel *h)
{
	int			C = c->d_model,
				F = c->d_mlp,
				V = c->d_vocab;

	for (int l = 0; l < c->n_layers; l++)
	{
		HostLayer  *L = &h->layers[l];

		if (opt->fold_ln)
		{
			fold_ln_into(L->q, L->b_q, L->ln1_w, L->ln1_b, C, C);
			fold_ln_into(L->k, L->b_k, L->ln1_w, L->ln1_b, C, C);
			fold_ln_into(L->v, L->b_v, L->ln1_w, L->ln1_b, C, C);
			fold_ln_into(L->in, L->b_in, L->ln2_w, L->ln2_b, C, F);
		}
		if (opt->center_writing_weights)
		{
			center_rows(L->o, C, C);
			center_rows(L->b_o, 1, C);
			center_rows(L->out, F, C);
			center_rows(L->b_out, 1, C);
		}
		if (opt->fold_value_biases)
		{
			for (int j = 0; j < C; j++)
				for (int m = 0; m < C; m++)
					L->b_o[m] += L->b_v[j] * L->o[(size_t) j * C + m];
			memset(L->b_v, 0, sizeof(float) * C);
		}
	}
	if (opt->fold_ln)
		fold_ln_into(h->w_u, h->b_u, h->lnf_w, h->lnf_b, C, V);
	if (opt->center_writing_weights)
	{
		center_rows(h->wte, V, C);
		center_rows(h->wpe, c->n_positions, C);
	}
	if (opt->center_unembed)
	{
		center_rows(h->w_u, C, V);
		center_rows(h->b_u, 1, V);
	}
}

/* A processed host array as a backend buffer the model owns. */
static const float *
place(Proc *p, const float *host, size_t n)
{
	float	   *dev = lm_alloc_floats(p->lm, n);

	if (dev)
		p->lm->be->to_device(p->lm->be, dev, host, n * sizeof(float));
	return dev;
}

static LmLinear
place_linear(Proc *p, const float *host, int in, int out, bool *ok)
{
	LmLinear	lin = {place(p, host, (size_t) in * out), out, false};

	*ok = *ok && lin.w != NULL;
	return lin;
}

/* Point the model at the processed weights (LayerNorm w and b gone after fold_ln). */
static bool
place_model(Proc *p, const SaeLmOptions *opt, const HostModel *h)
{
	SaeLm	   *lm = p->lm;
	const SaeLmConfig *c = &lm->cfg;
	int			C = c->d_model,
				F = c->d_mlp,
				V = c->d_vocab;
	bool		ok = true;

	for (int l = 0; l < c->n_layers; l++)
	{
		LmLayer    *L = &lm->layers[l];
		const HostLayer *H = &h->layers[l];

		L->ln1_w = opt->fold_ln ? NULL : place(p, H->ln1_w, C);
		L->ln1_b = opt->fold_ln ? NULL : place(p, H->ln1_b, C);
		L->ln2_w = opt->fold_ln ? NULL : place(p, H->ln2_w, C);
		L->ln2_b = opt->fold_ln ? NULL : place(p, H->ln2_b, C);
		L->q = place_linear(p, H->q, C, C, &ok);
		L->k = place_linear(p, H->k, C, C, &ok);
		L->v = place_linear(p, H->v, C, C, &ok);
		L->o = place_linear(p, H->o, C, C, &ok);
		L->fc_in = place_linear(p, H->in, C, F, &ok);
		L->fc_out = place_linear(p, H->out, F, C, &ok);
		L->b_q = place(p, H->b_q, C);
		L->b_k = place(p, H->b_k, C);
		L->b_v = place(p, H->b_v, C);
		L->b_o = place(p, H->b_o, C);
		L->b_in = place(p, H->b_in, F);
		L->b_out = place(p, H->b_out, C);
		ok = ok && L->b_q && L->b_k && L->b_v && L->b_o && L->b_in && L->b_out &&
			(opt->fold_ln || (L->ln1_w && L->ln1_b && L->ln2_w && L->ln2_b));
	}
	lm->wte = place(p, h->wte, (size_t) V * C);
	lm->wpe = place(p, h->wpe, (size_t) c->n_positions * C);
	lm->lnf_w = opt->fold_ln ? NULL : place(p, h->lnf_w, C);
	lm->lnf_b = opt->fold_ln ? NULL : place(p, h->lnf_b, C);
	lm->unembed = place_linear(p, h->w_u, C, V, &ok);
	lm->b_u = place(p, h->b_u, V);
	return ok && lm->wte && lm->wpe && lm->b_u && (opt->fold_ln || (lm->lnf_w && lm->lnf_b));
}

int
sae_lm_process(SaeLm *lm, const SaeLmOptions *opt, SaeError *err)
{
	Proc		p = {lm, err, NULL, 0, 0};
	HostModel	h = {0};
	bool		ok;

	if (!opt->fold_ln && !opt->center_writing_weights && !opt->center_unembed &&
		!opt->fold_value_biases)
		return SAE_OK;
	ok = copy_model(&p, &h);
	if (ok)
	{
		process_host(&lm->cfg, opt, &h);
		ok = place_model(&p, opt, &h);
	}
	for (size_t i = 0; i < p.n_host; i++)
		free(p.host[i]);
	free(p.host);
	free(h.layers);
	if (!ok)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory processing the model's weights");
	return SAE_OK;
}
