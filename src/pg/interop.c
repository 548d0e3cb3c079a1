/*
 * interop.c — SAEs to and from SAELens's folder format: sae_export(run_id,
 * directory) and sae_import(path, model).
 *
 * The engine (saelens.h) reads and writes the files; this file checks who
 * may touch server files (PostgreSQL's rule for COPY), makes the new
 * directory and removes it again if writing fails, and turns a folder into
 * rows of sae.runs, sae.features and sae.tensors in one transaction.
 */
#include "sae_pg.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "saelens.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

PG_FUNCTION_INFO_V1(sae_export);
PG_FUNCTION_INFO_V1(sae_import);

/*
 * Server files take superuser or pg_write_server_files / pg_read_server_files,
 * as COPY TO and COPY FROM a file do.
 */
static void
check_server_files(Oid role, const char *role_name, const char *what)
{
	if (!has_privs_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", what),
				 errdetail("Only roles with privileges of the \"%s\" role may do this.", role_name),
				 errhint("Ask an administrator to grant %s, or to do it for you.", role_name)));
}

static void
check_absolute(const char *path)
{
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path \"%s\" is not absolute", path),
				 errhint("Give the full path of the directory on the database server.")));
}

/* Each feature's log10 density from sae.features, or NULL when the run has none. */
static float *
run_log10_sparsity(int64 run_id, int m)
{
	Datum		arg = Int64GetDatum(run_id);
	MemoryContext caller = CurrentMemoryContext;
	float	   *out = NULL;

	SPI_connect();
	if (SPI_execute_with_args("SELECT log10_sparsity FROM sae.features WHERE run_id = $1 ORDER BY feature_id",
							  1, (Oid[]) {INT8OID}, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.features");
	if (SPI_processed == (uint64) m)
	{
		out = MemoryContextAlloc(caller, sizeof(float) * m);
		for (int i = 0; i < m && out; i++)
		{
			bool		isnull;
			Datum		v = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

			if (isnull)
			{
				pfree(out);
				out = NULL;
			}
			else
				out[i] = DatumGetFloat4(v);
		}
	}
	SPI_finish();
	return out;
}

/* Remove what a failed export wrote, then the directory. */
static void
remove_export(const char *dir)
{
	char		path[MAXPGPATH];

	for (int i = 0; i < lengthof(sae_saelens_files); i++)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, sae_saelens_files[i]);
		(void) unlink(path);
	}
	(void) rmdir(dir);
}

/*
 * sae_export(run_id, directory): the run as a SAELens 6 folder (cfg.json,
 * sae_weights.safetensors, sparsity.safetensors) in a new directory.
 */
Datum
sae_export(PG_FUNCTION_ARGS)
{
	int64		run_id = PG_GETARG_INT64(0);
	char	   *dir = text_to_cstring(PG_GETARG_TEXT_PP(1));
	SaeConfig	cfg;
	SaeRunWeights w;
	SaeSaelensSae s = {.format = 6};
	SaeError	err;

	check_server_files(ROLE_PG_WRITE_SERVER_FILES, "pg_write_server_files", "write an SAE to a server directory");
	check_absolute(dir);
	SaeRunConfig(run_id, &cfg);
	if (cfg.sae_type != SAE_TYPE_UNIT_NORM)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("run %lld is a tanh_sae, which SAELens has no architecture for", (long long) run_id),
				 errhint("Only standard (ReLU) SAEs can be exported.")));
	SaeLoadRunWeights(run_id, &w);
	s.d_in = w.d;
	s.d_sae = w.m;
	s.apply_b_dec_to_input = w.apply_b_dec_to_input;
	strlcpy(s.model_name, cfg.model_name, sizeof(s.model_name));
	strlcpy(s.hook_name, cfg.hook_point, sizeof(s.hook_name));
	strlcpy(s.dataset_path, cfg.dataset_path, sizeof(s.dataset_path));
	s.hook_layer = (int) cfg.hook_point_layer;
	s.head_index = (int) cfg.hook_point_head_index;
	s.context_size = (int) cfg.context_size;
	s.prepend_bos = cfg.prepend_bos;
	s.w_enc = w.w_enc;
	s.b_enc = w.b_enc;
	s.w_dec = w.w_dec;
	s.b_dec = w.b_dec;
	s.log10_sparsity = run_log10_sparsity(run_id, w.m);

	if (mkdir(dir, 0755) != 0)
	{
		bool		exists = errno == EEXIST;

		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir),
				 exists ? errhint("sae_export writes a new directory; give a path that does not exist yet.") : 0));
	}
	if (sae_saelens_write(dir, &s, &err) != SAE_OK)
	{
		int			saved = errno;

		remove_export(dir);
		errno = saved;
		SaeReportError(&err);
	}
	SaeFreeRunWeights(&w);
	PG_RETURN_TEXT_P(cstring_to_text(dir));
}

/* Append "key": value-as-JSON-string to a JSON object being built. */
static void
add_string(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ", \"%s\": ", key);
	escape_json(buf, value);
}

/* The run's config in our keys, parsed and checked like any sae_train config. */
static void
import_config(const SaeSaelensSae *s, const char *model, const char *path, SaeConfig *cfg)
{
	StringInfoData buf;
	const char *base = strrchr(path, '/');

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"d_in\": %d, \"d_sae\": %d, \"hook_point_layer\": %d, "
					 "\"apply_b_dec_to_input\": %s, \"prepend_bos\": %s",
					 s->d_in, s->d_sae, s->hook_layer, s->apply_b_dec_to_input ? "true" : "false",
					 s->prepend_bos ? "true" : "false");
	add_string(&buf, "model_name", model);
	add_string(&buf, "hook_point", s->hook_name);
	/* a dataset name for sae_analyze's default; SAELens's may be a hub path we do not have */
	add_string(&buf, "dataset_path", s->dataset_path[0] ? s->dataset_path : "none");
	add_string(&buf, "run_name", base && base[1] ? base + 1 : path);
	if (s->head_index >= 0)
		appendStringInfo(&buf, ", \"hook_point_head_index\": %d", s->head_index);
	if (s->context_size > 0)
		appendStringInfo(&buf, ", \"context_size\": %d", s->context_size);
	appendStringInfoChar(&buf, '}');
	SaeParseConfig(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data))), cfg);
}

/* Rows for a read folder; returns the new run_id. */
static int64
store_import(const SaeSaelensSae *s, const char *model, const char *path)
{
	SaeConfig	cfg;
	SaeRunWeights w = {.d = s->d_in, .m = s->d_sae, .sae_type = SAE_TYPE_UNIT_NORM,
	.apply_b_dec_to_input = s->apply_b_dec_to_input, .w_enc = s->w_enc, .b_enc = s->b_enc,
	.w_dec = s->w_dec, .b_dec = s->b_dec};
	float	   *rate = NULL;
	int64		run_id;
	Datum		v[3];

	import_config(s, model, path, &cfg);
	if (s->log10_sparsity)
	{
		/* SAELens stores log10(rate + 1e-10) */
		rate = palloc(sizeof(float) * s->d_sae);
		for (int i = 0; i < s->d_sae; i++)
			rate[i] = (float) fmax(0.0, pow(10.0, s->log10_sparsity[i]) - 1e-10);
	}
	SPI_connect();
	run_id = SaeStoreRunStart(&cfg, psprintf("saelens:%s", path), "cpu");
	SaeStoreFeatureRows(run_id, &w, rate);
	v[0] = Int64GetDatum(run_id);
	v[1] = CStringGetTextDatum(path);
	v[2] = Int32GetDatum(s->format);
	if (SPI_execute_with_args("UPDATE sae.runs SET status = 'completed', finished_at = now(), "
							  "final_metrics = jsonb_build_object('imported_from', $2::text, 'saelens_format', $3::int) "
							  "WHERE run_id = $1", 3, (Oid[]) {INT8OID, TEXTOID, INT4OID}, v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.runs");
	SPI_finish();
	return run_id;
}

/*
 * sae_import(path, model): a SAELens SAE folder (v1.x or v6 format) as a
 * completed run.  The model defaults to the one cfg.json names; when given,
 * it must be loaded and its hook must have the SAE's width.
 */
Datum
sae_import(PG_FUNCTION_ARGS)
{
	char	   *path;
	const char *model;
	SaeSaelensSae s;
	SaeError	err;
	volatile int64 run_id = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("path must not be null")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_server_files(ROLE_PG_READ_SERVER_FILES, "pg_read_server_files", "read an SAE folder on the server");
	check_absolute(path);
	if (sae_saelens_read(path, &s, &err) != SAE_OK)
		SaeReportError(&err);
	PG_TRY();
	{
		model = PG_ARGISNULL(1) ? s.model_name : text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (model[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cfg.json of \"%s\" names no model", path),
					 errhint("Name the loaded model the SAE reads: sae_import(path, 'model').")));
		if (!PG_ARGISNULL(1))
		{
			SaeConfig	cfg;

			import_config(&s, model, path, &cfg);
			(void) SaeConfigHook(SaeGetModel(model), &cfg, cfg.hook_point_layer);
		}
		run_id = store_import(&s, model, path);
	}
	PG_FINALLY();
	{
		sae_saelens_free(&s);
	}
	PG_END_TRY();
	PG_RETURN_INT64(run_id);
}
