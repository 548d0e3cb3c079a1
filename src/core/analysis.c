/*
 * analysis.c — top logits of decoder directions, and per-feature
 * statistics and top examples over a dataset (analysis.h).
 *
 * Both are selections of the best k of many values, done with a min-heap
 * of k entries whose root is the worst kept: one comparison per candidate
 * in the common case, O(log k) when it gets in.
 */
#include "analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

/* Logit blocks are kept under this many bytes (rows x d_vocab floats). */
#define LOGIT_BLOCK_BYTES ((size_t) 64 << 20)
/* Features per task when gathering statistics. */
#define FEATURE_BLOCK 128

/* ---- top and bottom k of rows ---- */

typedef struct Ranked
{
	float		value;
	int32_t		id;
} Ranked;

/* Whether a ranks below b when sign * value is what counts; ties rank the higher id lower. */
static inline bool
ranks_below(Ranked a, Ranked b, float sign)
{
	float		x = sign * a.value,
				y = sign * b.value;

	return x < y || (x == y && a.id > b.id);
}

/* Restore the heap (worst at the root) after heap[i] changed, moving it down. */
static void
sift_down(Ranked *heap, int n, int i, float sign)
{
	for (;;)
	{
		int			worst = i,
					l = 2 * i + 1,
					r = l + 1;
		Ranked		t;

		if (l < n && ranks_below(heap[l], heap[worst], sign))
			worst = l;
		if (r < n && ranks_below(heap[r], heap[worst], sign))
			worst = r;
		if (worst == i)
			return;
		t = heap[i];
		heap[i] = heap[worst];
		heap[worst] = t;
		i = worst;
	}
}

/* The k best of x[0..n) under sign into ids/values, best first; heap holds k entries. */
static void
select_k(const float *x, int n, int k, float sign, Ranked *heap, int32_t *ids, float *values)
{
	int			size = 0;

	for (int j = 0; j < n; j++)
	{
		Ranked		e = {x[j], j};

		if (size < k)
		{
			/* sift up */
			int			i = size++;

			heap[i] = e;
			while (i > 0 && ranks_below(heap[i], heap[(i - 1) / 2], sign))
			{
				Ranked		t = heap[i];

				heap[i] = heap[(i - 1) / 2];
				heap[(i - 1) / 2] = t;
				i = (i - 1) / 2;
			}
		}
		else if (ranks_below(heap[0], e, sign))
		{
			heap[0] = e;
			sift_down(heap, k, 0, sign);
		}
	}
	/* pop the worst to the back until the heap is empty: best first */
	for (int end = size - 1; end >= 0; end--)
	{
		ids[end] = heap[0].id;
		values[end] = heap[0].value;
		heap[0] = heap[end];
		sift_down(heap, end, 0, sign);
	}
}

bool
sae_rows_top_bottom_k(const float *scores, int rows, int n, int k,
					  int32_t *top_ids, float *top_values,
					  int32_t *bottom_ids, float *bottom_values)
{
	int			threads = omp_get_max_threads();
	Ranked	   *heaps = malloc(sizeof(Ranked) * (size_t) k * threads);

	if (heaps == NULL)
		return false;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
	for (int r = 0; r < rows; r++)
	{
		Ranked	   *heap = heaps + (size_t) k * omp_get_thread_num();
		const float *x = scores + (size_t) r * n;

		if (top_ids)
			select_k(x, n, k, 1.0f, heap, top_ids + (size_t) r * k, top_values + (size_t) r * k);
		if (bottom_ids)
			select_k(x, n, k, -1.0f, heap, bottom_ids + (size_t) r * k,
					 bottom_values + (size_t) r * k);
	}
	free(heaps);
	return true;
}

int
sae_decoder_top_logits(SaeLm *lm, const float *w_dec, int m, int k,
			   int32_t *top_ids, float *top_values,
			   int32_t *bottom_ids, float *bottom_values,
			   bool (*should_stop) (void *arg), void *stop_arg, SaeError *err)
{
	const SaeLmConfig *c = sae_lm_config(lm);
	size_t		V = c->d_vocab;
	int			block = (int) (LOGIT_BLOCK_BYTES / (V * sizeof(float)));
	float	   *logits;
	int			rc = SAE_OK;

	if (k < 1 || k > c->d_vocab)
		return sae_error(err, SAE_ERR_INTERNAL, "top-logit k %d is not in 1..%d", k, c->d_vocab);
	block = block < 1 ? 1 : (block > m ? m : block);
	if ((logits = malloc(sizeof(float) * V * block)) == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for %d rows of logits", block);
	for (int r0 = 0; r0 < m && rc == SAE_OK; r0 += block)
	{
		int			rows = m - r0 < block ? m - r0 : block;
		size_t		at = (size_t) r0 * k;

		if (should_stop && should_stop(stop_arg))
			rc = sae_error(err, SAE_ERR_CANCELLED, "the top-logit computation was cancelled");
		else if ((rc = sae_lm_unembed_rows(lm, w_dec + (size_t) r0 * c->d_model, rows, logits, err)) == SAE_OK &&
				 !sae_rows_top_bottom_k(logits, rows, (int) V, k, top_ids + at, top_values + at,
										bottom_ids + at, bottom_values + at))
			rc = sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for the top-%d selection", k);
	}
	free(logits);
	return rc;
}

int
sae_feature_acts(SaeLm *lm, SaeHook hook, int head_index, SaeWeights *sae, int d_in,
				 const int32_t *tokens, int B, int T, float *x, float *features,
				 bool (*should_stop) (void *arg), void *stop_arg, SaeError *err)
{
	SaeLmCapture cap = {.hook = hook, .dst = x};
	SaeLmRequest req = {.tokens = tokens, .B = B, .T = T, .captures = &cap, .n_captures = 1,
	.should_stop = should_stop, .stop_arg = stop_arg};
	size_t		rows = (size_t) B * T,
				width = sae_hook_width(lm, hook, T);
	int			rc;

	if ((rc = sae_lm_forward(lm, &req, err)) != SAE_OK)
		return rc;
	if (head_index >= 0)
		for (size_t r = 0; r < rows; r++)
			memmove(x + r * d_in, x + r * width + (size_t) head_index * d_in, sizeof(float) * d_in);
	return sae_weights_apply(sae, x, (int) rows, features, NULL, err);
}

/* ---- feature statistics over a dataset ---- */

struct SaeFeatureStats
{
	int			m,
				k,
				before,
				after,
				W;				/* window capacity: before + 1 + after */
	int64_t		n_tokens;
	int64_t    *n_fired;
	double	   *sum;
	float	   *max;
	float	   *hist_top;
	int64_t    *hist;			/* m x SAE_HIST_BINS */
	/* examples: per feature k slots, and a min-heap of slot numbers (worst at the root) */
	int		   *n_ex;
	int		   *heap;			/* m x k */
	float	   *ex_act;			/* m x k */
	int64_t    *ex_ctx;
	int		   *ex_pos,
			   *ex_start,
			   *ex_len;
	int32_t    *ex_tokens;		/* m x k x W */
	float	   *ex_acts;
};

int
sae_feature_stats_create(int m, int k, int before, int after, SaeFeatureStats **out,
						 SaeError *err)
{
	SaeFeatureStats *s = calloc(1, sizeof(SaeFeatureStats));
	size_t		mk = (size_t) m * k;

	*out = NULL;
	if (m < 1 || k < 1 || before < 0 || after < 0)
	{
		free(s);
		return sae_error(err, SAE_ERR_INTERNAL, "bad feature statistics shape");
	}
	if (s == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for feature statistics");
	s->m = m;
	s->k = k;
	s->before = before;
	s->after = after;
	s->W = before + 1 + after;
	s->n_fired = calloc(m, sizeof(int64_t));
	s->sum = calloc(m, sizeof(double));
	s->max = calloc(m, sizeof(float));
	s->hist_top = calloc(m, sizeof(float));
	s->hist = calloc((size_t) m * SAE_HIST_BINS, sizeof(int64_t));
	s->n_ex = calloc(m, sizeof(int));
	s->heap = calloc(mk, sizeof(int));
	s->ex_act = calloc(mk, sizeof(float));
	s->ex_ctx = calloc(mk, sizeof(int64_t));
	s->ex_pos = calloc(mk, sizeof(int));
	s->ex_start = calloc(mk, sizeof(int));
	s->ex_len = calloc(mk, sizeof(int));
	s->ex_tokens = calloc(mk * s->W, sizeof(int32_t));
	s->ex_acts = calloc(mk * s->W, sizeof(float));
	if (!s->n_fired || !s->sum || !s->max || !s->hist_top || !s->hist || !s->n_ex || !s->heap ||
		!s->ex_act || !s->ex_ctx || !s->ex_pos || !s->ex_start || !s->ex_len || !s->ex_tokens ||
		!s->ex_acts)
	{
		sae_feature_stats_free(s);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY,
						 "out of memory for the statistics of %d features (top %d examples each)", m, k);
	}
	*out = s;
	return SAE_OK;
}

void
sae_feature_stats_free(SaeFeatureStats *s)
{
	if (s == NULL)
		return;
	free(s->n_fired);
	free(s->sum);
	free(s->max);
	free(s->hist_top);
	free(s->hist);
	free(s->n_ex);
	free(s->heap);
	free(s->ex_act);
	free(s->ex_ctx);
	free(s->ex_pos);
	free(s->ex_start);
	free(s->ex_len);
	free(s->ex_tokens);
	free(s->ex_acts);
	free(s);
}

/*
 * Count a positive activation in the feature's histogram.  The range
 * [0, top) starts at the first value's power of two and doubles (merging
 * bins pairwise) when a larger value comes, so one pass needs no prior
 * knowledge of the maximum.
 */
static void
hist_add(float *top, int64_t *bins, float a)
{
	int			bin;

	if (*top == 0)
	{
		int			e;

		(void) frexpf(a, &e);
		*top = ldexpf(1.0f, e);		/* > a */
	}
	while (a >= *top)
	{
		for (int i = 0; i < SAE_HIST_BINS / 2; i++)
			bins[i] = bins[2 * i] + bins[2 * i + 1];
		memset(bins + SAE_HIST_BINS / 2, 0, sizeof(int64_t) * (SAE_HIST_BINS / 2));
		*top *= 2;
	}
	bin = (int) (a / *top * SAE_HIST_BINS);
	bins[bin < SAE_HIST_BINS ? bin : SAE_HIST_BINS - 1]++;
}

/* Whether example slot a ranks below slot b: lower activation, or equal and later. */
static inline bool
example_below(const float *act, const int64_t *ctx, const int *pos, int a, int b)
{
	if (act[a] != act[b])
		return act[a] < act[b];
	if (ctx[a] != ctx[b])
		return ctx[a] > ctx[b];
	return pos[a] > pos[b];
}

/* Restore feature f's heap of slot numbers after its entry at i changed. */
static void
example_sift(SaeFeatureStats *s, int f, int i, bool up)
{
	int		   *h = s->heap + (size_t) f * s->k;
	const float *act = s->ex_act;
	const int64_t *ctx = s->ex_ctx;
	const int  *pos = s->ex_pos;
	int			n = s->n_ex[f];

	while (up && i > 0 && example_below(act, ctx, pos, h[i], h[(i - 1) / 2]))
	{
		int			t = h[i];

		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
	while (!up)
	{
		int			worst = i,
					l = 2 * i + 1,
					r = l + 1,
					t;

		if (l < n && example_below(act, ctx, pos, h[l], h[worst]))
			worst = l;
		if (r < n && example_below(act, ctx, pos, h[r], h[worst]))
			worst = r;
		if (worst == i)
			break;
		t = h[i];
		h[i] = h[worst];
		h[worst] = t;
		i = worst;
	}
}

/* Write an example into slot: its top token and the window of tokens and activations around it. */
static void
example_fill(SaeFeatureStats *s, int f, size_t slot, float a, int64_t context, int pos,
			 const float *ctx_acts, const int32_t *ctx_tokens, int T)
{
	int			start = pos - s->before > 0 ? pos - s->before : 0,
				end = pos + s->after < T - 1 ? pos + s->after : T - 1;
	int32_t    *tok = s->ex_tokens + slot * s->W;
	float	   *wa = s->ex_acts + slot * s->W;

	s->ex_act[slot] = a;
	s->ex_ctx[slot] = context;
	s->ex_pos[slot] = pos;
	s->ex_start[slot] = start;
	s->ex_len[slot] = end - start + 1;
	for (int j = start; j <= end; j++)
	{
		tok[j - start] = ctx_tokens[j];
		wa[j - start] = ctx_acts[(size_t) j * s->m + f];
	}
}

/* Offer feature f's activation a at (context, pos) to its top examples. */
static void
example_offer(SaeFeatureStats *s, int f, float a, int64_t context, int pos,
			  const float *ctx_acts, const int32_t *ctx_tokens, int T)
{
	int		   *h = s->heap + (size_t) f * s->k;

	if (s->n_ex[f] < s->k)
	{
		int			i = s->n_ex[f]++;

		h[i] = f * s->k + i;
		example_fill(s, f, h[i], a, context, pos, ctx_acts, ctx_tokens, T);
		example_sift(s, f, i, true);
	}
	else if (a > s->ex_act[h[0]])
	{
		example_fill(s, f, h[0], a, context, pos, ctx_acts, ctx_tokens, T);
		example_sift(s, f, 0, false);
	}
}

void
sae_feature_stats_add(SaeFeatureStats *s, const float *acts, const int32_t *tokens,
					  int n_ctx, int T, int64_t ctx0, int32_t skip_token)
{
	int64_t		rows = (int64_t) n_ctx * T;

	for (int64_t r = 0; r < rows; r++)
		s->n_tokens += tokens[r] != skip_token;
	/* each task owns a block of features, so no two threads touch one feature */
#pragma omp parallel for schedule(dynamic, 1) if(rows * s->m >= 65536)
	for (int f0 = 0; f0 < s->m; f0 += FEATURE_BLOCK)
	{
		int			f1 = f0 + FEATURE_BLOCK < s->m ? f0 + FEATURE_BLOCK : s->m;

		for (int64_t r = 0; r < rows; r++)
		{
			const float *row = acts + (size_t) r * s->m;
			int64_t		c = r / T;

			if (tokens[r] == skip_token)
				continue;
			for (int f = f0; f < f1; f++)
			{
				float		a = row[f];

				if (!(a > 0 && a < INFINITY))
					continue;
				s->n_fired[f]++;
				s->sum[f] += a;
				s->max[f] = a > s->max[f] ? a : s->max[f];
				hist_add(&s->hist_top[f], s->hist + (size_t) f * SAE_HIST_BINS, a);
				example_offer(s, f, a, ctx0 + c, (int) (r - c * T),
							  acts + (size_t) c * T * s->m, tokens + c * T, T);
			}
		}
	}
}

int64_t
sae_feature_stats_tokens(const SaeFeatureStats *s)
{
	return s->n_tokens;
}

void
sae_feature_stats_summary(const SaeFeatureStats *s, int f, SaeFeatureSummary *out)
{
	out->n_fired = s->n_fired[f];
	out->sum = s->sum[f];
	out->max = s->max[f];
	out->hist_top = s->hist_top[f];
	memcpy(out->hist, s->hist + (size_t) f * SAE_HIST_BINS, sizeof(out->hist));
}

/* qsort order of examples: highest activation first, then earlier context and position */
static int
example_cmp(const void *pa, const void *pb)
{
	const SaeFeatureExample *a = pa,
			   *b = pb;

	if (a->activation != b->activation)
		return a->activation > b->activation ? -1 : 1;
	if (a->context != b->context)
		return a->context < b->context ? -1 : 1;
	return (a->position > b->position) - (a->position < b->position);
}

int
sae_feature_stats_examples(const SaeFeatureStats *s, int f, SaeFeatureExample *out)
{
	int			n = s->n_ex[f];

	for (int i = 0; i < n; i++)
	{
		size_t		slot = (size_t) f * s->k + i;

		out[i] = (SaeFeatureExample) {
			.activation = s->ex_act[slot],
			.context = s->ex_ctx[slot],
			.position = s->ex_pos[slot],
			.window_start = s->ex_start[slot],
			.window_len = s->ex_len[slot],
			.tokens = s->ex_tokens + slot * s->W,
			.acts = s->ex_acts + slot * s->W,
		};
	}
	qsort(out, n, sizeof(SaeFeatureExample), example_cmp);
	return n;
}
