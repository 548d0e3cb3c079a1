/*
 * model.c — sae_load_model and the per-backend cache of loaded models.
 *
 * sae.models is the catalogue: a row per model name with where its files
 * are and how it was processed.  Each backend keeps the models it has used
 * in memory (weights memory-mapped where the format allows), keyed by
 * name, and checks the row on every use: a model re-registered or removed
 * in another session, or in a rolled-back transaction, is reloaded or
 * refused rather than served stale.
 *
 * Reading model files follows the rule for COPY FROM a file: superuser or
 * a member of pg_read_server_files.  Models already in the catalogue can be
 * used by anyone who can read it: an administrator registers them.
 */
#include "sae_pg.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hub.h"
#include "lm.h"

PG_FUNCTION_INFO_V1(sae_load_model);

#define MAX_GPUS 16
#define KEY_LEN (NAMEDATALEN * 2 + 16)

typedef struct CachedModel
{
	char		key[KEY_LEN];	/* hash key: "name@cpu" or "name@cuda:N" */
	int			slot;			/* its backend in model_backends */
	int64		model_id;
	TimestampTz loaded_at;
	SaeLm	   *lm;
} CachedModel;

static HTAB *model_cache = NULL;

/*
 * The backends models live on, [0] the CPU's and [1 + i] GPU i's, each made
 * once, and for the GPUs the CUDA module each came from (sae.cuda_module).
 */
static SaeBackend *model_backends[1 + MAX_GPUS];
static char *model_modules[1 + MAX_GPUS];

static int
backend_slot(SaeDevice dev)
{
	if (dev.cuda && dev.index >= MAX_GPUS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("device cuda:%d is beyond the %d GPUs sae supports", dev.index, MAX_GPUS)));
	return dev.cuda ? 1 + dev.index : 0;
}

static HTAB *
get_cache(void)
{
	if (model_cache == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = KEY_LEN;
		ctl.entrysize = sizeof(CachedModel);
		model_cache = hash_create("sae models", 8, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	return model_cache;
}

static void
check_name(const char *name)
{
	if (name[0] == '\0' || strlen(name) >= NAMEDATALEN * 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name \"%s\" is empty or longer than %d bytes", name, NAMEDATALEN * 2 - 1)));
}

/* COPY FROM a file's rule. */
void
SaeCheckReadServerFiles(const char *what)
{
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read %s", what),
				 errdetail("Only roles with privileges of the \"pg_read_server_files\" role may read files on the server."),
				 errhint("Ask an administrator to load the model with sae_load_model, or to grant pg_read_server_files.")));
}

/* Engine callbacks must not raise: they only say whether a cancel is pending. */
static bool
interrupt_pending(void *arg)
{
	return QueryCancelPending || ProcDiePending;
}

/* The options jsonb of sae_load_model. */
typedef struct LoadOptions
{
	SaeLmOptions lm;
	bool		n_ctx_given;
	char	   *repo;			/* load this hub name instead of the model's name */
	char	   *revision;
} LoadOptions;

static void
parse_options(Jsonb *json, LoadOptions *o)
{
	JsonbIterator *it = JsonbIteratorInit(&json->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	memset(o, 0, sizeof(*o));
	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("options must be a JSON object")));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool	   *flag = NULL;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (strcmp(key, "fold_ln") == 0)
			flag = &o->lm.fold_ln;
		else if (strcmp(key, "center_writing_weights") == 0)
			flag = &o->lm.center_writing_weights;
		else if (strcmp(key, "center_unembed") == 0)
			flag = &o->lm.center_unembed;
		else if (strcmp(key, "fold_value_biases") == 0)
			flag = &o->lm.fold_value_biases;
		if (flag && v.type == jbvBool)
			*flag = v.val.boolean;
		else if (strcmp(key, "n_ctx") == 0 && v.type == jbvNumeric)
		{
			o->lm.n_ctx = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
			o->n_ctx_given = true;
			if (o->lm.n_ctx < 1)
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("option \"n_ctx\" must be positive")));
		}
		else if ((strcmp(key, "repo") == 0 || strcmp(key, "revision") == 0) && v.type == jbvString)
			*(key[1] == 'e' && key[2] == 'p' ? &o->repo : &o->revision) =
				pnstrdup(v.val.string.val, v.val.string.len);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is unknown or has the wrong type", key),
					 errhint("Options: fold_ln, center_writing_weights, center_unembed, fold_value_biases (booleans), "
							 "n_ctx (integer), repo, revision (strings).")));
	}
}

/* Where a hub name's files are, downloaded if allowed. */
static pg_noinline char *
resolve_hub(const char *hub_name, const LoadOptions *o)
{
	SaeHubOptions ho = {0};
	SaeError	err;
	char	   *dir = NULL;
	char	   *result;

	ho.cache_dir = sae_hub_cache[0] ? sae_hub_cache : NULL;
	ho.endpoint = sae_hub_endpoint[0] ? sae_hub_endpoint : NULL;
	ho.revision = o->revision;
	ho.allow_download = sae_allow_download;
	ho.should_stop = interrupt_pending;
	if (sae_hub_resolve(hub_name, &ho, &dir, &err) != SAE_OK)
	{
		CHECK_FOR_INTERRUPTS();
		SaeReportError(&err);
	}
	result = pstrdup(dir);
	free(dir);
	return result;
}

/* A summary of the config as jsonb text, for sae.models.config. */
static char *
config_json(const SaeLmConfig *c)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"architecture\": \"%s\", \"n_layers\": %d, \"d_model\": %d, \"n_heads\": %d, "
					 "\"d_head\": %d, \"d_mlp\": %d, \"d_vocab\": %d, \"n_ctx\": %d, \"n_positions\": %d, "
					 "\"eps\": %g, \"bos_token_id\": %d, \"eos_token_id\": %d",
					 sae_lm_arch_name(c->arch), c->n_layers, c->d_model, c->n_heads, c->d_head,
					 c->d_mlp, c->d_vocab, c->n_ctx, c->n_positions, c->eps, c->bos_id, c->eos_id);
	if (c->arch == SAE_LM_ARCH_GPT_NEO)
	{
		appendStringInfo(&s, ", \"window_size\": %d, \"attention_layers\": [", c->window_size);
		for (int i = 0; i < c->n_layers; i++)
			appendStringInfo(&s, "%s\"%s\"", i ? ", " : "", c->local[i] ? "local" : "global");
		appendStringInfoString(&s, "]");
	}
	appendStringInfoString(&s, "}");
	return s.data;
}

/* The options as stored: every processing flag, the context and the hub name and revision. */
static char *
options_json(const LoadOptions *o)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"fold_ln\": %s, \"center_writing_weights\": %s, \"center_unembed\": %s, "
					 "\"fold_value_biases\": %s",
					 o->lm.fold_ln ? "true" : "false", o->lm.center_writing_weights ? "true" : "false",
					 o->lm.center_unembed ? "true" : "false", o->lm.fold_value_biases ? "true" : "false");
	if (o->lm.n_ctx > 0)
		appendStringInfo(&s, ", \"n_ctx\": %d", o->lm.n_ctx);
	if (o->repo)
	{
		appendStringInfoString(&s, ", \"repo\": ");
		escape_json(&s, o->repo);
	}
	if (o->revision)
	{
		appendStringInfoString(&s, ", \"revision\": ");
		escape_json(&s, o->revision);
	}
	appendStringInfoString(&s, "}");
	return s.data;
}

/* Insert or replace the catalogue row; returns model_id and loaded_at. */
static int64
store_model(const char *name, const char *repo, const char *dir, const LoadOptions *o,
			SaeLm *lm, TimestampTz *loaded_at)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', repo ? ' ' : 'n', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		id;

	values[0] = CStringGetTextDatum(name);
	values[1] = repo ? CStringGetTextDatum(repo) : (Datum) 0;
	values[2] = CStringGetTextDatum(sae_lm_arch_name(sae_lm_config(lm)->arch));
	values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(config_json(sae_lm_config(lm))));
	values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(options_json(o)));
	values[5] = CStringGetTextDatum(dir);
	values[6] = CStringGetTextDatum(sae_lm_weights_file(lm));
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO sae.models (name, hf_repo, architecture, config, options, source_path, weights_file) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7) "
							  "ON CONFLICT (name) DO UPDATE SET hf_repo = EXCLUDED.hf_repo, "
							  "architecture = EXCLUDED.architecture, config = EXCLUDED.config, "
							  "options = EXCLUDED.options, source_path = EXCLUDED.source_path, "
							  "weights_file = EXCLUDED.weights_file, loaded_at = clock_timestamp() "
							  "RETURNING model_id, loaded_at",
							  7, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not record the model in sae.models");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*loaded_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
	return id;
}

/* Drop a backend with every model on it. */
static void
drop_backend(int slot)
{
	HASH_SEQ_STATUS seq;
	CachedModel *c;

	hash_seq_init(&seq, get_cache());
	while ((c = hash_seq_search(&seq)) != NULL)
		if (c->slot == slot)
		{
			sae_lm_free(c->lm);
			hash_search(get_cache(), c->key, HASH_REMOVE, NULL);
		}
	model_backends[slot]->destroy(model_backends[slot]);
	model_backends[slot] = NULL;
}

/*
 * The backend for dev's models.  A GPU backend that has failed is dropped
 * with its models (their device memory went with the error) and made
 * again, which says at once if the GPU is still unusable; so is one from
 * another CUDA module than sae.cuda_module names now.
 */
static SaeBackend *
model_backend(SaeDevice dev)
{
	int			slot = backend_slot(dev);
	SaeBackend *be = model_backends[slot];

	if (be != NULL && dev.cuda &&
		(be->device_error(be) != NULL || strcmp(model_modules[slot], SaeCudaModulePath()) != 0))
		drop_backend(slot);
	if (model_backends[slot] == NULL)
	{
		model_backends[slot] = SaeBackendCreate(dev, false);
		if (model_modules[slot])
			pfree(model_modules[slot]);
		model_modules[slot] = MemoryContextStrdup(TopMemoryContext, SaeCudaModulePath());
	}
	return model_backends[slot];
}

/* Load the files in dir onto dev. */
static SaeLm *
load_files(const char *dir, const LoadOptions *o, SaeDevice dev)
{
	SaeLm	   *lm;
	SaeError	err;

	if (sae_lm_load(dir, &o->lm, model_backend(dev), &lm, &err) != SAE_OK)
		SaeReportError(&err);
	return lm;
}

static void
cache_key(char *key, const char *name, SaeDevice dev)
{
	snprintf(key, KEY_LEN, "%s@%s", name, SaeDeviceName(dev));
}

/* Put lm in the cache under (name, dev), replacing (and freeing) what was there. */
static void
cache_model(const char *name, SaeDevice dev, int64 id, TimestampTz loaded_at, SaeLm *lm)
{
	char		key[KEY_LEN];
	bool		found;
	CachedModel *c;

	cache_key(key, name, dev);
	c = hash_search(get_cache(), key, HASH_ENTER, &found);
	if (found && c->lm != lm)
		sae_lm_free(c->lm);
	c->slot = backend_slot(dev);
	c->model_id = id;
	c->loaded_at = loaded_at;
	c->lm = lm;
}

Datum
sae_load_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *options = PG_GETARG_JSONB_P(2);
	LoadOptions o;
	char	   *dir;
	char	   *repo = NULL;
	SaeLm	   *volatile lm = NULL;
	int64		id = 0;
	TimestampTz loaded_at;

	check_name(name);
	parse_options(options, &o);
	SaeCheckReadServerFiles(path ? "a model folder" : "the Hugging Face cache");
	if (path)
	{
		if (!is_absolute_path(path))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("model path \"%s\" is not absolute", path),
					 errhint("Give the full path of a folder with config.json, the weights and the tokenizer files.")));
		dir = path;
	}
	else
	{
		const char *hub_name = o.repo ? o.repo : name;
		const char *alias_repo = sae_hub_alias_repo(hub_name);

		repo = pstrdup(alias_repo ? alias_repo : hub_name);
		if (!o.n_ctx_given)
			o.lm.n_ctx = sae_hub_alias_n_ctx(hub_name);
		dir = resolve_hub(hub_name, &o);
	}
	lm = load_files(dir, &o, SAE_DEVICE_CPU);
	PG_TRY();
	{
		id = store_model(name, repo, dir, &o, lm, &loaded_at);
		cache_model(name, SAE_DEVICE_CPU, id, loaded_at, lm);
	}
	PG_CATCH();
	{
		sae_lm_free(lm);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PG_RETURN_INT64(id);
}

/*
 * The loaded model called name, on dev: from this backend's cache if its
 * catalogue row has not changed since, else loaded again from the row.
 */
SaeLm *
SaeGetModelOn(const char *name, SaeDevice dev)
{
	Datum		arg = CStringGetTextDatum(name);
	int64		id;
	TimestampTz loaded_at;
	char	   *dir;
	Jsonb	   *options;
	bool		isnull,
				found;
	LoadOptions o;
	CachedModel *c;
	char		key[KEY_LEN];
	SaeLm	   *volatile lm;
	MemoryContext caller = CurrentMemoryContext,
				old;

	SPI_connect();
	if (SPI_execute_with_args("SELECT model_id, loaded_at, source_path, options FROM sae.models WHERE name = $1",
							  1, (Oid[]) {TEXTOID}, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.models");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" is not loaded", name),
				 errhint("Load it first: SELECT sae_load_model('%s');", name)));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	loaded_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	/* copies in the caller's context: SPI_finish frees SPI's */
	old = MemoryContextSwitchTo(caller);
	dir = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	options = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	MemoryContextSwitchTo(old);
	SPI_finish();

	(void) model_backend(dev);	/* drops the device's models if it failed */
	cache_key(key, name, dev);
	c = hash_search(get_cache(), key, HASH_FIND, &found);
	if (found && c->model_id == id && c->loaded_at == loaded_at)
		return c->lm;
	parse_options(options, &o);
	lm = load_files(dir, &o, dev);
	cache_model(name, dev, id, loaded_at, lm);
	return lm;
}

/* The model on the CPU: for its tokenizer, or passes that stay on the CPU. */
SaeLm *
SaeGetModel(const char *name)
{
	return SaeGetModelOn(name, SAE_DEVICE_CPU);
}

/*
 * The hook a training config reads at one layer: a known name, a
 * per-position width (not the attention scores or pattern), a head index
 * only where there are heads, and d_in equal to the width.
 */
SaeHook
SaeConfigHook(SaeLm *lm, const SaeConfig *cfg, int64 layer)
{
	char		name[sizeof(cfg->hook_point)];
	SaeHook		hook;
	SaeError	err;
	int			width;
	bool		has_heads;

	sae_config_format_hook(cfg, layer, name, sizeof(name));
	if (sae_hook_parse(lm, name, &hook, &err) != SAE_OK)
		SaeReportError(&err);
	if (hook.kind == SAE_HOOK_ATTN_SCORES || hook.kind == SAE_HOOK_PATTERN)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot train on \"%s\": its width depends on the context", name),
				 errhint("Train on a residual, attention or MLP output, or on hook_z.")));
	has_heads = hook.kind == SAE_HOOK_Q || hook.kind == SAE_HOOK_K || hook.kind == SAE_HOOK_V ||
		hook.kind == SAE_HOOK_Z;
	if (cfg->hook_point_head_index >= 0 &&
		(!has_heads || cfg->hook_point_head_index >= sae_lm_config(lm)->n_heads))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hook_point_head_index %lld does not fit \"%s\"",
						(long long) cfg->hook_point_head_index, name),
				 errhint("A head index applies to hook_q, hook_k, hook_v and hook_z, from 0 to %d.",
						 sae_lm_config(lm)->n_heads - 1)));
	width = sae_lm_source_width(lm, hook, (int) cfg->hook_point_head_index);
	if (width != cfg->d_in)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("d_in %lld does not match \"%s\", which has %d values per token",
						(long long) cfg->d_in, name, width),
				 errhint("Set \"d_in\": %d.", width)));
	return hook;
}
