/*
 * lm_forward.c — the forward pass of GPT-2 and GPT-Neo with
 * TransformerLens's hook points (reference/models.md §3.3, §3.4, §4.3).
 *
 * One function per step, in the order of the math: embed, then per block
 * LayerNorm, attention, residual, LayerNorm, MLP, residual; then the final
 * LayerNorm and the unembedding.  At each hook point the activation is
 * offered to site(), which copies it to the captures that want it and lets
 * the edit callback replace it.  Attention runs one sequence at a time,
 * head by head as GEMMs over the [T, n_heads * d_head] activations, with
 * scores laid out [query][head][key].
 */
#include "device.h"
#include "lm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hook names: the part after "blocks.L." for block hooks, the whole name otherwise. */
static const struct
{
	const char *name;
	bool		in_block;
} hook_names[SAE_HOOK_COUNT] = {
	[SAE_HOOK_EMBED] = {"hook_embed", false},
	[SAE_HOOK_POS_EMBED] = {"hook_pos_embed", false},
	[SAE_HOOK_RESID_PRE] = {"hook_resid_pre", true},
	[SAE_HOOK_LN1_SCALE] = {"ln1.hook_scale", true},
	[SAE_HOOK_LN1_NORMALIZED] = {"ln1.hook_normalized", true},
	[SAE_HOOK_Q] = {"attn.hook_q", true},
	[SAE_HOOK_K] = {"attn.hook_k", true},
	[SAE_HOOK_V] = {"attn.hook_v", true},
	[SAE_HOOK_ATTN_SCORES] = {"attn.hook_attn_scores", true},
	[SAE_HOOK_PATTERN] = {"attn.hook_pattern", true},
	[SAE_HOOK_Z] = {"attn.hook_z", true},
	[SAE_HOOK_ATTN_OUT] = {"hook_attn_out", true},
	[SAE_HOOK_RESID_MID] = {"hook_resid_mid", true},
	[SAE_HOOK_LN2_SCALE] = {"ln2.hook_scale", true},
	[SAE_HOOK_LN2_NORMALIZED] = {"ln2.hook_normalized", true},
	[SAE_HOOK_MLP_PRE] = {"mlp.hook_pre", true},
	[SAE_HOOK_MLP_POST] = {"mlp.hook_post", true},
	[SAE_HOOK_MLP_OUT] = {"hook_mlp_out", true},
	[SAE_HOOK_RESID_POST] = {"hook_resid_post", true},
	[SAE_HOOK_LNF_SCALE] = {"ln_final.hook_scale", false},
	[SAE_HOOK_LNF_NORMALIZED] = {"ln_final.hook_normalized", false},
	[SAE_HOOK_UNEMBED_IN] = {"unembed.hook_in", false},
};

const char *
sae_hook_name(SaeHook hook, char *buf, size_t size)
{
	if (hook_names[hook.kind].in_block)
		snprintf(buf, size, "blocks.%d.%s", hook.layer, hook_names[hook.kind].name);
	else
		snprintf(buf, size, "%s", hook_names[hook.kind].name);
	return buf;
}

int
sae_hook_parse(const SaeLm *lm, const char *name, SaeHook *hook, SaeError *err)
{
	const char *rest = name;
	long		layer = -1;

	if (strncmp(name, "blocks.", 7) == 0)
	{
		char	   *end;

		layer = strtol(name + 7, &end, 10);
		if (end == name + 7 || *end != '.' || layer < 0)
			goto unknown;
		rest = end + 1;
	}
	for (int k = 0; k < SAE_HOOK_COUNT; k++)
		if (strcmp(rest, hook_names[k].name) == 0 && hook_names[k].in_block == (layer >= 0))
		{
			if (layer >= lm->cfg.n_layers)
			{
				sae_error(err, SAE_ERR_INVALID_PARAMETER, "hook \"%.100s\" is past the model's last block",
						  name);
				return sae_error_hint(err, "The model has %d blocks, numbered 0 to %d.",
									  lm->cfg.n_layers, lm->cfg.n_layers - 1);
			}
			hook->kind = (SaeHookKind) k;
			hook->layer = (int) layer;
			return SAE_OK;
		}
unknown:
	sae_error(err, SAE_ERR_INVALID_PARAMETER, "unknown hook point \"%.100s\"", name);
	return sae_error_hint(err, "Hook points are TransformerLens's: hook_embed, hook_pos_embed, blocks.L.hook_resid_pre, "
						  "blocks.L.hook_attn_out, blocks.L.hook_mlp_out, blocks.L.hook_resid_post, blocks.L.attn.hook_z, "
						  "blocks.L.mlp.hook_post, ln_final.hook_normalized, ...");
}

int
sae_hook_width(const SaeLm *lm, SaeHook hook, int T)
{
	switch (hook.kind)
	{
		case SAE_HOOK_LN1_SCALE:
		case SAE_HOOK_LN2_SCALE:
		case SAE_HOOK_LNF_SCALE:
			return 1;
		case SAE_HOOK_ATTN_SCORES:
		case SAE_HOOK_PATTERN:
			return lm->cfg.n_heads * T;
		case SAE_HOOK_MLP_PRE:
		case SAE_HOOK_MLP_POST:
			return lm->cfg.d_mlp;
		default:
			return lm->cfg.d_model;
	}
}

/* One pass's state. */
typedef struct Fwd
{
	SaeLm	   *lm;
	const SaeLmRequest *req;
	SaeError   *err;
	SaeBackend *be;
	int			rows;			/* B * T */
	int			Tk;				/* keys per query: pos0 + T */
} Fwd;

/* Whether a hook is the one at (kind, layer). */
static bool
hook_is(SaeHook hook, SaeHookKind kind, int layer)
{
	return hook.kind == kind && hook.layer == layer;
}

/*
 * A hook point: rows row0.. of the activation act (width floats each) go to
 * every capture of this hook, after the edit callback, if it is this hook,
 * has had its say.
 */
static int
site(Fwd *f, SaeHookKind kind, int layer, float *act, int64_t row0, int rows, int width)
{
	const SaeLmRequest *r = f->req;

	if (r->edit_on && hook_is(r->edit_hook, kind, layer))
	{
		int			rc = r->edit(r->edit_arg, act, row0, rows, width, f->err);

		if (rc != SAE_OK)
			return rc;
	}
	for (int i = 0; i < r->n_captures; i++)
	{
		const SaeLmCapture *c = &r->captures[i];
		size_t		bytes = sizeof(float) * (size_t) rows * width;

		if (!hook_is(c->hook, kind, layer))
			continue;
		if (c->dst_on_device)
			f->be->copy(f->be, c->dst + row0 * width, act, bytes);
		else
			f->be->to_host(f->be, c->dst + row0 * width, act, bytes);
	}
	return SAE_OK;
}

/* out = in W + bias for rows rows (in_dim -> out_dim). */
static void
linear(Fwd *f, float *out, const float *in, int rows, LmLinear W, const float *bias,
	   int in_dim, int out_dim)
{
	f->be->gemm(f->be, false, W.trans, rows, out_dim, in_dim, 1.0f, in, in_dim, W.w, W.ld,
				0.0f, out, out_dim);
	if (bias)
		f->be->add_row_vector(f->be, out, out, bias, rows, out_dim, 1.0f);
}

/* Grow a buffer of the workspace to n floats (contents not kept). */
static bool
grow(SaeBackend *be, float **buf, size_t n)
{
	if (*buf)
		be->free(be, *buf);
	*buf = be->alloc(be, (n ? n : 1) * sizeof(float));
	return *buf != NULL;
}

/* Make the workspace big enough for this request. */
static int
reserve(Fwd *f)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const SaeLmConfig *c = &lm->cfg;
	size_t		rows = f->rows,
				C = c->d_model;
	size_t		attn = (size_t) f->req->T * c->n_heads * f->Tk;
	size_t		logit_rows = f->req->logits ? (f->req->logits_last_only ? (size_t) f->req->B : rows) : 0;
	bool		ok = true;

	if (rows > ws->rows)
	{
		ok = grow(lm->be, (float **) &ws->tokens, rows) && grow(lm->be, &ws->x, rows * C) &&
			grow(lm->be, &ws->ln, rows * C) && grow(lm->be, &ws->scale, rows) &&
			grow(lm->be, &ws->q, rows * C) && grow(lm->be, &ws->k, rows * C) &&
			grow(lm->be, &ws->v, rows * C) && grow(lm->be, &ws->z, rows * C) &&
			grow(lm->be, &ws->out, rows * C) && grow(lm->be, &ws->mlp, rows * c->d_mlp);
		ws->rows = ok ? rows : 0;
	}
	if (ok && attn > ws->attn_floats)
	{
		ok = grow(lm->be, &ws->scores, attn) && grow(lm->be, &ws->pattern, attn);
		ws->attn_floats = ok ? attn : 0;
	}
	if (ok && logit_rows > ws->logit_rows)
	{
		ok = grow(lm->be, &ws->logits, logit_rows * c->d_vocab);
		ws->logit_rows = ok ? logit_rows : 0;
	}
	if (ok && f->req->use_cache && ws->kv_cache == NULL)
		ok = grow(lm->be, &ws->kv_cache, (size_t) c->n_layers * 2 * c->n_ctx * C);
	if (!ok)
		return sae_error(f->err, SAE_ERR_OUT_OF_MEMORY,
						 "out of memory for a forward pass over %zu tokens", rows);
	return SAE_OK;
}

/* Token ids in range, and sequences that fit the context. */
static int
check_request(Fwd *f)
{
	const SaeLmRequest *r = f->req;
	const SaeLmConfig *c = &f->lm->cfg;

	if (r->B < 1 || r->T < 1 || (r->use_cache && r->B != 1) || r->pos0 < 0 ||
		(r->pos0 > 0 && !r->use_cache))
		return sae_error(f->err, SAE_ERR_INTERNAL, "bad forward request (B %d, T %d, pos0 %d)",
						 r->B, r->T, r->pos0);
	if (r->pos0 + r->T > c->n_ctx)
	{
		sae_error(f->err, SAE_ERR_LIMIT, "a sequence of %d tokens is longer than the model's context of %d",
				  r->pos0 + r->T, c->n_ctx);
		return sae_error_hint(f->err, "Use a shorter input.");
	}
	for (int64_t i = 0; i < (int64_t) r->B * r->T; i++)
		if (r->tokens[i] < 0 || r->tokens[i] >= c->d_vocab)
		{
			sae_error(f->err, SAE_ERR_INVALID_DATA, "token id %d (at position %lld) is not in the vocabulary",
					  (int) r->tokens[i], (long long) (i % r->T));
			return sae_error_hint(f->err, "The model's token ids are 0 to %d.", c->d_vocab - 1);
		}
	return SAE_OK;
}

/* Whether the request needs ln_final: logits, or a capture or edit there. */
static bool
wants_final(const SaeLmRequest *r)
{
	for (int i = 0; i < r->n_captures; i++)
		if (r->captures[i].hook.kind >= SAE_HOOK_LNF_SCALE)
			return true;
	return r->logits != NULL || (r->edit_on && r->edit_hook.kind >= SAE_HOOK_LNF_SCALE);
}

/* How many blocks this request needs: up to the highest hook, or all of them for ln_final. */
static int
blocks_needed(const SaeLm *lm, const SaeLmRequest *r)
{
	int			n = r->edit_on ? r->edit_hook.layer + 1 : 0;

	if (wants_final(r))
		return lm->cfg.n_layers;
	for (int i = 0; i < r->n_captures; i++)
		if (r->captures[i].hook.layer + 1 > n)
			n = r->captures[i].hook.layer + 1;
	return n;
}

/* x = W_E[tokens] + W_pos[positions]: hook_embed, hook_pos_embed, then block 0's hook_resid_pre. */
static int
embed(Fwd *f)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const SaeLmRequest *r = f->req;
	int			C = lm->cfg.d_model;
	int			rc;

	lm->be->to_device(lm->be, ws->tokens, r->tokens, sizeof(int32_t) * f->rows);
	lm->be->gather_rows(lm->be, ws->x, lm->wte, ws->tokens, f->rows, C);
	if ((rc = site(f, SAE_HOOK_EMBED, -1, ws->x, 0, f->rows, C)) != SAE_OK)
		return rc;
	for (int b = 0; b < r->B; b++)
		lm->be->copy(lm->be, ws->out + (size_t) b * r->T * C, lm->wpe + (size_t) r->pos0 * C,
					 sizeof(float) * r->T * C);
	if ((rc = site(f, SAE_HOOK_POS_EMBED, -1, ws->out, 0, f->rows, C)) != SAE_OK)
		return rc;
	lm->be->add(lm->be, ws->x, ws->x, ws->out, (size_t) f->rows * C);
	return SAE_OK;
}

/* A LayerNorm with its two hooks, then its weight and bias (none after fold_ln). */
static int
layernorm(Fwd *f, const float *w, const float *b, SaeHookKind scale_hook,
		  SaeHookKind norm_hook, int layer)
{
	LmWorkspace *ws = &f->lm->ws;
	int			C = f->lm->cfg.d_model;
	int			rc;

	f->be->layernorm(f->be, ws->ln, ws->scale, ws->x, f->rows, C, f->lm->cfg.eps);
	if ((rc = site(f, scale_hook, layer, ws->scale, 0, f->rows, 1)) != SAE_OK ||
		(rc = site(f, norm_hook, layer, ws->ln, 0, f->rows, C)) != SAE_OK)
		return rc;
	if (w)
		f->be->scale_shift(f->be, ws->ln, w, b, f->rows, C);
	return SAE_OK;
}

/* What q.k is divided by in layer l: sqrt(d_head) (GPT-2), 1 (GPT-Neo), times l + 1 if scaled by layer. */
static float
attn_divisor(const SaeLmConfig *c, int layer)
{
	float		divisor = c->scale_attn ? sqrtf((float) c->d_head) : 1.0f;

	return c->scale_by_layer ? divisor * (float) (layer + 1) : divisor;
}

/* GPT-Neo's local window of layer l, or 0 for global attention. */
static int
attn_window(const SaeLmConfig *c, int layer)
{
	return c->local && c->local[layer] ? c->window_size : 0;
}

/* Whether a capture or the edit callback wants this hook. */
static bool
hook_used(const SaeLmRequest *r, SaeHookKind kind, int layer)
{
	if (r->edit_on && hook_is(r->edit_hook, kind, layer))
		return true;
	for (int i = 0; i < r->n_captures; i++)
		if (hook_is(r->captures[i].hook, kind, layer))
			return true;
	return false;
}

/*
 * The keys and values sequence b attends over: its own, or with the KV
 * cache (one sequence) this layer's of every position so far, the new ones
 * appended.
 */
static void
keys_values(Fwd *f, int l, int b, const float **K, const float **V)
{
	LmWorkspace *ws = &f->lm->ws;
	const SaeLmConfig *c = &f->lm->cfg;
	size_t		C = c->d_model,
				T = f->req->T;

	*K = ws->k + b * T * C;
	*V = ws->v + b * T * C;
	if (f->req->use_cache)
	{
		float	   *kc = ws->kv_cache + (size_t) l * 2 * c->n_ctx * C;
		float	   *vc = kc + (size_t) c->n_ctx * C;

		f->be->copy(f->be, kc + (size_t) f->req->pos0 * C, *K, sizeof(float) * T * C);
		f->be->copy(f->be, vc + (size_t) f->req->pos0 * C, *V, sizeof(float) * T * C);
		*K = kc;
		*V = vc;
	}
}

/*
 * Attention of sequence b over keys K, V (Tk rows each) step by step, so
 * that hook_attn_scores and hook_pattern can be captured or edited: scores,
 * mask, softmax, z = pattern V, head by head.
 */
static int
attend_sequence(Fwd *f, int layer, int b, const float *K, const float *V)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const SaeLmConfig *c = &lm->cfg;
	int			T = f->req->T,
				H = c->n_heads,
				D = c->d_head,
				C = c->d_model,
				Tk = f->Tk;
	const float *Q = ws->q + (size_t) b * T * C;
	float	   *Z = ws->z + (size_t) b * T * C;
	int			rc;

	for (int h = 0; h < H; h++)
		f->be->gemm(f->be, false, true, T, Tk, D, 1.0f, Q + h * D, C, K + h * D, C,
					0.0f, ws->scores + (size_t) h * Tk, H * Tk);
	f->be->attn_mask(f->be, ws->scores, T, H, Tk, f->req->pos0, attn_divisor(c, layer),
					 attn_window(c, layer));
	if ((rc = site(f, SAE_HOOK_ATTN_SCORES, layer, ws->scores, (int64_t) b * T, T, H * Tk)) != SAE_OK)
		return rc;
	f->be->softmax_rows(f->be, ws->pattern, ws->scores, T * H, Tk);
	if ((rc = site(f, SAE_HOOK_PATTERN, layer, ws->pattern, (int64_t) b * T, T, H * Tk)) != SAE_OK)
		return rc;
	for (int h = 0; h < H; h++)
		f->be->gemm(f->be, false, false, T, D, Tk, 1.0f, ws->pattern + (size_t) h * Tk, H * Tk,
					V + h * D, C, 0.0f, Z + h * D, C);
	return SAE_OK;
}

/*
 * z of every sequence: the backend's fused attention when nobody looks at
 * the scores or the pattern (3-4x faster: only the causal half, no score
 * buffer), else sequence by sequence through the hooks.
 */
static int
attend(Fwd *f, int l)
{
	const SaeLmConfig *c = &f->lm->cfg;
	const SaeLmRequest *r = f->req;
	const float *K,
			   *V;
	int			rc;

	if (!hook_used(r, SAE_HOOK_ATTN_SCORES, l) && !hook_used(r, SAE_HOOK_PATTERN, l))
	{
		keys_values(f, l, 0, &K, &V);	/* with the cache there is one sequence */
		if (!f->be->attention(f->be, f->lm->ws.z, f->lm->ws.q, K, V, r->B, r->T, f->Tk,
							  c->n_heads, c->d_head, r->pos0, attn_divisor(c, l),
							  attn_window(c, l)))
			return sae_error(f->err, SAE_ERR_OUT_OF_MEMORY, "out of memory for attention");
		return SAE_OK;
	}
	for (int b = 0; b < r->B; b++)
	{
		keys_values(f, l, b, &K, &V);
		if ((rc = attend_sequence(f, l, b, K, V)) != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* The attention half of a block: ln1, q/k/v, attention, W_O, residual. */
static int
attention_block(Fwd *f, int l)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const LmLayer *L = &lm->layers[l];
	const SaeLmConfig *c = &lm->cfg;
	int			C = c->d_model;
	int			rc;

	if ((rc = layernorm(f, L->ln1_w, L->ln1_b, SAE_HOOK_LN1_SCALE, SAE_HOOK_LN1_NORMALIZED, l)) != SAE_OK)
		return rc;
	linear(f, ws->q, ws->ln, f->rows, L->q, L->b_q, C, C);
	linear(f, ws->k, ws->ln, f->rows, L->k, L->b_k, C, C);
	linear(f, ws->v, ws->ln, f->rows, L->v, L->b_v, C, C);
	if ((rc = site(f, SAE_HOOK_Q, l, ws->q, 0, f->rows, C)) != SAE_OK ||
		(rc = site(f, SAE_HOOK_K, l, ws->k, 0, f->rows, C)) != SAE_OK ||
		(rc = site(f, SAE_HOOK_V, l, ws->v, 0, f->rows, C)) != SAE_OK ||
		(rc = attend(f, l)) != SAE_OK ||
		(rc = site(f, SAE_HOOK_Z, l, ws->z, 0, f->rows, C)) != SAE_OK)
		return rc;
	linear(f, ws->out, ws->z, f->rows, L->o, L->b_o, C, C);
	if ((rc = site(f, SAE_HOOK_ATTN_OUT, l, ws->out, 0, f->rows, C)) != SAE_OK)
		return rc;
	f->be->add(f->be, ws->x, ws->x, ws->out, (size_t) f->rows * C);
	return site(f, SAE_HOOK_RESID_MID, l, ws->x, 0, f->rows, C);
}

/* The MLP half of a block: ln2, W_in, activation, W_out, residual. */
static int
mlp_block(Fwd *f, int l)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const LmLayer *L = &lm->layers[l];
	int			C = lm->cfg.d_model,
				F = lm->cfg.d_mlp;
	int			rc;

	if ((rc = layernorm(f, L->ln2_w, L->ln2_b, SAE_HOOK_LN2_SCALE, SAE_HOOK_LN2_NORMALIZED, l)) != SAE_OK)
		return rc;
	linear(f, ws->mlp, ws->ln, f->rows, L->fc_in, L->b_in, C, F);
	if ((rc = site(f, SAE_HOOK_MLP_PRE, l, ws->mlp, 0, f->rows, F)) != SAE_OK)
		return rc;
	f->be->lm_activation(f->be, ws->mlp, ws->mlp, (size_t) f->rows * F, lm->cfg.act);
	if ((rc = site(f, SAE_HOOK_MLP_POST, l, ws->mlp, 0, f->rows, F)) != SAE_OK)
		return rc;
	linear(f, ws->out, ws->mlp, f->rows, L->fc_out, L->b_out, F, C);
	if ((rc = site(f, SAE_HOOK_MLP_OUT, l, ws->out, 0, f->rows, C)) != SAE_OK)
		return rc;
	f->be->add(f->be, ws->x, ws->x, ws->out, (size_t) f->rows * C);
	return site(f, SAE_HOOK_RESID_POST, l, ws->x, 0, f->rows, C);
}

/* ln_final and, if asked, the logits (of every position or each sequence's last). */
static int
unembed(Fwd *f)
{
	SaeLm	   *lm = f->lm;
	LmWorkspace *ws = &lm->ws;
	const SaeLmRequest *r = f->req;
	int			C = lm->cfg.d_model,
				V = lm->cfg.d_vocab;
	const float *in = ws->ln;
	int			rows = f->rows;
	int			rc;

	if ((rc = layernorm(f, lm->lnf_w, lm->lnf_b, SAE_HOOK_LNF_SCALE, SAE_HOOK_LNF_NORMALIZED, -1)) != SAE_OK ||
		(rc = site(f, SAE_HOOK_UNEMBED_IN, -1, ws->ln, 0, f->rows, C)) != SAE_OK)
		return rc;
	if (r->logits == NULL)
		return SAE_OK;
	if (r->logits_last_only)
	{
		for (int b = 0; b < r->B; b++)
			f->be->copy(f->be, ws->z + (size_t) b * C, ws->ln + ((size_t) b * r->T + r->T - 1) * C,
						sizeof(float) * C);
		in = ws->z;
		rows = r->B;
	}
	linear(f, ws->logits, in, rows, lm->unembed, lm->b_u, C, V);
	f->be->to_host(f->be, r->logits, ws->logits, sizeof(float) * (size_t) rows * V);
	return SAE_OK;
}

int
sae_lm_forward(SaeLm *lm, const SaeLmRequest *req, SaeError *err)
{
	Fwd			f = {lm, req, err, lm->be, 0, 0};
	int			n_blocks;
	int			rc;

	if ((rc = check_request(&f)) != SAE_OK)
		return rc;
	f.rows = req->B * req->T;
	f.Tk = req->pos0 + req->T;
	n_blocks = blocks_needed(lm, req);
	if ((rc = reserve(&f)) != SAE_OK || (rc = embed(&f)) != SAE_OK)
		return rc;
	for (int l = 0; l < n_blocks; l++)
	{
		if (req->should_stop && req->should_stop(req->stop_arg))
			return sae_error(err, SAE_ERR_CANCELLED, "the forward pass was cancelled");
		if ((rc = site(&f, SAE_HOOK_RESID_PRE, l, lm->ws.x, 0, f.rows, lm->cfg.d_model)) != SAE_OK ||
			(rc = attention_block(&f, l)) != SAE_OK ||
			(rc = mlp_block(&f, l)) != SAE_OK)
			return rc;
	}
	if (wants_final(req) && (rc = unembed(&f)) != SAE_OK)
		return rc;
	return sae_backend_check(lm->be, err);
}

int
sae_lm_unembed_rows(SaeLm *lm, const float *x, int rows, float *out, SaeError *err)
{
	SaeBackend *be = lm->be;
	size_t		C = lm->cfg.d_model,
				V = lm->cfg.d_vocab;
	float	   *dx = be->alloc(be, sizeof(float) * rows * C);
	float	   *dout = be->alloc(be, sizeof(float) * rows * V);

	if (dx == NULL || dout == NULL)
	{
		if (dx)
			be->free(be, dx);
		if (dout)
			be->free(be, dout);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for %d rows of logits", rows);
	}
	be->to_device(be, dx, x, sizeof(float) * rows * C);
	be->gemm(be, false, lm->unembed.trans, rows, (int) V, (int) C, 1.0f, dx, (int) C,
			 lm->unembed.w, lm->unembed.ld, 0.0f, dout, (int) V);
	be->to_host(be, out, dout, sizeof(float) * rows * V);
	be->free(be, dx);
	be->free(be, dout);
	return sae_backend_check(be, err);
}
