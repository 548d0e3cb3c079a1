/*
 * eval.h — how well an SAE stands in for the activation it reconstructs:
 * SAELens's evaluation (reference/saelens.md §3.2, sae_lens/evals.py 6.x)
 * on contexts of a language model.
 *
 * For each context: the clean forward pass, one with the SAE's
 * reconstruction spliced in at the hook, and one with the hook zeroed.
 * Cross-entropy is the mean next-token loss over all predicted positions;
 * KL is KL(clean || spliced) per position, over all positions.  Scores are
 * ratios of the means, as SAELens 6 computes them:
 *
 *   ce_loss_score = (CE_zero - CE_sae) / (CE_zero - CE_clean)
 *   kl_div_score  = (KL_zero - KL_sae) / KL_zero
 *
 * Reconstruction metrics on the same activations, per token: ||x||,
 * ||x_hat||, their ratio (||x_hat|| where ||x|| < 1e-4, as SAELens divides
 * by 1 there), L0, MSE (mean squared error over d_in; SAELens 6 divides the
 * squared error by tokens only) and explained variance 1 - SSE / SST about
 * the mean activation (SAELens 6.54's explained_variance).  Every position
 * counts, special tokens too (SAELens's training-time evaluator does the
 * same unless its store excludes special tokens).
 */
#ifndef SAE_EVAL_H
#define SAE_EVAL_H

#include "infer.h"
#include "lm.h"

typedef struct SaeEvalResult
{
	double		ce_loss_without_sae;
	double		ce_loss_with_sae;
	double		ce_loss_with_ablation;
	double		ce_loss_score;
	double		kl_div_with_sae;
	double		kl_div_with_ablation;
	double		kl_div_score;
	double		l2_norm_in;
	double		l2_norm_out;
	double		l2_ratio;
	double		l0;
	double		mse;
	double		explained_variance;
	int64_t		tokens;
} SaeEvalResult;

typedef struct SaeEvalSpec
{
	SaeLm	   *lm;
	SaeHook		hook;
	int			head_index;		/* >= 0: the SAE reads this head of hook_q/k/v/z */
	SaeWeights *sae;
	int			d_in;
	int			d_sae;
	bool		(*should_stop) (void *arg);
	void	   *stop_arg;
} SaeEvalSpec;

/* Evaluate on n contexts of T tokens (host). */
int			sae_eval(const SaeEvalSpec *spec, const int32_t *tokens, int n, int T,
					 SaeEvalResult *out, SaeError *err);

#endif
