/*
 * trainer.h — one SAE and its optimiser: initialisation, the training step,
 * learning-rate schedules, dead-feature tracking.
 *
 * This is SAELens v1.0's classic recipe (reference/saelens.md §1–2) plus the
 * seed fork's tanh_sae / noise / l2_squared options (§8).  A SaeTrainer owns
 * every buffer it allocates on its backend; sae_trainer_destroy frees them
 * all, so the glue can free a trainer from an error-cleanup callback at any
 * point.
 */
#ifndef SAE_TRAINER_H
#define SAE_TRAINER_H

#include "backend.h"
#include "config.h"
#include "error.h"

/* Metrics of one step, SAELens's W&B names in the comments. */
typedef struct SaeStepStats
{
	int64_t		step;			/* 0-based optimizer step */
	int64_t		n_tokens;		/* details/n_training_tokens after this step */
	int			batch_rows;
	double		lr;				/* details/current_learning_rate */
	double		mse_loss;		/* losses/mse_loss */
	double		l1_loss;		/* losses/l1_loss = mean_b S_b (without lambda) */
	double		ghost_grad_loss;	/* losses/ghost_grad_loss */
	double		overall_loss;	/* losses/overall_loss */
	double		l0;				/* metrics/l0 */
	double		explained_variance; /* 1 - SSE/SST about the batch mean */
	double		explained_variance_legacy;	/* mean_b of per-token ratios */
	double		explained_variance_std;
	double		l2_norm;		/* mean_b ||xhat_b|| */
	double		l2_ratio;		/* mean_b ||xhat_b||/||x_b|| */
	int64_t		dead_features;	/* sparsity/dead_features (mask used this step) */
	bool		sparse_path;	/* the step used the sparse decoder and backward */
} SaeStepStats;

/* Feature-density window summary (every feature_sampling_window steps). */
typedef struct SaeSparsityStats
{
	double		mean_log10_feature_sparsity;
	int64_t		below_1e5;
	int64_t		below_1e6;
} SaeSparsityStats;

typedef struct SaeTrainer SaeTrainer;

int			sae_trainer_create(const SaeConfig *cfg, SaeBackend *be,
							   int max_batch_rows, SaeTrainer **out, SaeError *err);
void		sae_trainer_destroy(SaeTrainer *t);

/* Kaiming-uniform init from cfg->seed (orthogonal decoder if asked), b_dec = 0. */
int			sae_trainer_init_params(SaeTrainer *t, SaeError *err);

/* Host copies of the parameters: W_enc d x m, b_enc m, W_dec m x d, b_dec d. */
void		sae_trainer_set_params(SaeTrainer *t, const float *w_enc, const float *b_enc,
								   const float *w_dec, const float *b_dec);
void		sae_trainer_get_params(SaeTrainer *t, float *w_enc, float *b_enc,
								   float *w_dec, float *b_dec);

/* Host copies of the gradients of the last step (after the decoder projection). */
void		sae_trainer_get_grads(SaeTrainer *t, float *w_enc, float *b_enc,
								  float *w_dec, float *b_dec);

/*
 * The sparse path is taken when at most this fraction of f is positive
 * (default SAE_SPARSE_DENSITY); 0 turns it off, 1 forces it.  Returns an
 * error if the index buffers cannot grow.
 */
int			sae_trainer_set_sparse_density(SaeTrainer *t, double max_density, SaeError *err);

/* Features dead now (not fired for more than dead_feature_window steps). */
int64_t		sae_trainer_dead_features(const SaeTrainer *t);

/* Ask should_stop(ctx) between long phases (the geometric median); NULL: never. */
void		sae_trainer_set_stop(SaeTrainer *t, bool (*should_stop) (void *), void *ctx);

/*
 * b_dec from n device rows of x: geometric median, mean or zeros (cfg).
 * *objective gets the geometric median's objective (sum of distances).
 */
int			sae_trainer_init_b_dec(SaeTrainer *t, const float *x, int64_t n,
								   double *objective, SaeError *err);

/* One optimizer step on `rows` device rows (rows <= max_batch_rows). */
void		sae_trainer_step(SaeTrainer *t, const float *x, int rows, SaeStepStats *st);

/* Called every feature_sampling_window steps: summarise and reset the counters. */
void		sae_trainer_sparsity(SaeTrainer *t, SaeSparsityStats *st, bool reset);

/* Per-feature firing rate of the current window (host array of m). */
void		sae_trainer_feature_density(SaeTrainer *t, float *rate);

/* Renormalise decoder rows (unit_norm_sae), as SAELens does before saving. */
void		sae_trainer_finalize(SaeTrainer *t);

/* Learning rate of optimizer step k, PyTorch SequentialLR semantics. */
double		sae_lr_at(const SaeConfig *cfg, int64_t total_steps, int64_t k);

/* Geometric median by Weiszfeld (SAELens: eps 1e-6, 100 iterations, start at the mean). */
int			sae_geometric_median(SaeBackend *be, const float *x, int64_t n, int d,
								 int maxiter, float *median_host, double *objective,
								 SaeError *err);

/* Bytes the trainer allocates for these shapes. */
size_t		sae_trainer_memory_bytes(int64_t d, int64_t m, int64_t batch_rows);

#endif
