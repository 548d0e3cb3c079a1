/*
 * lm_source.h — activations computed on the fly: token contexts through
 * the language model, read at one or more hook points.
 *
 * One forward pass of store_batch_size contexts, stopped after the highest
 * hooked block, feeds every hook's queue; each hook is a SaeSource for its
 * own training run (multi-layer training: one run per layer, one pass of
 * the model).  The runs consume their queues in step, so a queue holds
 * about one half-buffer.  When the token stream ends it starts again from
 * the first context (an epoch, with a notice), so the sources never run dry.
 */
#ifndef SAE_LM_SOURCE_H
#define SAE_LM_SOURCE_H

#include "lm.h"
#include "run.h"

/* Fixed-length token contexts, from a dataset (the glue reads sae.dataset_tokens). */
typedef struct SaeTokenSource
{
	void	   *ctx;
	/* up to max contexts (context_size tokens each) into dst; 0 at the end, -1 on error */
	int64_t		(*read) (void *ctx, int32_t *dst, int64_t max, SaeError *err);
	int			(*rewind) (void *ctx, SaeError *err);
} SaeTokenSource;

typedef struct SaeLmSourceOptions
{
	SaeLm	   *lm;
	SaeTokenSource tokens;
	int			context_size;
	int			batch_contexts;	/* store_batch_size */
	const SaeHook *hooks;
	int			n_hooks;
	int			head_index;		/* >= 0: only this head of hook_q/k/v/z */
	void		(*notice) (void *ctx, const char *message);
	void	   *notice_ctx;
	bool		(*should_stop) (void *ctx);
	void	   *stop_ctx;
} SaeLmSourceOptions;

typedef struct SaeLmSource SaeLmSource;

int			sae_lm_source_create(const SaeLmSourceOptions *opt, SaeLmSource **out, SaeError *err);
void		sae_lm_source_destroy(SaeLmSource *s);

/* The activation width at each hook (d_head with a head index). */
int			sae_lm_source_width(const SaeLm *lm, SaeHook hook, int head_index);

/* The rows of hook i as a SaeSource. */
SaeSource	sae_lm_source_hook(SaeLmSource *s, int i);

/*
 * The next n contexts of the token stream, for evaluation: as SAELens,
 * evaluation tokens come from the training stream and are not trained on.
 * Returns how many (n unless the dataset is smaller), -1 on error.
 */
int64_t		sae_lm_source_next_contexts(SaeLmSource *s, int32_t *dst, int64_t n, SaeError *err);

/* Host bytes the source holds for a config (queues of about a half-buffer per hook). */
size_t		sae_lm_source_memory_bytes(int64_t half_rows, int d_in, int n_hooks,
									   int batch_contexts, int context_size, int d_model);

#endif
