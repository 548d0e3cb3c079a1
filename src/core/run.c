/*
 * run.c — a training run: SAELens's activation store and training loop.
 *
 * The shuffle buffer follows SAELens v1.0 (reference/saelens.md §2.8.1):
 * half-buffers of (n_batches_in_buffer / 2) * store_batch_size *
 * context_size rows.  The first half read becomes the "storage" half and
 * initialises b_dec.  Each refill reads a new half, shuffles new + storage
 * together, keeps one half as the next storage and serves the other half
 * as training batches (the last one short if the half is not a multiple of
 * train_batch_size, as PyTorch's DataLoader does).  When the source runs
 * out, it is read again from the start (an epoch) with a notice.
 *
 * Device memory: raw = [new half | storage half], mix = shuffled raw.
 */
#include "device.h"
#include "run.h"
#include "rng.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAE_READ_CHUNK_ROWS 4096

struct SaeRun
{
	SaeConfig	cfg;
	SaeBackend *be;
	SaeSource	src;
	SaeRunCallbacks cb;
	SaeTrainer *trainer;

	int64_t		half;			/* rows per half-buffer */
	float	   *raw;			/* 2*half x d on the backend */
	float	   *mix;			/* 2*half x d on the backend */
	int32_t    *perm;			/* 2*half on the backend */
	int32_t    *perm_host;
	float	   *staging;		/* SAE_READ_CHUNK_ROWS x d on the host */
	int64_t		serve_pos;		/* next row of mix to serve; served: [half, 2*half) */
	int64_t		rows_this_epoch;
	uint64_t	shuffle_count;
	int64_t		next_checkpoint;	/* index into the checkpoint thresholds */
	bool		pretrained;		/* params given: keep b_dec */
	double		start;			/* when the first step began */
	SaeStepStats last;			/* the latest step's metrics */
	SaeRunResult result;
};

size_t
sae_run_memory_bytes(const SaeConfig *cfg)
{
	size_t		half = (size_t) sae_config_half_buffer_rows(cfg);
	size_t		buffers = 4 * half * cfg->d_in * sizeof(float) + 2 * half * sizeof(int32_t)
		+ SAE_READ_CHUNK_ROWS * cfg->d_in * sizeof(float);

	return buffers + sae_trainer_memory_bytes(cfg->d_in, cfg->d_sae, cfg->train_batch_size);
}

static void
notice(SaeRun *run, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* Send one formatted line to the user, if anyone listens. */
static void
notice(SaeRun *run, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;

	if (run->cb.notice == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	run->cb.notice(run->cb.ctx, buf);
}

int
sae_run_create(const SaeConfig *cfg, SaeBackend *be, const SaeSource *src,
			   const SaeRunCallbacks *cb, SaeRun **out, SaeError *err)
{
	SaeRun	   *run = calloc(1, sizeof(SaeRun));
	size_t		d = cfg->d_in;
	int			rc;

	*out = NULL;
	if (run == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	run->cfg = *cfg;
	run->be = be;
	run->src = *src;
	run->cb = *cb;
	run->half = sae_config_half_buffer_rows(cfg);
	*out = run;
	rc = sae_trainer_create(cfg, be, (int) cfg->train_batch_size, &run->trainer, err);
	if (rc != SAE_OK)
		return rc;
	sae_trainer_set_stop(run->trainer, cb->should_stop, cb->ctx);
	run->raw = be->alloc(be, sizeof(float) * 2 * run->half * d);
	run->mix = be->alloc(be, sizeof(float) * 2 * run->half * d);
	run->perm = be->alloc(be, sizeof(int32_t) * 2 * run->half);
	run->perm_host = malloc(sizeof(int32_t) * 2 * run->half);
	run->staging = malloc(sizeof(float) * SAE_READ_CHUNK_ROWS * d);
	if (!run->raw || !run->mix || !run->perm || !run->perm_host || !run->staging)
	{
		sae_error(err, SAE_ERR_OUT_OF_MEMORY,
				  "could not allocate the shuffle buffer (%" PRId64 " rows of %zu floats, 4 copies)",
				  run->half, d);
		return sae_error_hint(err, "Lower n_batches_in_buffer or store_batch_size.");
	}
	run->serve_pos = 2 * run->half;
	return sae_trainer_init_params(run->trainer, err);
}

void
sae_run_destroy(SaeRun *run)
{
	if (run == NULL)
		return;
	if (run->trainer)
		sae_trainer_destroy(run->trainer);
	if (run->raw)
		run->be->free(run->be, run->raw);
	if (run->mix)
		run->be->free(run->be, run->mix);
	if (run->perm)
		run->be->free(run->be, run->perm);
	free(run->perm_host);
	free(run->staging);
	free(run);
}

SaeTrainer *
sae_run_trainer(SaeRun *run)
{
	return run->trainer;
}

const SaeRunResult *
sae_run_result(const SaeRun *run)
{
	return &run->result;
}

/*
 * Read `rows` activation rows into the device region dst, wrapping epochs:
 * straight from the source's memory where it shares the run's device,
 * else through the host staging buffer.
 */
static int
fill_rows(SaeRun *run, float *dst, int64_t rows, SaeError *err)
{
	size_t		d = run->cfg.d_in;
	int64_t		done = 0;
	bool		direct = run->src.read_device && sae_backends_share_memory(run->src.memory, run->be);

	while (done < rows)
	{
		int64_t		want = rows - done < SAE_READ_CHUNK_ROWS ? rows - done : SAE_READ_CHUNK_ROWS;
		int64_t		got = direct ? run->src.read_device(run->src.ctx, dst + (size_t) done * d, want, err)
			: run->src.read(run->src.ctx, run->staging, want, err);

		if (got < 0)
			return err ? err->code : SAE_ERR_INTERNAL;
		if (got == 0)
		{
			int			rc;

			if (run->rows_this_epoch == 0)
			{
				sae_error(err, SAE_ERR_NO_DATA, "the activation source has no rows");
				return sae_error_hint(err, "Check that \"%s\" has rows with non-null \"%s\".",
									  run->cfg.activations_table, run->cfg.activations_column);
			}
			if ((rc = run->src.rewind(run->src.ctx, err)) != SAE_OK)
				return rc;
			run->result.epochs++;
			notice(run, "activation source exhausted after %" PRId64 " rows: starting epoch %" PRId64 " (rows are reused)",
				   run->rows_this_epoch, run->result.epochs);
			run->rows_this_epoch = 0;
			continue;
		}
		if (!direct)
			run->be->to_device(run->be, dst + (size_t) done * d, run->staging, sizeof(float) * got * d);
		done += got;
		run->rows_this_epoch += got;
		run->result.rows_read += got;
		if (run->cb.should_stop && run->cb.should_stop(run->cb.ctx))
			return sae_error(err, SAE_ERR_CANCELLED, "training cancelled");
	}
	return SAE_OK;
}

/* New half + storage, shuffled together; keep one half, serve the other. */
static int
refill(SaeRun *run, SaeError *err)
{
	SaeBackend *be = run->be;
	int64_t		n = 2 * run->half;
	size_t		d = run->cfg.d_in;
	int			rc = fill_rows(run, run->raw, run->half, err);

	if (rc != SAE_OK)
		return rc;
	for (int64_t i = 0; i < n; i++)
		run->perm_host[i] = (int32_t) i;
	for (int64_t i = n - 1; i > 0; i--)
	{
		uint64_t	r = sae_hash3(run->cfg.seed, SAE_STREAM_SHUFFLE, run->shuffle_count++);
		int64_t		j = (int64_t) (r % (uint64_t) (i + 1));
		int32_t		tmp = run->perm_host[i];

		run->perm_host[i] = run->perm_host[j];
		run->perm_host[j] = tmp;
	}
	be->to_device(be, run->perm, run->perm_host, sizeof(int32_t) * n);
	be->gather_rows(be, run->mix, run->raw, run->perm, (int) n, (int) d);
	be->copy(be, run->raw + (size_t) run->half * d, run->mix, sizeof(float) * run->half * d);
	run->serve_pos = run->half;
	return SAE_OK;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* SAELens's start-up prints (saelens.md §1.2). */
static void
startup_notices(SaeRun *run)
{
	const SaeConfig *c = &run->cfg;
	int64_t		steps = sae_config_total_steps(c);
	char		a[64],
				b[64],
				e[64];

	notice(run, "Run name: %s", c->run_name);
	sae_format_pyfloat((double) (c->store_batch_size * c->context_size * c->n_batches_in_buffer) / 1e6, a, sizeof(a));
	notice(run, "n_tokens_per_buffer (millions): %s", a);
	sae_format_pyfloat((double) (c->store_batch_size * c->n_batches_in_buffer) / 1e6, b, sizeof(b));
	notice(run, "Lower bound: n_contexts_per_buffer (millions): %s", b);
	notice(run, "Total training steps: %" PRId64, steps);
	notice(run, "Total wandb updates: %" PRId64, steps / c->wandb_log_frequency);
	sae_format_pyfloat((double) (c->feature_sampling_window * c->context_size * c->train_batch_size) / 1e6, e, sizeof(e));
	notice(run, "n_tokens_per_feature_sampling_window (millions): %s", e);
	sae_format_pyfloat((double) (c->dead_feature_window * c->context_size * c->train_batch_size) / 1e6, e, sizeof(e));
	notice(run, "n_tokens_per_dead_feature_window (millions): %s", e);
	notice(run, "We will reset the sparsity calculation %" PRId64 " times.", steps / c->feature_sampling_window);
	notice(run, "Number tokens in sparsity calculation window: %.2e",
		   (double) (c->feature_sampling_window * c->train_batch_size));
	if (c->use_ghost_grads)
		notice(run, "Using Ghost Grads.");
}

void
sae_run_start_from(SaeRun *run, const float *w_enc, const float *b_enc,
				   const float *w_dec, const float *b_dec)
{
	sae_trainer_set_params(run->trainer, w_enc, b_enc, w_dec, b_dec);
	run->pretrained = true;
}

/* b_dec from the first half-buffer (the storage half), as SAELens does. */
static int
init_b_dec(SaeRun *run, SaeError *err)
{
	float	   *storage = run->raw + (size_t) run->half * run->cfg.d_in;
	double		objective = 0;
	int			rc = fill_rows(run, storage, run->half, err);

	if (rc != SAE_OK)
		return rc;
	if (run->pretrained)
	{
		notice(run, "b_dec: kept from the pretrained weights");
		return SAE_OK;
	}
	rc = sae_trainer_init_b_dec(run->trainer, storage, run->half, &objective, err);
	if (rc != SAE_OK)
		return rc;
	switch (run->cfg.b_dec_init_method)
	{
		case SAE_BDEC_GEOMETRIC_MEDIAN:
			notice(run, "b_dec: geometric median of %" PRId64 " activations (100 Weiszfeld iterations), objective value %.4f",
				   run->half, objective);
			break;
		case SAE_BDEC_MEAN:
			notice(run, "Reinitializing b_dec with mean of activations");
			break;
		default:
			notice(run, "Warning: We are initializing b_dec to zeros. This is probably not what you want.");
	}
	return SAE_OK;
}

static void
format_duration(double s, char *buf, size_t size)
{
	int64_t		t = (int64_t) (s + 0.5);

	snprintf(buf, size, "%" PRId64 ":%02d:%02d", t / 3600, (int) (t / 60 % 60), (int) (t % 60));
}

static void
progress_notice(SaeRun *run, const SaeStepStats *st, double elapsed)
{
	int64_t		total = run->cfg.total_training_tokens;
	double		tps = elapsed > 0 ? st->n_tokens / elapsed : 0;
	char		eta[32];

	format_duration(tps > 0 ? (double) (total - st->n_tokens) / tps : 0, eta, sizeof(eta));
	notice(run, "step %" PRId64 "/%" PRId64 " | %.0f tokens/s | MSE Loss %.3f | L1 %.3f | L0 %.1f | ETA %s",
		   st->step + 1, (total + run->cfg.train_batch_size - 1) / run->cfg.train_batch_size,
		   tps, st->mse_loss, run->cfg.l1_coefficient * st->l1_loss, st->l0, eta);
}

/*
 * SAELens: thresholds range(0, total, total // n)[1:]; after a step, the
 * first threshold passed is saved and dropped (at most one per step, so
 * checkpoints lag when thresholds are closer than a batch).
 */
static int
maybe_checkpoint(SaeRun *run, int64_t n_tokens, SaeError *err)
{
	int64_t		total = run->cfg.total_training_tokens;
	int64_t		every,
				threshold;

	if (run->cfg.n_checkpoints <= 0 || run->cb.checkpoint == NULL)
		return SAE_OK;
	every = total / run->cfg.n_checkpoints;
	threshold = every * (run->next_checkpoint + 1);
	if (every <= 0 || threshold >= total || n_tokens <= threshold)
		return SAE_OK;
	run->next_checkpoint++;
	sae_trainer_finalize(run->trainer);
	return run->cb.checkpoint(run->cb.ctx, run->trainer, n_tokens, err);
}

int
sae_run_begin(SaeRun *run, SaeError *err)
{
	int			rc;

	memset(&run->last, 0, sizeof(run->last));
	if (run->cfg.verbose)
		startup_notices(run);
	run->result.epochs = 1;
	if ((rc = init_b_dec(run, err)) != SAE_OK)
		return rc;
	run->start = now_seconds();
	return sae_backend_check(run->be, err);
}

int
sae_run_step(SaeRun *run, bool *done, SaeError *err)
{
	const SaeConfig *c = &run->cfg;
	size_t		d = c->d_in;
	SaeStepStats *st = &run->last;
	SaeSparsityStats sp;
	bool		sparsity_step;
	int			rows;
	int			rc;

	*done = st->n_tokens >= c->total_training_tokens;
	if (*done)
		return SAE_OK;
	if (run->cb.should_stop && run->cb.should_stop(run->cb.ctx))
		return sae_error(err, SAE_ERR_CANCELLED, "training cancelled");
	if (run->serve_pos >= 2 * run->half && (rc = refill(run, err)) != SAE_OK)
		return rc;
	rows = (int) (2 * run->half - run->serve_pos < c->train_batch_size
				  ? 2 * run->half - run->serve_pos : c->train_batch_size);
	sparsity_step = (run->result.steps + 1) % c->feature_sampling_window == 0;
	if (sparsity_step)
		sae_trainer_sparsity(run->trainer, &sp, true);
	sae_trainer_step(run->trainer, run->mix + (size_t) run->serve_pos * d, rows, st);
	if ((rc = sae_backend_check(run->be, err)) != SAE_OK)
		return rc;				/* a GPU fault: nothing of this step is logged */
	run->serve_pos += rows;
	run->result.steps++;
	run->result.sparse_steps += st->sparse_path;
	if (run->cb.log_step && (sparsity_step || run->result.steps % c->wandb_log_frequency == 0))
		run->cb.log_step(run->cb.ctx, st, sparsity_step ? &sp : NULL);
	if (run->cb.progress_every > 0 && run->result.steps % run->cb.progress_every == 0)
		progress_notice(run, st, now_seconds() - run->start);
	if (run->cb.evaluate && run->cb.evaluate_every > 0 &&
		run->result.steps % run->cb.evaluate_every == 0 &&
		(rc = run->cb.evaluate(run->cb.ctx, run->trainer, st, err)) != SAE_OK)
		return rc;
	return maybe_checkpoint(run, st->n_tokens, err);
}

void
sae_run_finish(SaeRun *run)
{
	SaeRunResult *r = &run->result;

	sae_trainer_finalize(run->trainer);
	r->seconds = now_seconds() - run->start;
	r->n_tokens = run->last.n_tokens;
	r->tokens_per_second = r->seconds > 0 ? r->n_tokens / r->seconds : 0;
	r->last = run->last;
	sae_trainer_sparsity(run->trainer, &r->sparsity, false);
	r->dead_features = sae_trainer_dead_features(run->trainer);
}

int
sae_run_execute(SaeRun *run, SaeError *err)
{
	bool		done = false;
	int			rc;

	if ((rc = sae_run_begin(run, err)) != SAE_OK)
		return rc;
	while (!done)
		if ((rc = sae_run_step(run, &done, err)) != SAE_OK)
			return rc;
	sae_run_finish(run);
	return SAE_OK;
}

int
sae_runs_execute(SaeRun **runs, int n, SaeError *err)
{
	int			rc;
	int			running = n;

	for (int i = 0; i < n; i++)
		if ((rc = sae_run_begin(runs[i], err)) != SAE_OK)
			return rc;
	while (running > 0)
	{
		running = 0;
		for (int i = 0; i < n; i++)
		{
			bool		done;

			if ((rc = sae_run_step(runs[i], &done, err)) != SAE_OK)
				return rc;
			running += !done;
		}
	}
	for (int i = 0; i < n; i++)
		sae_run_finish(runs[i]);
	return SAE_OK;
}
