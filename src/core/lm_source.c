/*
 * lm_source.c — activations from a language model over token contexts
 * (see lm_source.h).
 */
#include "lm_source.h"
#include "device.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One hook's rows waiting to be read: [head, tail) of data, which is
 * memory of the model's backend (on a GPU, device memory), so that a run
 * on the same device takes its rows without a trip through the host.
 */
typedef struct HookQueue
{
	SaeLmSource *owner;
	int			width;
	float	   *data;
	int64_t		head,
				tail,
				cap;			/* in rows */
} HookQueue;

struct SaeLmSource
{
	SaeLmSourceOptions opt;
	HookQueue  *queues;
	SaeLmCapture *captures;
	int32_t    *tokens;			/* batch_contexts x context_size */
	float	   *full;			/* host: one hook's full width, for head selection */
	float	   *heads;			/* host: the selected head's columns */
	int64_t		epochs;
	int64_t		contexts_this_epoch;
};

int
sae_lm_source_width(const SaeLm *lm, SaeHook hook, int head_index)
{
	if (head_index >= 0)
		return sae_lm_config(lm)->d_head;
	return sae_hook_width(lm, hook, 0);
}

size_t
sae_lm_source_memory_bytes(int64_t half_rows, int d_in, int n_hooks, int batch_contexts,
						   int context_size, int d_model)
{
	size_t		batch_rows = (size_t) batch_contexts * context_size;

	/* each queue: a half-buffer plus one batch; tokens; the head-selection scratch */
	return (size_t) n_hooks * ((size_t) half_rows + 2 * batch_rows) * d_in * sizeof(float) +
		batch_rows * (sizeof(int32_t) + (size_t) d_model * sizeof(float));
}

static void
notice(SaeLmSource *s, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
notice(SaeLmSource *s, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;

	if (s->opt.notice == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->opt.notice(s->opt.notice_ctx, buf);
}

/* Up to n contexts from the token stream, starting it again at its end. */
static int64_t
read_contexts(SaeLmSource *s, int32_t *dst, int64_t n, SaeError *err)
{
	int64_t		got = s->opt.tokens.read(s->opt.tokens.ctx, dst, n, err);

	if (got != 0)
		return got;
	if (s->contexts_this_epoch == 0)
	{
		sae_error(err, SAE_ERR_NO_DATA, "the token dataset has no contexts");
		sae_error_hint(err, "Create it with sae_create_dataset or sae_load_dataset_file.");
		return -1;
	}
	if (s->opt.tokens.rewind(s->opt.tokens.ctx, err) != SAE_OK)
		return -1;
	s->epochs++;
	/* a few epochs, then only at powers of two: a small dataset may wrap thousands of times */
	if (s->epochs <= 4 || (s->epochs & (s->epochs - 1)) == 0)
		notice(s, "token dataset exhausted after %" PRId64 " contexts: starting epoch %" PRId64 " (tokens are reused)",
			   s->contexts_this_epoch, s->epochs);
	s->contexts_this_epoch = 0;
	return s->opt.tokens.read(s->opt.tokens.ctx, dst, n, err);
}

int64_t
sae_lm_source_next_contexts(SaeLmSource *s, int32_t *dst, int64_t n, SaeError *err)
{
	int64_t		done = 0;

	while (done < n)
	{
		int64_t		got = read_contexts(s, dst + done * s->opt.context_size, n - done, err);

		if (got < 0)
			return -1;
		if (got == 0)
			break;
		done += got;
		s->contexts_this_epoch += got;
	}
	return done;
}

/*
 * Move n rows of q down from row `from` to row `to` (to < from) in pieces
 * no longer than the gap, so that no piece overlaps its destination: the
 * backend's copy need not handle overlap.
 */
static void
move_rows_down(SaeBackend *be, HookQueue *q, int64_t to, int64_t from, int64_t n)
{
	int64_t		gap = from - to;

	for (int64_t k = 0; k < n; k += gap)
	{
		int64_t		len = n - k < gap ? n - k : gap;

		be->copy(be, q->data + (to + k) * q->width, q->data + (from + k) * q->width,
				 sizeof(float) * len * q->width);
	}
}

/* Room for rows more rows at the tail of q (moving the unread rows to the front first). */
static bool
reserve_rows(SaeBackend *be, HookQueue *q, int64_t rows)
{
	if (q->head > 0)
	{
		move_rows_down(be, q, 0, q->head, q->tail - q->head);
		q->tail -= q->head;
		q->head = 0;
	}
	if (q->tail + rows > q->cap)
	{
		int64_t		cap = q->tail + rows > 2 * q->cap ? q->tail + rows : 2 * q->cap;
		float	   *grown = be->alloc(be, sizeof(float) * cap * q->width);

		if (grown == NULL)
			return false;
		be->copy(be, grown, q->data, sizeof(float) * q->tail * q->width);
		be->free(be, q->data);
		q->data = grown;
		q->cap = cap;
	}
	return true;
}

/* One forward pass over the next batch of contexts, appending to every queue. */
static int
produce(SaeLmSource *s, SaeError *err)
{
	const SaeLmSourceOptions *o = &s->opt;
	SaeBackend *be = sae_lm_backend(o->lm);
	int64_t		n = sae_lm_source_next_contexts(s, s->tokens, o->batch_contexts, err);
	int64_t		rows;
	SaeLmRequest req = {.tokens = s->tokens, .T = o->context_size, .captures = s->captures,
	.n_captures = o->n_hooks, .should_stop = o->should_stop, .stop_arg = o->stop_ctx};
	int			rc;

	if (n < 0)
		return err->code;
	if (n == 0)
		return sae_error(err, SAE_ERR_NO_DATA, "the token dataset has no contexts");
	rows = n * o->context_size;
	req.B = (int) n;
	for (int i = 0; i < o->n_hooks; i++)
	{
		HookQueue  *q = &s->queues[i];

		if (!reserve_rows(be, q, rows))
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory queueing activations");
		s->captures[i].dst = o->head_index >= 0 ? s->full : q->data + q->tail * q->width;
		s->captures[i].dst_on_device = o->head_index < 0;
	}
	if (o->head_index < 0)
	{
		if ((rc = sae_lm_forward(o->lm, &req, err)) != SAE_OK)
			return rc;
	}
	else
	{
		/* one hook at a time through the full-width scratch, keeping one head's columns */
		for (int i = 0; i < o->n_hooks; i++)
		{
			HookQueue  *q = &s->queues[i];
			int			full = sae_hook_width(o->lm, o->hooks[i], o->context_size);

			req.captures = &s->captures[i];
			req.n_captures = 1;
			if ((rc = sae_lm_forward(o->lm, &req, err)) != SAE_OK)
				return rc;
			for (int64_t r = 0; r < rows; r++)
				memcpy(s->heads + r * q->width,
					   s->full + r * full + (size_t) o->head_index * q->width, sizeof(float) * q->width);
			be->to_device(be, q->data + q->tail * q->width, s->heads, sizeof(float) * rows * q->width);
		}
	}
	for (int i = 0; i < o->n_hooks; i++)
		s->queues[i].tail += rows;
	return SAE_OK;
}

/* Up to max_rows rows of q into dst: host memory, or else memory of the model's backend. */
static int64_t
queue_take(HookQueue *q, float *dst, bool on_device, int64_t max_rows, SaeError *err)
{
	SaeBackend *be = sae_lm_backend(q->owner->opt.lm);
	int64_t		n;

	if ((q->head == q->tail && produce(q->owner, err) != SAE_OK) || sae_backend_check(be, err) != SAE_OK)
		return -1;				/* after a GPU fault the queued rows are not to be trusted */
	n = q->tail - q->head < max_rows ? q->tail - q->head : max_rows;
	if (on_device)
		be->copy(be, dst, q->data + q->head * q->width, sizeof(float) * n * q->width);
	else
		be->to_host(be, dst, q->data + q->head * q->width, sizeof(float) * n * q->width);
	q->head += n;
	return n;
}

/* SaeSource.read for one hook's queue. */
static int64_t
queue_read(void *ctx, float *dst, int64_t max_rows, SaeError *err)
{
	return queue_take(ctx, dst, false, max_rows, err);
}

/* SaeSource.read_device: the rows stay in the model's device memory. */
static int64_t
queue_read_device(void *ctx, float *dst, int64_t max_rows, SaeError *err)
{
	return queue_take(ctx, dst, true, max_rows, err);
}

/* The stream never ends (epochs wrap inside), so a run never rewinds it. */
static int
queue_rewind(void *ctx, SaeError *err)
{
	return SAE_OK;
}

SaeSource
sae_lm_source_hook(SaeLmSource *s, int i)
{
	SaeSource	src = {&s->queues[i], queue_read, queue_rewind, queue_read_device,
	sae_lm_backend(s->opt.lm)};

	return src;
}

int
sae_lm_source_create(const SaeLmSourceOptions *opt, SaeLmSource **out, SaeError *err)
{
	SaeLmSource *s = calloc(1, sizeof(SaeLmSource));
	size_t		rows = (size_t) opt->batch_contexts * opt->context_size;

	*out = s;
	if (s == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	s->opt = *opt;
	s->epochs = 1;
	s->queues = calloc(opt->n_hooks, sizeof(HookQueue));
	s->captures = calloc(opt->n_hooks, sizeof(SaeLmCapture));
	s->tokens = malloc(sizeof(int32_t) * rows);
	if (opt->head_index >= 0)
	{
		s->full = malloc(sizeof(float) * rows * sae_lm_config(opt->lm)->d_model);
		s->heads = malloc(sizeof(float) * rows * sae_lm_config(opt->lm)->d_head);
	}
	if (!s->queues || !s->captures || !s->tokens || (opt->head_index >= 0 && (!s->full || !s->heads)))
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for the activation source");
	for (int i = 0; i < opt->n_hooks; i++)
	{
		s->queues[i].owner = s;
		s->queues[i].width = sae_lm_source_width(opt->lm, opt->hooks[i], opt->head_index);
		s->captures[i].hook = opt->hooks[i];
	}
	return SAE_OK;
}

void
sae_lm_source_destroy(SaeLmSource *s)
{
	if (s == NULL)
		return;
	for (int i = 0; s->queues && i < s->opt.n_hooks; i++)
		sae_lm_backend(s->opt.lm)->free(sae_lm_backend(s->opt.lm), s->queues[i].data);
	free(s->queues);
	free(s->captures);
	free(s->tokens);
	free(s->full);
	free(s->heads);
	free(s);
}
