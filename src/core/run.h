/*
 * run.h — a whole training run: the shuffle buffer, b_dec initialisation,
 * the step loop, logging, checkpoints, progress and cancellation.
 *
 * The glue supplies activations through SaeSource and hears about the run
 * through SaeRunCallbacks; everything else happens here.  A SaeRun owns its
 * trainer and buffers: sae_run_destroy frees them whenever it is called.
 */
#ifndef SAE_RUN_H
#define SAE_RUN_H

#include "trainer.h"

typedef struct SaeSource
{
	void	   *ctx;

	/*
	 * Copy up to max_rows activation rows (d_in floats each) into host memory
	 * at dst; return how many, 0 at the end of the data, -1 on error.
	 */
	int64_t		(*read) (void *ctx, float *dst, int64_t max_rows, SaeError *err);
	/* Start again from the first row (a new epoch); 0 or an error code. */
	int			(*rewind) (void *ctx, SaeError *err);

	/*
	 * Optional, for sources whose rows are in a backend's memory (a
	 * model's activations): read, but into that backend's memory at dst.
	 * Used when the run's backend shares it (sae_backends_share_memory),
	 * so the rows never leave the GPU.
	 */
	int64_t		(*read_device) (void *ctx, float *dst, int64_t max_rows, SaeError *err);
	SaeBackend *memory;			/* whose memory read_device's rows are in */
} SaeSource;

typedef struct SaeRunCallbacks
{
	void	   *ctx;
	/* true when the user cancelled; the run then stops with SAE_ERR_CANCELLED */
	bool		(*should_stop) (void *ctx);
	/* one line for the user (start-up prints, epochs, progress) */
	void		(*notice) (void *ctx, const char *message);
	/* a train_log row; sparsity is NULL except on feature-sampling steps */
	void		(*log_step) (void *ctx, const SaeStepStats *st, const SaeSparsityStats *sparsity);
	/* save a checkpoint of the trainer's parameters */
	int			(*checkpoint) (void *ctx, SaeTrainer *t, int64_t n_tokens, SaeError *err);
	/* a progress notice every this many steps (0: none) */
	int64_t		progress_every;
	/* evaluation every evaluate_every steps (0 or evaluate NULL: none) */
	int			(*evaluate) (void *ctx, SaeTrainer *t, const SaeStepStats *st, SaeError *err);
	int64_t		evaluate_every;
} SaeRunCallbacks;

typedef struct SaeRunResult
{
	int64_t		steps;
	int64_t		n_tokens;
	int64_t		rows_read;		/* activation rows read from the source */
	int64_t		epochs;			/* passes over the source started */
	double		seconds;		/* training loop wall time */
	double		tokens_per_second;
	SaeStepStats last;			/* metrics of the final step */
	SaeSparsityStats sparsity;	/* the final feature-density window */
	int64_t		dead_features;	/* at the end */
	int64_t		sparse_steps;	/* steps that took the sparse path */
} SaeRunResult;

typedef struct SaeRun SaeRun;

int			sae_run_create(const SaeConfig *cfg, SaeBackend *be, const SaeSource *src,
						   const SaeRunCallbacks *cb, SaeRun **out, SaeError *err);
/*
 * Continue from trained weights (host, SAELens layout) instead of the
 * fresh init: b_dec is then kept, not re-initialised from the data.
 */
void		sae_run_start_from(SaeRun *run, const float *w_enc, const float *b_enc,
							   const float *w_dec, const float *b_dec);
/* The whole run: begin, steps until the token budget is spent, finish. */
int			sae_run_execute(SaeRun *run, SaeError *err);

/* The same in pieces: start-up (b_dec from the first half-buffer), one step, the results. */
int			sae_run_begin(SaeRun *run, SaeError *err);
int			sae_run_step(SaeRun *run, bool *done, SaeError *err);
void		sae_run_finish(SaeRun *run);

/*
 * Several runs that share one activation source (one per hook of a
 * multi-layer model source): begun together and stepped in turn, so that
 * each takes its rows from the same forward passes.
 */
int			sae_runs_execute(SaeRun **runs, int n, SaeError *err);
SaeTrainer *sae_run_trainer(SaeRun *run);
const SaeRunResult *sae_run_result(const SaeRun *run);
void		sae_run_destroy(SaeRun *run);

/* Everything a run will allocate on its backend, in bytes (for the budget). */
size_t		sae_run_memory_bytes(const SaeConfig *cfg);

#endif
