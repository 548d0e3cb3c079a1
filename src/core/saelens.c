/*
 * saelens.c — reading and writing SAELens SAE folders (saelens.h).
 *
 * The reader is strict: every shape is checked against cfg.json, every
 * tensor of the weights file must be one the architecture has, and keys
 * that change what the SAE computes (architecture, activation function,
 * activation normalisation, a fine-tuned scaling factor) must have values
 * the engine implements, so an import either computes what SAELens
 * computes or fails saying why.
 */
#include "saelens.h"

#include "json.h"
#include "mapfile.h"
#include "safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sae_saelens_files[3] = {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors"};

/* cfg.json is at most this big (a v1.x config is a few KB). */
#define CFG_MAX_BYTES (16u << 20)
/* d_in and d_sae are at most this (SaeConfig's limit on d_sae). */
#define MAX_WIDTH 100000000

/* An LLM key: v6 keeps it in "metadata", v1.x and v3-v5 at the top. */
static const SaeJson *
llm_key(const SaeJson *cfg, const char *key)
{
	const SaeJson *meta = sae_json_get(cfg, "metadata");
	const SaeJson *v = meta && meta->type == SAE_JSON_OBJECT ? sae_json_get(meta, key) : NULL;

	return v ? v : sae_json_get(cfg, key);
}

static int
bad_key(SaeError *err, const char *key, const char *want)
{
	sae_error(err, SAE_ERR_INVALID_DATA, "cfg.json key \"%s\" must be %s", key, want);
	return sae_error_hint(err, "Is this folder an SAE saved by SAELens?");
}

/* An integer key in lo..hi into *out; absent keys keep *out unless required. */
static int
int_key(const SaeJson *v, const char *key, long long lo, long long hi, bool required, int *out,
		SaeError *err)
{
	char		want[96];

	snprintf(want, sizeof(want), "an integer from %lld to %lld", lo, hi);
	if (v == NULL || v->type == SAE_JSON_NULL)
		return required ? bad_key(err, key, want) : SAE_OK;
	if (v->type != SAE_JSON_NUMBER || !v->is_integer || v->integer < lo || v->integer > hi)
		return bad_key(err, key, want);
	*out = (int) v->integer;
	return SAE_OK;
}

static int
bool_key(const SaeJson *v, const char *key, bool *out, SaeError *err)
{
	if (v == NULL || v->type == SAE_JSON_NULL)
		return SAE_OK;
	if (v->type != SAE_JSON_BOOL)
		return bad_key(err, key, "true or false");
	*out = v->boolean;
	return SAE_OK;
}

/* A string key into out (size SAE_SAELENS_NAME); absent leaves "" unless required. */
static int
string_key(const SaeJson *v, const char *key, bool required, char *out, SaeError *err)
{
	if (v == NULL || v->type == SAE_JSON_NULL)
		return required ? bad_key(err, key, "a string") : SAE_OK;
	if (v->type != SAE_JSON_STRING || v->length >= SAE_SAELENS_NAME || strlen(v->string) != v->length)
		return bad_key(err, key, "a string of fewer than 512 bytes");
	memcpy(out, v->string, v->length + 1);
	return SAE_OK;
}

/* Whether a string key is absent, null, or one of the allowed values. */
static bool
string_is(const SaeJson *v, const char *const *allowed)
{
	if (v == NULL || v->type == SAE_JSON_NULL)
		return true;
	if (v->type != SAE_JSON_STRING)
		return false;
	for (; *allowed; allowed++)
		if (strcmp(v->string, *allowed) == 0)
			return true;
	return false;
}

/* What the SAE computes must be what the engine computes: standard ReLU, no normalisation. */
static int
check_computation(const SaeJson *cfg, SaeError *err)
{
	static const char *const standard[] = {"standard", NULL};
	static const char *const relu[] = {"relu", NULL};
	static const char *const no_norm[] = {"none", NULL};
	static const char *const reshape[] = {"none", "hook_z", NULL};
	const SaeJson *arch = sae_json_get(cfg, "architecture");
	const SaeJson *act = llm_key(cfg, "activation_fn");
	const SaeJson *act_str = llm_key(cfg, "activation_fn_str");
	const SaeJson *norm = llm_key(cfg, "normalize_activations");

	if (!string_is(arch, standard))
	{
		sae_error(err, SAE_ERR_NOT_SUPPORTED, "SAE architecture \"%s\" is not supported",
				  arch->type == SAE_JSON_STRING ? arch->string : "?");
		return sae_error_hint(err, "The engine encodes standard (ReLU) SAEs; topk, jumprelu and gated SAEs cannot be imported yet.");
	}
	if (!string_is(act, relu) || !string_is(act_str, relu))
	{
		sae_error(err, SAE_ERR_NOT_SUPPORTED, "SAE activation function \"%s\" is not supported",
				  act && act->type == SAE_JSON_STRING ? act->string :
				  act_str && act_str->type == SAE_JSON_STRING ? act_str->string : "?");
		return sae_error_hint(err, "The engine encodes ReLU SAEs.");
	}
	if (!(norm && norm->type == SAE_JSON_BOOL && !norm->boolean) && !string_is(norm, no_norm))
	{
		sae_error(err, SAE_ERR_NOT_SUPPORTED, "cfg.json asks for activation normalisation");
		return sae_error_hint(err, "Only SAEs with normalize_activations \"none\" can be imported.");
	}
	if (!string_is(llm_key(cfg, "reshape_activations"), reshape))
		return bad_key(err, "reshape_activations", "\"none\" or \"hook_z\"");
	return SAE_OK;
}

/* The layer of "blocks.L.…", or 0 for hooks outside the blocks (hook_embed, ln_final…). */
static int
layer_of_hook(const char *hook)
{
	long		layer;
	char	   *end;

	if (strncmp(hook, "blocks.", 7) != 0)
		return 0;
	layer = strtol(hook + 7, &end, 10);
	return end != hook + 7 && *end == '.' && layer >= 0 && layer < 100000 ? (int) layer : 0;
}

int
sae_saelens_parse_cfg(const char *text, size_t len, SaeSaelensSae *out, SaeError *err)
{
	SaeJson    *cfg = NULL;
	int			rc;
	bool		v1;

	memset(out, 0, sizeof(*out));
	out->apply_b_dec_to_input = true;
	out->prepend_bos = true;
	out->head_index = -1;
	out->hook_layer = -1;
	if ((rc = sae_json_parse(text, len, &cfg, err)) != SAE_OK)
	{
		sae_error_detail(err, "In cfg.json.");
		return rc;
	}
	if (cfg->type != SAE_JSON_OBJECT)
		rc = bad_key(err, "(top level)", "an object");
	v1 = sae_json_get(cfg, "hook_point") != NULL;
	out->format = v1 ? 1 : 6;
	if (rc == SAE_OK)
		rc = check_computation(cfg, err);
	if (rc == SAE_OK)
		rc = int_key(sae_json_get(cfg, "d_in"), "d_in", 1, MAX_WIDTH, true, &out->d_in, err);
	if (rc == SAE_OK)
		rc = int_key(sae_json_get(cfg, "d_sae"), "d_sae", 1, MAX_WIDTH, true, &out->d_sae, err);
	if (rc == SAE_OK && (int64_t) out->d_in * out->d_sae > ((int64_t) 1 << 32))
	{
		sae_error(err, SAE_ERR_LIMIT, "an SAE of d_in %d and d_sae %d is too large", out->d_in, out->d_sae);
		rc = sae_error_hint(err, "W_enc may have at most 2^32 entries.");
	}
	if (rc == SAE_OK)
		rc = bool_key(sae_json_get(cfg, "apply_b_dec_to_input"), "apply_b_dec_to_input",
					  &out->apply_b_dec_to_input, err);
	if (rc == SAE_OK)
		rc = string_key(llm_key(cfg, v1 ? "hook_point" : "hook_name"), v1 ? "hook_point" : "hook_name",
						true, out->hook_name, err);
	if (rc == SAE_OK)
		rc = int_key(llm_key(cfg, v1 ? "hook_point_head_index" : "hook_head_index"),
					 v1 ? "hook_point_head_index" : "hook_head_index", 0, 100000, false,
					 &out->head_index, err);
	if (rc == SAE_OK)
		rc = int_key(llm_key(cfg, v1 ? "hook_point_layer" : "hook_layer"),
					 v1 ? "hook_point_layer" : "hook_layer", 0, 100000, false, &out->hook_layer, err);
	if (rc == SAE_OK)
		rc = string_key(llm_key(cfg, "model_name"), "model_name", false, out->model_name, err);
	if (rc == SAE_OK)
		rc = string_key(llm_key(cfg, "dataset_path"), "dataset_path", false, out->dataset_path, err);
	if (rc == SAE_OK)
		rc = int_key(llm_key(cfg, "context_size"), "context_size", 1, 1 << 20, false,
					 &out->context_size, err);
	if (rc == SAE_OK)
		rc = bool_key(llm_key(cfg, "prepend_bos"), "prepend_bos", &out->prepend_bos, err);
	if (rc == SAE_OK && out->hook_layer < 0)
		out->hook_layer = layer_of_hook(out->hook_name);
	sae_json_free(cfg);
	return rc;
}

/* Read cfg.json of dir into out. */
static int
read_cfg(const char *dir, SaeSaelensSae *out, SaeError *err)
{
	char		path[4096];
	const void *base;
	size_t		size;
	int			rc;

	snprintf(path, sizeof(path), "%s/cfg.json", dir);
	if ((rc = sae_map_file(path, "SAE config", 2, &base, &size, err)) != SAE_OK)
		return rc;
	if (base == NULL || size > CFG_MAX_BYTES)
	{
		sae_unmap_file(base, size);
		sae_error(err, SAE_ERR_INVALID_DATA, "\"%s\" is %zu bytes long", path, size);
		return sae_error_hint(err, "cfg.json should be a JSON object of at most 16 MB.");
	}
	rc = sae_saelens_parse_cfg(base, size, out, err);
	sae_unmap_file(base, size);
	return rc;
}

/* A tensor of the given shape (1 or 2 dims) as a malloc'd float array. */
static int
read_tensor(const SaeSafetensors *st, const char *name, int ndim, int64_t d0, int64_t d1,
			float **out, SaeError *err)
{
	const SaeTensorInfo *t = sae_safetensors_find(st, name);
	int			rc;

	if (t == NULL)
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "\"%s\" has no tensor \"%s\"", sae_safetensors_name(st), name);
		return sae_error_hint(err, "A standard SAE has W_enc, b_enc, W_dec and b_dec.");
	}
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
	{
		char		want[64];

		snprintf(want, sizeof(want), ndim == 2 ? "[%lld, %lld]" : "[%lld]", (long long) d0, (long long) d1);
		sae_error(err, SAE_ERR_INVALID_DATA, "tensor \"%s\" of \"%s\" does not have the shape %s that cfg.json implies",
				  name, sae_safetensors_name(st), want);
		return sae_error_detail(err, "d_in and d_sae in cfg.json must match the weights.");
	}
	if ((*out = malloc(sizeof(float) * (size_t) t->numel)) == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory reading tensor \"%s\"", name);
	if ((rc = sae_safetensors_read_f32(st, t, *out, (size_t) t->numel, err)) != SAE_OK)
		return rc;
	for (int64_t i = 0; i < t->numel; i++)
		if (!isfinite((*out)[i]))
		{
			sae_error(err, SAE_ERR_INVALID_DATA, "tensor \"%s\" of \"%s\" holds %g at element %lld",
					  name, sae_safetensors_name(st), (*out)[i], (long long) i);
			return sae_error_hint(err, "SAE weights must be finite.");
		}
	return SAE_OK;
}

/* Only the four tensors, and scaling_factor if it is all ones (v1.x wrote it, v6 drops it). */
static int
check_tensor_names(const SaeSafetensors *st, int d_sae, SaeError *err)
{
	static const char *const known[] = {"W_enc", "b_enc", "W_dec", "b_dec", NULL};

	for (size_t i = 0; i < sae_safetensors_count(st); i++)
	{
		const SaeTensorInfo *t = sae_safetensors_tensor(st, i);
		bool		ok = false;

		for (int j = 0; known[j]; j++)
			ok |= strcmp(t->name, known[j]) == 0;
		if (!ok && strcmp(t->name, "scaling_factor") == 0)
		{
			float	   *s = NULL;
			int			rc = read_tensor(st, "scaling_factor", 1, d_sae, 0, &s, err);

			for (int j = 0; rc == SAE_OK && j < d_sae; j++)
				if (s[j] != 1.0f)
				{
					sae_error(err, SAE_ERR_NOT_SUPPORTED, "the SAE has a fine-tuned scaling_factor (%g for feature %d)", s[j], j);
					rc = sae_error_hint(err, "Only SAEs whose scaling_factor is all ones can be imported.");
				}
			free(s);
			if (rc != SAE_OK)
				return rc;
			continue;
		}
		if (!ok)
		{
			sae_error(err, SAE_ERR_NOT_SUPPORTED, "\"%s\" has a tensor \"%s\" that a standard SAE does not have",
					  sae_safetensors_name(st), t->name);
			return sae_error_hint(err, "Gated, JumpReLU and other architectures cannot be imported yet.");
		}
	}
	return SAE_OK;
}

static int
read_weights(const char *dir, SaeSaelensSae *s, SaeError *err)
{
	char		path[4096];
	SaeSafetensors *st = NULL;
	int			rc;

	snprintf(path, sizeof(path), "%s/sae_weights.safetensors", dir);
	if ((rc = sae_safetensors_open(path, &st, err)) != SAE_OK)
		return rc;
	if ((rc = check_tensor_names(st, s->d_sae, err)) == SAE_OK &&
		(rc = read_tensor(st, "W_enc", 2, s->d_in, s->d_sae, &s->w_enc, err)) == SAE_OK &&
		(rc = read_tensor(st, "b_enc", 1, s->d_sae, 0, &s->b_enc, err)) == SAE_OK &&
		(rc = read_tensor(st, "W_dec", 2, s->d_sae, s->d_in, &s->w_dec, err)) == SAE_OK)
		rc = read_tensor(st, "b_dec", 1, s->d_in, 0, &s->b_dec, err);
	sae_safetensors_close(st);
	return rc;
}

/* sparsity.safetensors, if there is one: {"sparsity": log10 feature density}. */
static int
read_sparsity(const char *dir, SaeSaelensSae *s, SaeError *err)
{
	char		path[4096];
	SaeSafetensors *st = NULL;
	FILE	   *probe;
	int			rc;

	snprintf(path, sizeof(path), "%s/sparsity.safetensors", dir);
	if ((probe = fopen(path, "rb")) == NULL)
		return SAE_OK;
	fclose(probe);
	if ((rc = sae_safetensors_open(path, &st, err)) != SAE_OK)
		return rc;
	rc = read_tensor(st, "sparsity", 1, s->d_sae, 0, &s->log10_sparsity, err);
	sae_safetensors_close(st);
	return rc;
}

int
sae_saelens_read(const char *dir, SaeSaelensSae *out, SaeError *err)
{
	int			rc;

	memset(out, 0, sizeof(*out));
	if ((rc = read_cfg(dir, out, err)) != SAE_OK ||
		(rc = read_weights(dir, out, err)) != SAE_OK ||
		(rc = read_sparsity(dir, out, err)) != SAE_OK)
		sae_saelens_free(out);
	return rc;
}

void
sae_saelens_free(SaeSaelensSae *sae)
{
	free(sae->w_enc);
	free(sae->b_enc);
	free(sae->w_dec);
	free(sae->b_dec);
	free(sae->log10_sparsity);
	sae->w_enc = sae->b_enc = sae->w_dec = sae->b_dec = sae->log10_sparsity = NULL;
}

/* ---- writing ---- */

/* A JSON string literal. */
static void
put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Open dir/name for writing; it must not exist yet. */
static FILE *
create_file(const char *dir, const char *name, SaeError *err)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wbx")) == NULL)
		sae_error(err, SAE_ERR_IO, "could not create \"%s\"", path);
	return f;
}

static int
close_file(FILE *f, const char *dir, const char *name, SaeError *err)
{
	bool		failed = ferror(f) != 0;

	if (fclose(f) != 0 || failed)
		return sae_error(err, SAE_ERR_IO, "could not write \"%s/%s\"", dir, name);
	return SAE_OK;
}

typedef struct OutTensor
{
	const char *name;
	int			ndim;
	int64_t		shape[2];
	const float *data;
} OutTensor;

/*
 * A safetensors file of float32 tensors: an 8-byte little-endian header
 * length, the JSON header padded with spaces to a multiple of 8, the data.
 */
static int
write_safetensors(const char *dir, const char *name, const OutTensor *t, int n, SaeError *err)
{
	char	   *header = NULL;
	size_t		hlen = 0;
	FILE	   *mem = open_memstream(&header, &hlen);
	FILE	   *f;
	uint64_t	offset = 0,
				len8;
	unsigned char lenbytes[8];

	if (mem == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory writing \"%s\"", name);
	fputs("{\"__metadata__\":{\"format\":\"pt\"}", mem);
	for (int i = 0; i < n; i++)
	{
		uint64_t	bytes = sizeof(float) * (uint64_t) t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);

		fprintf(mem, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld", t[i].name, (long long) t[i].shape[0]);
		if (t[i].ndim == 2)
			fprintf(mem, ",%lld", (long long) t[i].shape[1]);
		fprintf(mem, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long) offset,
				(unsigned long long) (offset + bytes));
		offset += bytes;
	}
	fputc('}', mem);
	while (ftell(mem) % 8 != 0)
		fputc(' ', mem);
	fclose(mem);
	if ((f = create_file(dir, name, err)) == NULL)
	{
		free(header);
		return SAE_ERR_IO;
	}
	len8 = hlen;
	for (int i = 0; i < 8; i++)
		lenbytes[i] = (unsigned char) (len8 >> (8 * i));
	fwrite(lenbytes, 1, 8, f);
	fwrite(header, 1, hlen, f);
	free(header);
	/* little-endian float32, which is what every machine we build for stores */
	for (int i = 0; i < n; i++)
		fwrite(t[i].data, sizeof(float), (size_t) t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1), f);
	return close_file(f, dir, name, err);
}

/*
 * cfg.json in SAELens 6's inference format (StandardSAEConfig.to_dict()).
 * SAELens reads "metadata" only when metadata.sae_lens_version is 6 or
 * later (older configs are upgraded from their flat keys), so the format's
 * version goes there; no SAELens version trained it.
 */
static int
write_cfg(const char *dir, const SaeSaelensSae *s, SaeError *err)
{
	FILE	   *f = create_file(dir, "cfg.json", err);

	if (f == NULL)
		return SAE_ERR_IO;
	fprintf(f, "{\"d_in\": %d, \"d_sae\": %d, \"dtype\": \"float32\", \"device\": \"cpu\", "
			"\"apply_b_dec_to_input\": %s, \"normalize_activations\": \"none\", "
			"\"reshape_activations\": \"none\", \"metadata\": {\"sae_lens_version\": \"6.0.0\", "
			"\"sae_lens_training_version\": null, \"model_name\": ",
			s->d_in, s->d_sae, s->apply_b_dec_to_input ? "true" : "false");
	put_json_string(f, s->model_name);
	fputs(", \"hook_name\": ", f);
	put_json_string(f, s->hook_name);
	if (s->head_index >= 0)
		fprintf(f, ", \"hook_head_index\": %d", s->head_index);
	else
		fputs(", \"hook_head_index\": null", f);
	fprintf(f, ", \"context_size\": %d, \"prepend_bos\": %s, \"dataset_path\": ", s->context_size,
			s->prepend_bos ? "true" : "false");
	put_json_string(f, s->dataset_path);
	fputs("}, \"architecture\": \"standard\"}\n", f);
	return close_file(f, dir, "cfg.json", err);
}

int
sae_saelens_write(const char *dir, const SaeSaelensSae *s, SaeError *err)
{
	float	   *never = NULL;
	const float *sparsity = s->log10_sparsity;
	int			rc;
	OutTensor	weights[4] = {
		{"W_dec", 2, {s->d_sae, s->d_in}, s->w_dec},
		{"W_enc", 2, {s->d_in, s->d_sae}, s->w_enc},
		{"b_dec", 1, {s->d_in, 0}, s->b_dec},
		{"b_enc", 1, {s->d_sae, 0}, s->b_enc},
	};

	if (sparsity == NULL)
	{
		if ((never = malloc(sizeof(float) * s->d_sae)) == NULL)
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory writing the sparsity");
		for (int i = 0; i < s->d_sae; i++)
			never[i] = -10.0f;
		sparsity = never;
	}
	if ((rc = write_cfg(dir, s, err)) == SAE_OK &&
		(rc = write_safetensors(dir, "sae_weights.safetensors", weights, 4, err)) == SAE_OK)
		rc = write_safetensors(dir, "sparsity.safetensors",
							   &(OutTensor) {"sparsity", 1, {s->d_sae, 0}, sparsity}, 1, err);
	free(never);
	return rc;
}
