/*
 * lm_config.c — reading a model's config.json into a SaeLmConfig.
 *
 * HF configs leave out keys that have defaults (GPT2Config and
 * GPTNeoConfig's __init__ arguments, reference/models.md §3.1 and §4.1), so
 * each key is looked up with its default and its aliases.  Values are
 * checked before anything is sized from them.
 */
#include "lm.h"
#include "json.h"
#include "mapfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on sizes read from a config, well above any GPT-2 or GPT-Neo. */
#define MAX_LAYERS 1024
#define MAX_WIDTH (1 << 17)
#define MAX_VOCAB (1 << 21)
#define MAX_POSITIONS (1 << 20)

const char *
sae_lm_arch_name(SaeLmArch arch)
{
	return arch == SAE_LM_ARCH_GPT2 ? "gpt2" : "gpt_neo";
}

/* The first of up to two keys present in the object, or NULL. */
static const SaeJson *
get2(const SaeJson *obj, const char *key, const char *alias)
{
	const SaeJson *v = sae_json_get(obj, key);

	if ((v == NULL || v->type == SAE_JSON_NULL) && alias)
		v = sae_json_get(obj, alias);
	return v && v->type != SAE_JSON_NULL ? v : NULL;
}

/* An integer key in [lo, hi], or def when absent or null. */
static int
get_int(const SaeJson *obj, const char *key, const char *alias, int def, int lo, int hi,
		int *out, SaeError *err)
{
	const SaeJson *v = get2(obj, key, alias);

	if (v == NULL)
	{
		*out = def;
		return SAE_OK;
	}
	if (v->type != SAE_JSON_NUMBER || !v->is_integer || v->integer < lo || v->integer > hi)
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "config.json: \"%s\" must be an integer from %d to %d",
				  key, lo, hi);
		return sae_error_hint(err, "Check the model's config.json.");
	}
	*out = (int) v->integer;
	return SAE_OK;
}

static int
get_bool(const SaeJson *obj, const char *key, bool def, bool *out, SaeError *err)
{
	const SaeJson *v = get2(obj, key, NULL);

	if (v == NULL)
		*out = def;
	else if (v->type != SAE_JSON_BOOL)
		return sae_error(err, SAE_ERR_INVALID_DATA, "config.json: \"%s\" must be true or false", key);
	else
		*out = v->boolean;
	return SAE_OK;
}

/* HF's activation_function names for the nonlinearities the engine has. */
static int
get_activation(const SaeJson *obj, SaeLmAct *act, SaeError *err)
{
	const SaeJson *v = get2(obj, "activation_function", NULL);
	const char *name = v && v->type == SAE_JSON_STRING ? v->string : "gelu_new";

	if (v && v->type != SAE_JSON_STRING)
		return sae_error(err, SAE_ERR_INVALID_DATA, "config.json: \"activation_function\" must be a string");
	if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0)
		*act = SAE_LM_GELU_NEW;
	else if (strcmp(name, "gelu") == 0)
		*act = SAE_LM_GELU;
	else if (strcmp(name, "relu") == 0)
		*act = SAE_LM_RELU;
	else
	{
		sae_error(err, SAE_ERR_NOT_SUPPORTED,
				  "config.json: activation_function \"%.64s\" is not supported", name);
		return sae_error_hint(err, "Supported: gelu_new, gelu_pytorch_tanh, gelu, relu.");
	}
	return SAE_OK;
}

/* model_type, or else the architecture class, to one of ours. */
static int
get_arch(const SaeJson *obj, SaeLmArch *arch, SaeError *err)
{
	const SaeJson *mt = sae_json_get(obj, "model_type");
	const SaeJson *archs = sae_json_get(obj, "architectures");
	const char *name = NULL;

	if (mt && mt->type == SAE_JSON_STRING)
		name = mt->string;
	else if (archs && archs->type == SAE_JSON_ARRAY && archs->count > 0 &&
			 archs->items[0].type == SAE_JSON_STRING)
		name = archs->items[0].string;
	if (name && (strcmp(name, "gpt2") == 0 || strncmp(name, "GPT2", 4) == 0))
		*arch = SAE_LM_ARCH_GPT2;
	else if (name && (strcmp(name, "gpt_neo") == 0 || strncmp(name, "GPTNeo", 6) == 0))
		*arch = SAE_LM_ARCH_GPT_NEO;
	else
	{
		sae_error(err, SAE_ERR_NOT_SUPPORTED, "config.json: model type \"%.64s\" is not supported",
				  name ? name : "(none)");
		return sae_error_hint(err, "Supported architectures: gpt2 (GPT2LMHeadModel) and gpt_neo (GPTNeoForCausalLM).");
	}
	return SAE_OK;
}

/*
 * GPT-Neo's per-layer attention kinds: attention_types is a list of
 * [[kinds...], repeat] pairs (GPTNeoConfig.expand_attention_types_params);
 * attention_layers, when present instead, is the expanded list.
 */
static int
get_neo_layers(const SaeJson *obj, SaeLmConfig *cfg, SaeError *err)
{
	const SaeJson *types = sae_json_get(obj, "attention_types");
	const SaeJson *layers = sae_json_get(obj, "attention_layers");
	int			n = 0;

	cfg->local = calloc(cfg->n_layers, sizeof(bool));
	if (cfg->local == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory reading config.json");
	if (types && types->type == SAE_JSON_ARRAY)
	{
		for (size_t i = 0; i < types->count; i++)
		{
			const SaeJson *pair = &types->items[i];

			if (pair->type != SAE_JSON_ARRAY || pair->count != 2 ||
				pair->items[0].type != SAE_JSON_ARRAY || !pair->items[1].is_integer ||
				pair->items[1].integer < 0 || pair->items[1].integer > MAX_LAYERS)
				goto bad;
			for (long long r = 0; r < pair->items[1].integer; r++)
				for (size_t k = 0; k < pair->items[0].count; k++)
				{
					const SaeJson *kind = &pair->items[0].items[k];

					if (kind->type != SAE_JSON_STRING || n >= cfg->n_layers)
						goto bad;
					if (strcmp(kind->string, "local") == 0)
						cfg->local[n] = true;
					else if (strcmp(kind->string, "global") != 0)
						goto bad;
					n++;
				}
		}
	}
	else if (layers && layers->type == SAE_JSON_ARRAY)
	{
		for (size_t i = 0; i < layers->count; i++)
		{
			if (layers->items[i].type != SAE_JSON_STRING || n >= cfg->n_layers)
				goto bad;
			cfg->local[n++] = strcmp(layers->items[i].string, "local") == 0;
		}
	}
	else
		n = cfg->n_layers;		/* all global */
	if (n == cfg->n_layers)
		return SAE_OK;
bad:
	sae_error(err, SAE_ERR_INVALID_DATA, "config.json: attention_types does not give \"global\" or \"local\" for each of the %d layers",
									cfg->n_layers);
	return sae_error_hint(err, "GPT-Neo configs list [[kinds], repeat] pairs, e.g. [[[\"global\", \"local\"], 12]].");
}

/* The keys of GPT2Config. */
static int
gpt2_config(const SaeJson *o, SaeLmConfig *c, SaeError *err)
{
	int			inner = 0;

	if (get_int(o, "n_embd", "hidden_size", 768, 1, MAX_WIDTH, &c->d_model, err) ||
		get_int(o, "n_layer", "num_hidden_layers", 12, 1, MAX_LAYERS, &c->n_layers, err) ||
		get_int(o, "n_head", "num_attention_heads", 12, 1, MAX_WIDTH, &c->n_heads, err) ||
		get_int(o, "n_inner", NULL, 0, 1, MAX_WIDTH, &inner, err) ||
		get_int(o, "n_positions", "max_position_embeddings", 1024, 1, MAX_POSITIONS, &c->n_positions, err) ||
		get_bool(o, "scale_attn_weights", true, &c->scale_attn, err) ||
		get_bool(o, "scale_attn_by_inverse_layer_idx", false, &c->scale_by_layer, err))
		return err->code;
	c->d_mlp = inner ? inner : 4 * c->d_model;
	return SAE_OK;
}

/* The keys of GPTNeoConfig. */
static int
neo_config(const SaeJson *o, SaeLmConfig *c, SaeError *err)
{
	int			inner = 0;

	if (get_int(o, "hidden_size", NULL, 2048, 1, MAX_WIDTH, &c->d_model, err) ||
		get_int(o, "num_layers", "num_hidden_layers", 24, 1, MAX_LAYERS, &c->n_layers, err) ||
		get_int(o, "num_heads", "num_attention_heads", 16, 1, MAX_WIDTH, &c->n_heads, err) ||
		get_int(o, "intermediate_size", NULL, 0, 1, MAX_WIDTH, &inner, err) ||
		get_int(o, "max_position_embeddings", NULL, 2048, 1, MAX_POSITIONS, &c->n_positions, err) ||
		get_int(o, "window_size", NULL, 256, 1, MAX_POSITIONS, &c->window_size, err))
		return err->code;
	c->d_mlp = inner ? inner : 4 * c->d_model;
	c->scale_attn = false;		/* GPT-Neo never scales its scores (models.md §4.3) */
	return get_neo_layers(o, c, err);
}

/* Parse config.json's text into cfg (cfg->local is malloc'd; free it). */
static int
parse_config(const SaeJson *o, SaeLmConfig *c, SaeError *err)
{
	double		eps = 1e-5;
	const SaeJson *v;

	memset(c, 0, sizeof(*c));
	if (o->type != SAE_JSON_OBJECT)
		return sae_error(err, SAE_ERR_INVALID_DATA, "config.json is not a JSON object");
	if (get_arch(o, &c->arch, err) ||
		(c->arch == SAE_LM_ARCH_GPT2 ? gpt2_config(o, c, err) : neo_config(o, c, err)) ||
		get_int(o, "vocab_size", NULL, 50257, 1, MAX_VOCAB, &c->d_vocab, err) ||
		get_int(o, "bos_token_id", NULL, 50256, 0, MAX_VOCAB, &c->bos_id, err) ||
		get_int(o, "eos_token_id", NULL, 50256, 0, MAX_VOCAB, &c->eos_id, err) ||
		get_bool(o, "tie_word_embeddings", true, &c->tied, err) ||
		get_activation(o, &c->act, err))
		return err->code;
	if ((v = get2(o, "layer_norm_epsilon", "layer_norm_eps")) != NULL)
	{
		/* a float32 epsilon, which must not round to 0 */
		if (v->type != SAE_JSON_NUMBER || !(v->number >= 1e-30 && v->number < 1))
			return sae_error(err, SAE_ERR_INVALID_DATA, "config.json: \"layer_norm_epsilon\" must be a number from 1e-30 to 1");
		eps = v->number;
	}
	c->eps = (float) eps;
	if (c->d_model % c->n_heads != 0)
		return sae_error(err, SAE_ERR_INVALID_DATA,
						 "config.json: the width %d is not a multiple of the %d heads",
						 c->d_model, c->n_heads);
	c->d_head = c->d_model / c->n_heads;
	c->n_ctx = c->n_positions;
	return SAE_OK;
}

int
sae_lm_parse_config(const char *text, size_t len, SaeLmConfig *cfg, SaeError *err)
{
	SaeJson    *json = NULL;
	int			rc;

	memset(cfg, 0, sizeof(*cfg));
	if ((rc = sae_json_parse(text, len, &json, err)) != SAE_OK)
		return rc;
	rc = parse_config(json, cfg, err);
	sae_json_free(json);
	if (rc != SAE_OK)
	{
		free(cfg->local);
		cfg->local = NULL;
	}
	return rc;
}

int
sae_lm_read_config(const char *dir, SaeLmConfig *cfg, SaeError *err)
{
	char		path[4096];
	const void *base;
	size_t		size;
	int			rc;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if ((rc = sae_map_file(path, "model config", 1, &base, &size, err)) != SAE_OK)
		return sae_error_hint(err, "A model folder holds config.json, the weights and the tokenizer files.");
	if (base == NULL)
		return sae_error(err, SAE_ERR_INVALID_DATA, "model config \"%s\" is empty", path);
	rc = sae_lm_parse_config(base, size, cfg, err);
	sae_unmap_file(base, size);
	if (rc != SAE_OK && err->detail[0] == '\0')
		sae_error_detail(err, "In %s.", path);
	return rc;
}
