/*
 * analysis.h — reading what an SAE's features do: the tokens each feature's
 * decoder direction promotes and suppresses (W_dec W_U), and, over a run of
 * the model on a dataset, each feature's firing rate, activation
 * statistics, activation histogram and top activating contexts.
 *
 * Plain C on host arrays; the model and the SAE run elsewhere (lm.h,
 * infer.h) and hand their outputs here batch by batch.
 */
#ifndef SAE_ANALYSIS_H
#define SAE_ANALYSIS_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "infer.h"
#include "lm.h"

/*
 * For each of rows rows of n scores: the k largest (descending) and the k
 * smallest (ascending), ties going to the lower column, in O(n log k) per
 * row.  k <= n.  Either output pair may be NULL.  False if out of memory.
 */
bool		sae_rows_top_bottom_k(const float *scores, int rows, int n, int k,
								  int32_t *top_ids, float *top_values,
								  int32_t *bottom_ids, float *bottom_values);

/*
 * The seed's "top logits": for each of m decoder rows (d = the model's
 * d_model floats each), the k tokens with the largest and the k with the
 * smallest entry of w_dec W_U, W_U the model's unembedding without its
 * bias.  One GEMM per block of rows and a per-row top-k; outputs are m x k.
 * k <= d_vocab.  should_stop (may be NULL) is asked between blocks.
 */
int			sae_decoder_top_logits(SaeLm *lm, const float *w_dec, int m, int k,
						   int32_t *top_ids, float *top_values,
						   int32_t *bottom_ids, float *bottom_values,
						   bool (*should_stop) (void *arg), void *stop_arg, SaeError *err);

/*
 * An SAE's feature activations on B contexts of T tokens: the model run to
 * the hook, the head's slice of each row if head_index >= 0, then encoded.
 * x (B * T rows of the hook's width) and features (B * T x d_sae) are host
 * buffers of the caller.
 */
int			sae_feature_acts(SaeLm *lm, SaeHook hook, int head_index, SaeWeights *sae, int d_in,
							 const int32_t *tokens, int B, int T, float *x, float *features,
							 bool (*should_stop) (void *arg), void *stop_arg, SaeError *err);

/* Bins of each feature's activation histogram. */
#define SAE_HIST_BINS 32

/*
 * Feature statistics gathered over batches of contexts: per feature the
 * tokens it fired on (activation > 0), the sum and max of those
 * activations, a histogram of them, and the k contexts where it fired
 * most, each with a window of tokens around the top token and the
 * feature's activation on each.
 */
typedef struct SaeFeatureStats SaeFeatureStats;

/* before/after: tokens of the window on either side of an example's top token. */
int			sae_feature_stats_create(int m, int k, int before, int after,
									 SaeFeatureStats **out, SaeError *err);
void		sae_feature_stats_free(SaeFeatureStats *s);

/*
 * n_ctx contexts of T tokens (context ids ctx0, ctx0 + 1, ...), their
 * tokens and the SAE's activations (n_ctx * T rows of m).  Positions whose
 * token is skip_token (e.g. BOS, whose activations are outliers) are left
 * out; -1 skips none.  Ties among examples go to the earlier token.
 */
void		sae_feature_stats_add(SaeFeatureStats *s, const float *acts, const int32_t *tokens,
								  int n_ctx, int T, int64_t ctx0, int32_t skip_token);

/* Tokens seen so far (not counting skipped ones). */
int64_t		sae_feature_stats_tokens(const SaeFeatureStats *s);

typedef struct SaeFeatureSummary
{
	int64_t		n_fired;		/* tokens with activation > 0 */
	double		sum;			/* of those activations */
	float		max;
	/* histogram of the positive activations: bin i counts [i, i+1) * hist_top / SAE_HIST_BINS */
	float		hist_top;		/* a power of two, at most twice max; 0 if it never fired */
	int64_t		hist[SAE_HIST_BINS];
} SaeFeatureSummary;

void		sae_feature_stats_summary(const SaeFeatureStats *s, int feature, SaeFeatureSummary *out);

typedef struct SaeFeatureExample
{
	float		activation;		/* at the top token */
	int64_t		context;
	int			position;		/* of the top token in its context */
	int			window_start;	/* position of the window's first token */
	int			window_len;
	const int32_t *tokens;		/* window_len tokens */
	const float *acts;			/* the feature's activation on each */
} SaeFeatureExample;

/* The feature's examples, highest activation first; returns how many (<= k). */
int			sae_feature_stats_examples(const SaeFeatureStats *s, int feature,
									   SaeFeatureExample *out);

#endif
