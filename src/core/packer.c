/*
 * packer.c — documents into contexts (see packer.h).
 *
 * The rules mirror SAELens's _add_tokens_to_batch: a new context takes the
 * begin token (unless the document's next token is that token) and as many
 * tokens as still fit; a context already holding tokens takes the
 * separator (unless the document starts with it), then as many tokens as
 * fit.  A separator that lands on the last slot fills the context; the
 * document then starts the next one.
 */
#include "packer.h"

#include <stdlib.h>
#include <string.h>

int
sae_packer_init(SaePacker *p, int context_size, int32_t begin, int32_t separator,
				SaePackEmit emit, void *arg, SaeError *err)
{
	memset(p, 0, sizeof(*p));
	if (context_size < 2)
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "context_size must be at least 2, not %d",
						 context_size);
	p->cur = malloc(sizeof(int32_t) * context_size);
	if (p->cur == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory packing contexts");
	p->context_size = context_size;
	p->begin = begin;
	p->separator = separator;
	p->emit = emit;
	p->arg = arg;
	return SAE_OK;
}

void
sae_packer_free(SaePacker *p)
{
	free(p->cur);
	p->cur = NULL;
}

/* Append up to n tokens that fit; returns how many were taken. */
static size_t
take(SaePacker *p, const int32_t *tokens, size_t n)
{
	size_t		room = (size_t) (p->context_size - p->len);
	size_t		k = n < room ? n : room;

	memcpy(p->cur + p->len, tokens, sizeof(int32_t) * k);
	p->len += (int) k;
	return k;
}

int
sae_packer_add(SaePacker *p, const int32_t *tokens, size_t n, SaeError *err)
{
	size_t		off = 0;

	while (off < n)
	{
		/* the marker this position wants: begin at a context's start, else the separator */
		int32_t		marker = p->len == 0 ? p->begin : p->separator;

		if (marker >= 0 && tokens[off] != marker)
			p->cur[p->len++] = marker;
		off += take(p, tokens + off, n - off);
		if (p->len == p->context_size)
		{
			int			rc = p->emit(p->arg, p->cur, err);

			if (rc != 0)
				return rc;
			p->contexts++;
			p->len = 0;
		}
	}
	return SAE_OK;
}
