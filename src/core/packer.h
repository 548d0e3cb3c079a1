/*
 * packer.h — packing documents into fixed-length training contexts, as
 * SAELens's concat_and_batch_sequences does (sae_lens/tokenization_and_batching.py,
 * with begin_sequence_token_id None, the ActivationsStore's setting):
 *
 *   - a context starts with begin (BOS) unless the token there already is it;
 *   - documents follow each other in a context, each after a separator
 *     token (BOS by default) unless it already starts with one;
 *   - a document that does not fit continues in the next context, after
 *     that context's begin token;
 *   - the last, partial context is dropped.
 *
 * begin or separator -1 turns that token off.
 */
#ifndef SAE_PACKER_H
#define SAE_PACKER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Called with each finished context (context_size tokens); non-zero stops packing with that code. */
typedef int (*SaePackEmit) (void *arg, const int32_t *context, SaeError *err);

typedef struct SaePacker
{
	int			context_size;
	int32_t		begin;			/* token at the start of every context, or -1 */
	int32_t		separator;		/* token between documents, or -1 */
	int32_t    *cur;			/* the context being filled */
	int			len;			/* tokens in cur; 0: no context started */
	SaePackEmit emit;
	void	   *arg;
	int64_t		contexts;		/* emitted so far */
} SaePacker;

int			sae_packer_init(SaePacker *p, int context_size, int32_t begin, int32_t separator,
							SaePackEmit emit, void *arg, SaeError *err);
void		sae_packer_free(SaePacker *p);

/* Add one document's tokens (n may be 0: nothing happens). */
int			sae_packer_add(SaePacker *p, const int32_t *tokens, size_t n, SaeError *err);

#endif
