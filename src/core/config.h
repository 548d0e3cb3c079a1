/*
 * config.h — a training run's configuration, with SAELens's names.
 *
 * The keys, their types, defaults and ranges live in one table in config.c;
 * the glue feeds it key/value pairs from jsonb, config_finish() fills derived
 * values and checks keys against each other, and config_to_json() writes the
 * normalized config (every default filled in) that sae.runs stores.
 */
#ifndef SAE_CONFIG_H
#define SAE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SAE_NAME_LEN 256
#define SAE_MAX_HOOK_LAYERS 64

typedef enum SaeBDecInit
{
	SAE_BDEC_GEOMETRIC_MEDIAN,
	SAE_BDEC_MEAN,
	SAE_BDEC_ZEROS
} SaeBDecInit;

typedef enum SaeLrScheduler
{
	SAE_LR_CONSTANT,
	SAE_LR_COSINE,
	SAE_LR_COSINE_RESTARTS
} SaeLrScheduler;

typedef enum SaeType
{
	SAE_TYPE_UNIT_NORM,
	SAE_TYPE_TANH
} SaeType;

typedef struct SaeConfig
{
	/* where activations come from */
	char		activations_table[SAE_NAME_LEN];
	char		activations_column[SAE_NAME_LEN];
	char		model_name[SAE_NAME_LEN];
	char		dataset_path[SAE_NAME_LEN];
	bool		is_dataset_tokenized;
	char		hook_point[2 * SAE_NAME_LEN + 2];	/* may hold {layer} */
	int64_t		hook_point_layer;	/* the first of hook_layers */
	int64_t		hook_layers[SAE_MAX_HOOK_LAYERS];	/* a list: one SAE per layer */
	int			n_hook_layers;	/* 0: one layer, hook_point_layer */
	int64_t		hook_point_head_index;	/* -1: all heads */
	int64_t		context_size;
	bool		prepend_bos;

	/* the SAE */
	int64_t		d_in;
	int64_t		expansion_factor;
	int64_t		d_sae;
	int			b_dec_init_method;	/* SaeBDecInit */
	int			sae_type;		/* SaeType */
	double		noise_scale;
	bool		apply_b_dec_to_input;
	bool		decoder_orthogonal_init;

	/* the loss */
	bool		mse_dense_batch;	/* mse_loss_normalization = "dense_batch" */
	double		l1_coefficient;
	double		lp_norm;
	bool		l1_l2_squared;	/* l1_loss_normalization = "l2_squared" */

	/* the optimiser and its schedule */
	double		lr;
	int			lr_scheduler_name;	/* SaeLrScheduler */
	int64_t		lr_warm_up_steps;
	int64_t		lr_decay_steps;
	double		lr_end;			/* NaN until config_finish: lr / 10 */
	int64_t		n_restart_cycles;
	double		adam_beta1;
	double		adam_beta2;

	/* batches and the shuffle buffer */
	int64_t		train_batch_size;
	int64_t		n_batches_in_buffer;
	int64_t		store_batch_size;
	int64_t		total_training_tokens;

	/* dead features, ghost grads, logging */
	bool		use_ghost_grads;
	int64_t		feature_sampling_window;
	int64_t		dead_feature_window;
	double		dead_feature_threshold;
	int64_t		wandb_log_frequency;
	int64_t		eval_every_n_wandb_logs;	/* evaluation (model runs) every this many logs; 0: none */
	int64_t		n_eval_batches;
	bool		log_to_wandb;
	char		wandb_project[SAE_NAME_LEN];
	char		run_name[SAE_NAME_LEN];
	int64_t		n_checkpoints;
	char		checkpoint_path[SAE_NAME_LEN];

	/* start from a trained run's weights instead of a fresh init (ours) */
	int64_t		from_pretrained_run;

	/* misc */
	int64_t		seed;
	char		device[32];		/* "cpu", "cuda", "cuda:N", "auto" (device.h) */
	bool		allow_tf32;		/* CUDA: TF32 tensor cores in the GEMMs (ours; torch's allow_tf32) */
	char		dtype[32];
	bool		verbose;

	uint64_t	keys_set;		/* bit i: keys[i] of config.c was given */
} SaeConfig;

typedef enum SaeKeyType
{
	SAE_KEY_INT,
	SAE_KEY_REAL,
	SAE_KEY_BOOL,
	SAE_KEY_STRING,
	SAE_KEY_ENUM
} SaeKeyType;

/* Fill cfg with SAELens v1.0 defaults (and ours where noted in config.c). */
void		sae_config_defaults(SaeConfig *cfg);

/*
 * Set one key.  Exactly one of the value arguments is used, according to
 * the JSON type the glue saw: kind 'n' number, 'b' boolean, 's' string,
 * 'z' null.  Unknown keys, wrong types and out-of-range values fail with
 * SAE_ERR_INVALID_PARAMETER and a message naming the key.
 */
int			sae_config_set(SaeConfig *cfg, const char *key, char kind,
						   double number, bool boolean, const char *string,
						   SaeError *err);

/* Was this key given explicitly (not defaulted)? */
bool		sae_config_key_given(const SaeConfig *cfg, const char *key);

/* hook_point_layer given as a list of n layers (one SAE each). */
int			sae_config_set_layers(SaeConfig *cfg, const int64_t *layers, int n, SaeError *err);

/* hook_point with {layer} replaced by layer (unchanged without {layer}). */
void		sae_config_format_hook(const SaeConfig *cfg, int64_t layer, char *out, size_t size);

/* Derive d_sae, lr_end, run_name; check keys against each other. */
int			sae_config_finish(SaeConfig *cfg, SaeError *err);

/* The normalized config as a JSON object; returns bytes needed (like snprintf). */
size_t		sae_config_to_json(const SaeConfig *cfg, char *buf, size_t size);

/* The known key closest to an unknown one (edit distance), or NULL. */
const char *sae_config_nearest_key(const char *key);

/* Python's repr() of a float, as SAELens prints numbers. */
void		sae_format_pyfloat(double v, char *buf, size_t size);

/* Derived quantities of SAELens's start-up prints. */
int64_t		sae_config_total_steps(const SaeConfig *cfg);
int64_t		sae_config_half_buffer_rows(const SaeConfig *cfg);

#endif
