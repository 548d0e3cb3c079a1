/*
 * config.c — the table of training keys: names, types, ranges, defaults.
 *
 * One table drives parsing, validation and the normalized JSON output, so a
 * key is added in exactly one place.  Names and meanings are SAELens's
 * (reference/saelens.md §1.1 and the seed fork's §8); keys that only make
 * sense for a language-model source are accepted but checked in
 * sae_config_finish.
 */
#include "config.h"
#include "device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_NULLABLE 0
#define NULLABLE 1				/* null is stored as 0 (or "", NaN) */
#define NULLABLE_NEG 2			/* an int where 0 is a value: null is stored as -1 */

typedef struct KeyDef
{
	const char *name;
	SaeKeyType	type;
	size_t		offset;
	size_t		size;			/* strings: buffer size; enums: 0 */
	double		min;			/* numbers: inclusive lower bound */
	double		max;			/* numbers: inclusive upper bound */
	int			nullable;
	const char *const *choices; /* enums: names in enum order; NULL ends */
} KeyDef;

static const char *const bdec_choices[] = {"geometric_median", "mean", "zeros", NULL};
static const char *const lr_choices[] = {"constant", "cosineannealing", "cosineannealingwarmrestarts", NULL};
static const char *const sae_type_choices[] = {"unit_norm_sae", "tanh_sae", NULL};
static const char *const mse_norm_choices[] = {"dense_batch", NULL};
static const char *const l1_norm_choices[] = {"l2_squared", NULL};

#define OFF(f) offsetof(SaeConfig, f)
#define STR(f) SAE_KEY_STRING, OFF(f), sizeof(((SaeConfig *) 0)->f), 0, 0
#define INT(f, lo, hi) SAE_KEY_INT, OFF(f), 0, lo, hi
#define REAL(f, lo, hi) SAE_KEY_REAL, OFF(f), 0, lo, hi
#define BOOL(f) SAE_KEY_BOOL, OFF(f), 0, 0, 0
#define ENUM(f) SAE_KEY_ENUM, OFF(f), 0, 0, 0
#define BIG 9.0e15				/* integers above this lose precision in JSON */

static const KeyDef keys[] = {
	{"activations_table", STR(activations_table), NULLABLE, NULL},
	{"activations_column", STR(activations_column), NULLABLE, NULL},
	{"model_name", STR(model_name), NULLABLE, NULL},
	{"dataset_path", STR(dataset_path), NULLABLE, NULL},
	{"is_dataset_tokenized", BOOL(is_dataset_tokenized), NOT_NULLABLE, NULL},
	{"hook_point", STR(hook_point), NULLABLE, NULL},
	{"hook_point_layer", INT(hook_point_layer, 0, 1e6), NOT_NULLABLE, NULL},
	{"hook_point_head_index", INT(hook_point_head_index, 0, 1e4), NULLABLE_NEG, NULL},
	{"prepend_bos", BOOL(prepend_bos), NOT_NULLABLE, NULL},
	{"context_size", INT(context_size, 1, 1e7), NOT_NULLABLE, NULL},
	{"d_in", INT(d_in, 1, 1e6), NOT_NULLABLE, NULL},
	{"expansion_factor", INT(expansion_factor, 1, 1e6), NULLABLE, NULL},
	{"d_sae", INT(d_sae, 1, 1e8), NULLABLE, NULL},
	{"b_dec_init_method", ENUM(b_dec_init_method), NOT_NULLABLE, bdec_choices},
	{"sae_type", ENUM(sae_type), NOT_NULLABLE, sae_type_choices},
	{"noise_scale", REAL(noise_scale, 0, 1e6), NOT_NULLABLE, NULL},
	{"apply_b_dec_to_input", BOOL(apply_b_dec_to_input), NOT_NULLABLE, NULL},
	{"decoder_orthogonal_init", BOOL(decoder_orthogonal_init), NOT_NULLABLE, NULL},
	{"mse_loss_normalization", ENUM(mse_dense_batch), NULLABLE, mse_norm_choices},
	{"l1_coefficient", REAL(l1_coefficient, 0, 1e6), NOT_NULLABLE, NULL},
	{"lp_norm", REAL(lp_norm, 1e-3, 1e3), NOT_NULLABLE, NULL},
	{"l1_loss_normalization", ENUM(l1_l2_squared), NULLABLE, l1_norm_choices},
	{"lr", REAL(lr, 1e-12, 1e3), NOT_NULLABLE, NULL},
	{"lr_scheduler_name", ENUM(lr_scheduler_name), NOT_NULLABLE, lr_choices},
	{"lr_warm_up_steps", INT(lr_warm_up_steps, 0, BIG), NOT_NULLABLE, NULL},
	{"lr_decay_steps", INT(lr_decay_steps, 0, BIG), NOT_NULLABLE, NULL},
	{"lr_end", REAL(lr_end, 0, 1e3), NULLABLE, NULL},
	{"n_restart_cycles", INT(n_restart_cycles, 1, 1e6), NOT_NULLABLE, NULL},
	{"adam_beta1", REAL(adam_beta1, 0, 0.999999), NOT_NULLABLE, NULL},
	{"adam_beta2", REAL(adam_beta2, 0, 0.999999), NOT_NULLABLE, NULL},
	{"train_batch_size", INT(train_batch_size, 1, 1e7), NOT_NULLABLE, NULL},
	{"n_batches_in_buffer", INT(n_batches_in_buffer, 2, 1e6), NOT_NULLABLE, NULL},
	{"store_batch_size", INT(store_batch_size, 1, 1e6), NOT_NULLABLE, NULL},
	{"total_training_tokens", INT(total_training_tokens, 1, BIG), NOT_NULLABLE, NULL},
	{"use_ghost_grads", BOOL(use_ghost_grads), NOT_NULLABLE, NULL},
	{"feature_sampling_window", INT(feature_sampling_window, 1, BIG), NOT_NULLABLE, NULL},
	{"dead_feature_window", INT(dead_feature_window, 1, BIG), NOT_NULLABLE, NULL},
	{"dead_feature_threshold", REAL(dead_feature_threshold, 0, 1), NOT_NULLABLE, NULL},
	{"wandb_log_frequency", INT(wandb_log_frequency, 1, BIG), NOT_NULLABLE, NULL},
	{"eval_every_n_wandb_logs", INT(eval_every_n_wandb_logs, 0, BIG), NOT_NULLABLE, NULL},
	{"n_eval_batches", INT(n_eval_batches, 1, 1e6), NOT_NULLABLE, NULL},
	{"log_to_wandb", BOOL(log_to_wandb), NOT_NULLABLE, NULL},
	{"wandb_project", STR(wandb_project), NULLABLE, NULL},
	{"run_name", STR(run_name), NULLABLE, NULL},
	{"n_checkpoints", INT(n_checkpoints, 0, 1e4), NOT_NULLABLE, NULL},
	{"checkpoint_path", STR(checkpoint_path), NULLABLE, NULL},
	{"from_pretrained_run", INT(from_pretrained_run, 1, BIG), NULLABLE, NULL},
	{"seed", INT(seed, -BIG, BIG), NOT_NULLABLE, NULL},
	{"device", STR(device), NOT_NULLABLE, NULL},
	{"allow_tf32", BOOL(allow_tf32), NOT_NULLABLE, NULL},
	{"dtype", STR(dtype), NOT_NULLABLE, NULL},
	{"verbose", BOOL(verbose), NOT_NULLABLE, NULL},
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* SAELens v1.0 defaults; where we differ, the comment says why. */
void
sae_config_defaults(SaeConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->is_dataset_tokenized = true;
	cfg->context_size = 128;
	cfg->d_in = 512;
	cfg->expansion_factor = 4;
	cfg->b_dec_init_method = SAE_BDEC_GEOMETRIC_MEDIAN;
	cfg->sae_type = SAE_TYPE_UNIT_NORM;
	cfg->apply_b_dec_to_input = true;
	cfg->l1_coefficient = 1e-3;
	cfg->lp_norm = 1;
	cfg->lr = 3e-4;
	cfg->lr_scheduler_name = SAE_LR_CONSTANT;
	cfg->lr_warm_up_steps = 500;
	cfg->lr_end = NAN;
	cfg->n_restart_cycles = 1;
	cfg->adam_beta1 = 0;
	cfg->adam_beta2 = 0.999;
	cfg->train_batch_size = 4096;
	cfg->n_batches_in_buffer = 20;
	cfg->store_batch_size = 32;
	cfg->total_training_tokens = 2000000;
	cfg->feature_sampling_window = 2000;
	cfg->dead_feature_window = 1000;
	cfg->dead_feature_threshold = 1e-8;
	cfg->wandb_log_frequency = 10;
	cfg->log_to_wandb = true;
	strcpy(cfg->wandb_project, "mats_sae_training_language_model");
	strcpy(cfg->checkpoint_path, "checkpoints");
	cfg->seed = 42;
	cfg->hook_point_head_index = -1;
	cfg->prepend_bos = true;
	cfg->eval_every_n_wandb_logs = 10;	/* SAELens v1 evaluates every wandb_log_frequency * 10 steps */
	cfg->n_eval_batches = 10;
	strcpy(cfg->device, "cpu");
	/* SAELens v1.0 spells it "torch.float32"; the plain name is what people type */
	strcpy(cfg->dtype, "float32");
	cfg->verbose = true;
	/* -1: "not given", resolved in sae_config_finish */
	cfg->mse_dense_batch = false;
	cfg->d_sae = 0;
}

/* Levenshtein distance, for "did you mean" hints. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t		la = strlen(a),
				lb = strlen(b);
	size_t		row[128];

	if (lb >= 127 || la >= 127)
		return (size_t) -1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++)
	{
		size_t		diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++)
		{
			size_t		up = row[j];
			size_t		best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *
sae_config_nearest_key(const char *key)
{
	const char *best = NULL;
	size_t		best_dist = (size_t) -1;

	for (size_t i = 0; i < N_KEYS; i++)
	{
		size_t		dist = edit_distance(key, keys[i].name);

		if (dist < best_dist)
		{
			best_dist = dist;
			best = keys[i].name;
		}
	}
	if (best != NULL && best_dist <= 2 + strlen(key) / 4)
		return best;
	return NULL;
}

static const KeyDef *
find_key(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* "a", "b" or "c" — the list of choices for a hint. */
static void
format_choices(const char *const *choices, char *buf, size_t size)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (int i = 0; choices[i] != NULL && used < size; i++)
		used += snprintf(buf + used, size - used, "%s\"%s\"",
						 i == 0 ? "" : (choices[i + 1] == NULL ? " or " : ", "),
						 choices[i]);
}

static const char *
type_name(SaeKeyType type)
{
	switch (type)
	{
		case SAE_KEY_INT:
			return "an integer";
		case SAE_KEY_REAL:
			return "a number";
		case SAE_KEY_BOOL:
			return "a boolean";
		default:
			return "a string";
	}
}

static int
wrong_type(const KeyDef *k, SaeError *err)
{
	sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"%s\" must be %s%s",
			  k->name, type_name(k->type), k->nullable ? " or null" : "");
	if (k->choices)
	{
		char		list[256];

		format_choices(k->choices, list, sizeof(list));
		sae_error_hint(err, "Valid values are %s.", list);
	}
	return err ? err->code : SAE_ERR_INVALID_PARAMETER;
}

static int
set_number(SaeConfig *cfg, const KeyDef *k, double v, SaeError *err)
{
	char	   *field = (char *) cfg + k->offset;

	if (!isfinite(v) || v < k->min || v > k->max)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER,
				  "config key \"%s\" is out of range: %g", k->name, v);
		return sae_error_hint(err, "\"%s\" must be between %g and %g.",
							  k->name, k->min, k->max);
	}
	if (k->type == SAE_KEY_INT)
	{
		if (v != floor(v))
		{
			sae_error(err, SAE_ERR_INVALID_PARAMETER,
					  "config key \"%s\" must be an integer, not %g", k->name, v);
			return sae_error_hint(err, "Write \"%s\" without a fractional part.", k->name);
		}
		*(int64_t *) field = (int64_t) v;
	}
	else
		*(double *) field = v;
	return SAE_OK;
}

/* Only float32 is implemented; the other torch dtypes are named as such. */
static int
set_dtype(SaeConfig *cfg, const char *s, SaeError *err)
{
	static const char *const others[] = {"float64", "float16", "bfloat16", NULL};
	const char *bare = strncmp(s, "torch.", 6) == 0 ? s + 6 : s;

	if (strcmp(bare, "float32") == 0)
	{
		strcpy(cfg->dtype, "float32");
		return SAE_OK;
	}
	for (int i = 0; others[i] != NULL; i++)
		if (strcmp(bare, others[i]) == 0)
		{
			sae_error(err, SAE_ERR_NOT_SUPPORTED,
					  "dtype \"%s\" is not supported", s);
			return sae_error_hint(err, "Use \"float32\" (or \"torch.float32\").");
		}
	sae_error(err, SAE_ERR_INVALID_PARAMETER, "invalid value for config key \"dtype\": \"%s\"", s);
	return sae_error_hint(err, "Use \"float32\" (or \"torch.float32\").");
}

/* Map a string to an enum index or a checked string value. */
static int
set_string(SaeConfig *cfg, const KeyDef *k, const char *s, SaeError *err)
{
	char	   *field = (char *) cfg + k->offset;

	if (k->choices)
	{
		for (int i = 0; k->choices[i] != NULL; i++)
		{
			if (strcmp(s, k->choices[i]) != 0)
				continue;
			if (k->type == SAE_KEY_ENUM && k->choices == mse_norm_choices)
				cfg->mse_dense_batch = true;
			else if (k->type == SAE_KEY_ENUM && k->choices == l1_norm_choices)
				cfg->l1_l2_squared = true;
			else if (k->type == SAE_KEY_ENUM)
				*(int *) field = i;
			else
				strcpy(field, s);
			return SAE_OK;
		}
		{
			char		list[256];

			format_choices(k->choices, list, sizeof(list));
			sae_error(err, SAE_ERR_INVALID_PARAMETER,
					  "invalid value for config key \"%s\": \"%s\"", k->name, s);
			return sae_error_hint(err, "Valid values are %s%s.", list,
								  k->nullable ? " or null" : "");
		}
	}
	if (strlen(s) >= k->size)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER,
				  "config key \"%s\" is too long (%zu bytes)", k->name, strlen(s));
		return sae_error_hint(err, "Use at most %zu bytes.", k->size - 1);
	}
	if (strcmp(k->name, "dtype") == 0)
		return set_dtype(cfg, s, err);
	if (strcmp(k->name, "device") == 0)
	{
		SaeDeviceRequest req;

		if (sae_device_parse(s, &req, err) != SAE_OK)
			return err->code;
	}
	strcpy(field, s);
	return SAE_OK;
}

/* Unset a nullable key. */
static void
set_null(SaeConfig *cfg, const KeyDef *k)
{
	char	   *field = (char *) cfg + k->offset;

	switch (k->type)
	{
		case SAE_KEY_STRING:
			field[0] = '\0';
			break;
		case SAE_KEY_INT:
			*(int64_t *) field = k->nullable == NULLABLE_NEG ? -1 : 0;
			break;
		case SAE_KEY_REAL:
			*(double *) field = NAN;
			break;
		case SAE_KEY_ENUM:
			if (k->choices == mse_norm_choices)
				cfg->mse_dense_batch = false;
			else if (k->choices == l1_norm_choices)
				cfg->l1_l2_squared = false;
			break;
		case SAE_KEY_BOOL:
			break;
	}
}

int
sae_config_set(SaeConfig *cfg, const char *key, char kind, double number,
			   bool boolean, const char *string, SaeError *err)
{
	const KeyDef *k = find_key(key);

	if (k == NULL)
	{
		const char *near = sae_config_nearest_key(key);

		sae_error(err, SAE_ERR_INVALID_PARAMETER, "unknown config key \"%s\"", key);
		if (near)
			return sae_error_hint(err, "Perhaps you meant \"%s\".", near);
		return sae_error_hint(err, "The keys are SAELens's LanguageModelSAERunnerConfig fields; see the README.");
	}
	cfg->keys_set |= UINT64_C(1) << (k - keys);
	switch (kind)
	{
		case 'z':
			if (!k->nullable)
				return wrong_type(k, err);
			set_null(cfg, k);
			return SAE_OK;
		case 'n':
			if (k->type != SAE_KEY_INT && k->type != SAE_KEY_REAL)
				return wrong_type(k, err);
			return set_number(cfg, k, number, err);
		case 'b':
			if (k->type != SAE_KEY_BOOL)
				return wrong_type(k, err);
			*(bool *) ((char *) cfg + k->offset) = boolean;
			return SAE_OK;
		case 's':
			if (k->type != SAE_KEY_STRING && k->type != SAE_KEY_ENUM)
				return wrong_type(k, err);
			return set_string(cfg, k, string, err);
		default:
			return wrong_type(k, err);
	}
}

bool
sae_config_key_given(const SaeConfig *cfg, const char *name)
{
	const KeyDef *k = find_key(name);

	return k != NULL && (cfg->keys_set & (UINT64_C(1) << (k - keys))) != 0;
}

/*
 * Python's repr() of a float: the shortest digits that round-trip, fixed
 * notation for exponents -4..15, else d.ddde-XX.  SAELens puts repr(lr) and
 * repr(l1_coefficient) into the run name, and users search runs by it.
 */
void
sae_format_pyfloat(double v, char *buf, size_t size)
{
	char		sci[64];
	char		digits[32];
	int			exp10;
	int			nd = 0;

	for (int prec = 0; prec < 17; prec++)
	{
		snprintf(sci, sizeof(sci), "%.*e", prec, v);
		if (strtod(sci, NULL) == v)
			break;
	}
	/* sci is [-]d[.ddd]e[+-]XX */
	{
		const char *p = sci;
		bool		neg = (*p == '-');

		if (neg)
			p++;
		for (; *p && *p != 'e'; p++)
			if (*p != '.')
				digits[nd++] = *p;
		digits[nd] = '\0';
		exp10 = atoi(p + 1);
		while (nd > 1 && digits[nd - 1] == '0')
			digits[--nd] = '\0';
		if (exp10 >= -4 && exp10 < 16)
		{
			char		out[64];
			size_t		o = 0;

			if (neg)
				out[o++] = '-';
			if (exp10 < 0)
			{
				out[o++] = '0';
				out[o++] = '.';
				for (int i = -1; i > exp10; i--)
					out[o++] = '0';
				for (int i = 0; i < nd; i++)
					out[o++] = digits[i];
			}
			else
			{
				for (int i = 0; i <= exp10; i++)
					out[o++] = i < nd ? digits[i] : '0';
				out[o++] = '.';
				if (nd > exp10 + 1)
					for (int i = exp10 + 1; i < nd; i++)
						out[o++] = digits[i];
				else
					out[o++] = '0';
			}
			out[o] = '\0';
			snprintf(buf, size, "%s", out);
		}
		else
			snprintf(buf, size, "%s%c%s%s%se%c%02d", neg ? "-" : "", digits[0],
					 nd > 1 ? "." : "", nd > 1 ? digits + 1 : "", "",
					 exp10 < 0 ? '-' : '+', abs(exp10));
	}
}

int64_t
sae_config_total_steps(const SaeConfig *cfg)
{
	return cfg->total_training_tokens / cfg->train_batch_size;
}

int64_t
sae_config_half_buffer_rows(const SaeConfig *cfg)
{
	return (cfg->n_batches_in_buffer / 2) * cfg->store_batch_size * cfg->context_size;
}

static int
contradiction(SaeError *err, const char *hint, const char *fmt, const char *a, const char *b)
{
	sae_error(err, SAE_ERR_INVALID_PARAMETER, fmt, a, b);
	return sae_error_hint(err, "%s", hint);
}

/* Resolve d_sae and expansion_factor (SAELens: d_sae = d_in * expansion_factor). */
static int
finish_widths(SaeConfig *cfg, SaeError *err)
{
	bool		ef_set = sae_config_key_given(cfg, "expansion_factor") && cfg->expansion_factor > 0;

	if (cfg->d_sae > 0 && ef_set && cfg->d_sae != cfg->d_in * cfg->expansion_factor)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER,
				  "config keys \"d_sae\" and \"expansion_factor\" contradict each other");
		sae_error_detail(err, "d_sae is %lld but d_in * expansion_factor is %lld.",
						 (long long) cfg->d_sae, (long long) (cfg->d_in * cfg->expansion_factor));
		return sae_error_hint(err, "Give only one of them.");
	}
	if (cfg->d_sae <= 0)
	{
		if (cfg->expansion_factor <= 0)
			return contradiction(err, "Give d_sae or expansion_factor.",
								 "config keys \"%s\" and \"%s\" are both null",
								 "d_sae", "expansion_factor");
		cfg->d_sae = cfg->d_in * cfg->expansion_factor;
	}
	else
		cfg->expansion_factor = cfg->d_sae % cfg->d_in == 0 ? cfg->d_sae / cfg->d_in : 0;
	if (cfg->d_sae > 100000000)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "d_sae %lld is too large",
				  (long long) cfg->d_sae);
		return sae_error_hint(err, "d_sae must be at most 100000000.");
	}
	return SAE_OK;
}

/* A language model and a token dataset: the hook point, with {layer} filled in. */
static int
finish_model_source(SaeConfig *cfg, SaeError *err)
{
	if (cfg->activations_table[0] != '\0')
		return contradiction(err, "Train either on a table of activations or on a model and a dataset.",
							 "config keys \"%s\" and \"%s\" exclude each other",
							 "activations_table", "model_name");
	if (cfg->dataset_path[0] == '\0')
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"dataset_path\" is required with \"model_name\"");
		return sae_error_hint(err, "Name a token dataset made with sae_create_dataset or sae_load_dataset_file.");
	}
	if (cfg->hook_point[0] == '\0')
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"hook_point\" is required with \"model_name\"");
		return sae_error_hint(err, "Name a TransformerLens hook, e.g. \"blocks.0.hook_mlp_out\".");
	}
	if (cfg->n_hook_layers > 1 && strstr(cfg->hook_point, "{layer}") == NULL)
		return contradiction(err, "Write the hook point with {layer}, e.g. \"blocks.{layer}.hook_resid_pre\".",
							 "a list of \"%s\" needs \"%s\" with {layer}",
							 "hook_point_layer", "hook_point");
	if (cfg->n_hook_layers <= 1)
		sae_config_format_hook(cfg, cfg->hook_point_layer, cfg->hook_point, sizeof(cfg->hook_point));
	return SAE_OK;
}

/* Where the activations come from: a table, or a model over a token dataset. */
static int
finish_source(SaeConfig *cfg, SaeError *err)
{
	if (cfg->model_name[0] != '\0')
		return finish_model_source(cfg, err);
	if (cfg->dataset_path[0] != '\0')
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"dataset_path\" needs \"model_name\"");
		return sae_error_hint(err, "Name the model whose activations to train on.");
	}
	if (cfg->n_hook_layers > 1)
		return contradiction(err, "Train several layers on a model (\"model_name\"), or give one layer.",
							 "a list of \"%s\" needs \"%s\"", "hook_point_layer", "model_name");
	if (cfg->activations_table[0] == '\0')
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"activations_table\" or \"model_name\" is required");
		return sae_error_hint(err, "Name a table or view with a real[] or float8[] column of activations, or a model and a token dataset.");
	}
	if (cfg->activations_column[0] == '\0')
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"activations_column\" is required");
		return sae_error_hint(err, "Name the real[] or float8[] column of \"%s\" that holds the activations.",
							  cfg->activations_table);
	}
	if (cfg->hook_point[0] == '\0')
		snprintf(cfg->hook_point, sizeof(cfg->hook_point), "%s.%s",
				 cfg->activations_table, cfg->activations_column);
	return SAE_OK;
}

void
sae_config_format_hook(const SaeConfig *cfg, int64_t layer, char *out, size_t size)
{
	const char *at = strstr(cfg->hook_point, "{layer}");
	char		tmp[sizeof(cfg->hook_point)];

	if (at == NULL)
	{
		snprintf(tmp, sizeof(tmp), "%s", cfg->hook_point);
		snprintf(out, size, "%s", tmp);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.*s%lld%s", (int) (at - cfg->hook_point), cfg->hook_point,
			 (long long) layer, at + 7);
	snprintf(out, size, "%s", tmp);
}

int
sae_config_set_layers(SaeConfig *cfg, const int64_t *layers, int n, SaeError *err)
{
	const KeyDef *k = find_key("hook_point_layer");

	if (n < 1 || n > SAE_MAX_HOOK_LAYERS)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "config key \"hook_point_layer\" lists %d layers", n);
		return sae_error_hint(err, "List 1 to %d layers.", SAE_MAX_HOOK_LAYERS);
	}
	for (int i = 0; i < n; i++)
	{
		if (layers[i] < 0 || layers[i] > 1000000)
			return sae_error(err, SAE_ERR_INVALID_PARAMETER,
							 "config key \"hook_point_layer\": layer %lld is out of range",
							 (long long) layers[i]);
		for (int j = 0; j < i; j++)
			if (layers[j] == layers[i])
				return sae_error(err, SAE_ERR_INVALID_PARAMETER,
								 "config key \"hook_point_layer\" lists layer %lld twice",
								 (long long) layers[i]);
		cfg->hook_layers[i] = layers[i];
	}
	cfg->n_hook_layers = n;
	cfg->hook_point_layer = layers[0];
	cfg->keys_set |= UINT64_C(1) << (k - keys);
	return SAE_OK;
}

/* The seed fork: tanh_sae needs noise; unit_norm_sae has none. */
static int
finish_sae_type(SaeConfig *cfg, SaeError *err)
{
	if (cfg->sae_type == SAE_TYPE_TANH && cfg->noise_scale <= 0)
		return contradiction(err, "Set \"noise_scale\" > 0 (the seed uses 1) for tanh_sae.",
							 "config key \"%s\" = \"tanh_sae\" needs \"%s\" > 0",
							 "sae_type", "noise_scale");
	if (cfg->sae_type == SAE_TYPE_UNIT_NORM && cfg->noise_scale > 0)
		return contradiction(err, "Use \"sae_type\": \"tanh_sae\" to train with noise, or set \"noise_scale\" to 0.",
							 "config key \"%s\" = \"unit_norm_sae\" does not use \"%s\"",
							 "sae_type", "noise_scale");
	return SAE_OK;
}

/* The LR schedule must fit in the run (PyTorch would divide by zero). */
static int
finish_schedule(SaeConfig *cfg, SaeError *err)
{
	int64_t		total = sae_config_total_steps(cfg);

	if (isnan(cfg->lr_end))
		cfg->lr_end = cfg->lr / 10;
	if (total < 1)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER,
				  "total_training_tokens (%lld) is smaller than train_batch_size (%lld)",
				  (long long) cfg->total_training_tokens, (long long) cfg->train_batch_size);
		return sae_error_hint(err, "Train on at least one batch of tokens.");
	}
	if (cfg->lr_decay_steps > 0 && cfg->lr_end <= 0 && cfg->lr_scheduler_name != SAE_LR_CONSTANT)
		return contradiction(err, "Set \"lr_end\" > 0 or \"lr_decay_steps\" to 0.",
							 "config key \"%s\" > 0 needs \"%s\" > 0",
							 "lr_decay_steps", "lr_end");
	if (cfg->lr_scheduler_name != SAE_LR_CONSTANT &&
		cfg->lr_warm_up_steps + cfg->lr_decay_steps >= total)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER,
				  "lr_warm_up_steps + lr_decay_steps (%lld) leave no steps for the %s schedule",
				  (long long) (cfg->lr_warm_up_steps + cfg->lr_decay_steps),
				  lr_choices[cfg->lr_scheduler_name]);
		sae_error_detail(err, "The run has %lld steps (total_training_tokens / train_batch_size).",
						 (long long) total);
		return sae_error_hint(err, "Lower the warm-up or decay steps, or train on more tokens.");
	}
	if (cfg->lr_scheduler_name == SAE_LR_COSINE_RESTARTS &&
		(total - cfg->lr_warm_up_steps - cfg->lr_decay_steps) / cfg->n_restart_cycles < 1)
		return contradiction(err, "Lower \"n_restart_cycles\".",
							 "config key \"%s\" is larger than the steps of the \"%s\" phase",
							 "n_restart_cycles", "cosineannealingwarmrestarts");
	return SAE_OK;
}

int
sae_config_finish(SaeConfig *cfg, SaeError *err)
{
	int			rc;

	if ((rc = finish_source(cfg, err)) != SAE_OK ||
		(rc = finish_widths(cfg, err)) != SAE_OK ||
		(rc = finish_sae_type(cfg, err)) != SAE_OK ||
		(rc = finish_schedule(cfg, err)) != SAE_OK)
		return rc;
	if (2 * sae_config_half_buffer_rows(cfg) > INT32_MAX)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "the shuffle buffer is too large: %lld rows per half",
				  (long long) sae_config_half_buffer_rows(cfg));
		return sae_error_hint(err, "Lower n_batches_in_buffer, store_batch_size or context_size.");
	}
	if (cfg->run_name[0] == '\0')
	{
		char		l1[40],
					lr[40];

		sae_format_pyfloat(cfg->l1_coefficient, l1, sizeof(l1));
		sae_format_pyfloat(cfg->lr, lr, sizeof(lr));
		snprintf(cfg->run_name, sizeof(cfg->run_name), "%lld-L1-%s-LR-%s-Tokens-%.3e",
				 (long long) cfg->d_sae, l1, lr, (double) cfg->total_training_tokens);
	}
	return SAE_OK;
}

/* Append a JSON string literal, escaping what JSON requires. */
static size_t
json_string(char *buf, size_t size, size_t used, const char *s)
{
	used += snprintf(buf + used, used < size ? size - used : 0, "\"");
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			used += snprintf(buf + used, used < size ? size - used : 0, "\\%c", c);
		else if (c < 0x20)
			used += snprintf(buf + used, used < size ? size - used : 0, "\\u%04x", c);
		else
			used += snprintf(buf + used, used < size ? size - used : 0, "%c", c);
	}
	return used + snprintf(buf + used, used < size ? size - used : 0, "\"");
}

/* Append a JSON list of integers. */
static size_t
json_int_list(char *buf, size_t size, size_t used, const int64_t *v, int n)
{
	for (int i = 0; i < n; i++)
		used += snprintf(buf + used, used < size ? size - used : 0, "%s%lld", i ? ", " : "[",
						 (long long) v[i]);
	return used + snprintf(buf + used, used < size ? size - used : 0, "]");
}

/* Append one key's value. */
static size_t
json_value(const SaeConfig *cfg, const KeyDef *k, char *buf, size_t size, size_t used)
{
	const char *field = (const char *) cfg + k->offset;
	size_t		room = used < size ? size - used : 0;

	switch (k->type)
	{
		case SAE_KEY_INT:
			if ((k->nullable == NULLABLE && *(const int64_t *) field == 0) ||
				(k->nullable == NULLABLE_NEG && *(const int64_t *) field < 0))
				return used + snprintf(buf + used, room, "null");
			if (k->offset == OFF(hook_point_layer) && cfg->n_hook_layers > 1)
				return json_int_list(buf, size, used, cfg->hook_layers, cfg->n_hook_layers);
			return used + snprintf(buf + used, room, "%lld", (long long) *(const int64_t *) field);
		case SAE_KEY_REAL:
			if (isnan(*(const double *) field))
				return used + snprintf(buf + used, room, "null");
			{
				char		num[40];

				sae_format_pyfloat(*(const double *) field, num, sizeof(num));
				return used + snprintf(buf + used, room, "%s", num);
			}
		case SAE_KEY_BOOL:
			return used + snprintf(buf + used, room, "%s", *(const bool *) field ? "true" : "false");
		case SAE_KEY_ENUM:
			if (k->choices == mse_norm_choices)
				return cfg->mse_dense_batch ? json_string(buf, size, used, "dense_batch")
					: used + snprintf(buf + used, room, "null");
			if (k->choices == l1_norm_choices)
				return cfg->l1_l2_squared ? json_string(buf, size, used, "l2_squared")
					: used + snprintf(buf + used, room, "null");
			return json_string(buf, size, used, k->choices[*(const int *) field]);
		case SAE_KEY_STRING:
			if (k->nullable && field[0] == '\0')
				return used + snprintf(buf + used, room, "null");
			return json_string(buf, size, used, field);
	}
	return used;
}

size_t
sae_config_to_json(const SaeConfig *cfg, char *buf, size_t size)
{
	size_t		used = snprintf(buf, size, "{");

	for (size_t i = 0; i < N_KEYS; i++)
	{
		used += snprintf(buf + used, used < size ? size - used : 0, "%s", i ? ", " : "");
		used = json_string(buf, size, used, keys[i].name);
		used += snprintf(buf + used, used < size ? size - used : 0, ": ");
		used = json_value(cfg, &keys[i], buf, size, used);
	}
	used += snprintf(buf + used, used < size ? size - used : 0, "}");
	return used;
}
