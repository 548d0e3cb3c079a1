/*
 * weights.c — reading a run's weights back from sae.features and sae.tensors.
 *
 * Used by sae_encode / sae_reconstruct and by sae_train's
 * "from_pretrained_run"; SaeDownloadWeights fills the same struct from a
 * trainer, for storing.  The arrays are allocated in the caller's memory
 * context (not SPI's, which ends with SPI_finish).
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* Shape, architecture and status of a run; errors if it does not exist or has not completed. */
static void
load_run_shape(int64 run_id, SaeRunWeights *w)
{
	Oid			types[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(run_id)};
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	if (SPI_execute_with_args("SELECT d_in, d_sae, architecture = 'tanh_sae', "
							  "coalesce((config->>'apply_b_dec_to_input')::boolean, true), status "
							  "FROM sae.runs WHERE run_id = $1",
							  1, types, v, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.runs");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run %lld does not exist", (long long) run_id),
				 errhint("See SELECT run_id, run_name FROM sae.runs.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	w->d = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	w->m = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	w->sae_type = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) ? SAE_TYPE_TANH : SAE_TYPE_UNIT_NORM;
	w->apply_b_dec_to_input = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	if (strcmp(TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull)), "completed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld has not completed", (long long) run_id)));
}

/* Copy one real[] column value of exactly n floats into dst. */
static void
copy_vector(HeapTuple tup, TupleDesc desc, int col, float *dst, int n, const char *what)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tup, desc, col, &isnull);
	int			len;
	float	   *vals;

	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("%s is NULL", what)));
	vals = SaeArrayToFloats(DatumGetArrayTypeP(value), &len, what);
	if (len != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s has %d values, expected %d", what, len, n)));
	memcpy(dst, vals, sizeof(float) * n);
	pfree(vals);
}

/* Host arrays for w's d and m in ctx (the weight matrices may pass 1 GB). */
static void
alloc_weights(SaeRunWeights *w, MemoryContext ctx)
{
	size_t		dm = (size_t) w->d * w->m;

	w->w_enc = MemoryContextAllocHuge(ctx, sizeof(float) * dm);
	w->w_dec = MemoryContextAllocHuge(ctx, sizeof(float) * dm);
	w->b_enc = MemoryContextAllocHuge(ctx, sizeof(float) * w->m);
	w->b_dec = MemoryContextAllocHuge(ctx, sizeof(float) * w->d);
}

void
SaeDownloadWeights(SaeTrainer *t, const SaeConfig *cfg, SaeRunWeights *w)
{
	w->d = (int) cfg->d_in;
	w->m = (int) cfg->d_sae;
	w->sae_type = cfg->sae_type;
	w->apply_b_dec_to_input = cfg->apply_b_dec_to_input;
	alloc_weights(w, CurrentMemoryContext);
	sae_trainer_get_params(t, w->w_enc, w->b_enc, w->w_dec, w->b_dec);
}

void
SaeFreeRunWeights(SaeRunWeights *w)
{
	pfree(w->w_enc);
	pfree(w->w_dec);
	pfree(w->b_enc);
	pfree(w->b_dec);
}

void
SaeLoadRunWeights(int64 run_id, SaeRunWeights *w)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(run_id)};
	float	   *column;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	load_run_shape(run_id, w);
	alloc_weights(w, caller);
	column = palloc(sizeof(float) * w->d);
	if (SPI_execute_with_args("SELECT w_enc, w_dec, b_enc FROM sae.features WHERE run_id = $1 "
							  "ORDER BY feature_id", 1, types, v, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) w->m)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("run %lld should have %d rows in sae.features, found %llu",
						(long long) run_id, w->m, (unsigned long long) SPI_processed)));
	for (int i = 0; i < w->m; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		copy_vector(tup, SPI_tuptable->tupdesc, 1, column, w->d, "sae.features.w_enc");
		for (int j = 0; j < w->d; j++)
			w->w_enc[(size_t) j * w->m + i] = column[j];
		copy_vector(tup, SPI_tuptable->tupdesc, 2, w->w_dec + (size_t) i * w->d, w->d, "sae.features.w_dec");
		w->b_enc[i] = DatumGetFloat4(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	}
	if (SPI_execute_with_args("SELECT data FROM sae.tensors WHERE run_id = $1 AND name = 'b_dec' "
							  "AND chunk = 0", 1, types, v, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("run %lld has no b_dec in sae.tensors", (long long) run_id)));
	copy_vector(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, w->b_dec, w->d, "sae.tensors b_dec");
	SPI_finish();
}

/* The config a run was trained with. */
void
SaeRunConfig(int64 run_id, SaeConfig *cfg)
{
	Datum		arg = Int64GetDatum(run_id);
	bool		isnull;
	Jsonb	   *config;
	MemoryContext caller = CurrentMemoryContext,
				old;

	SPI_connect();
	if (SPI_execute_with_args("SELECT config FROM sae.runs WHERE run_id = $1", 1, (Oid[]) {INT8OID},
							  &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.runs");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run %lld does not exist", (long long) run_id)));
	/* a copy in the caller's memory: SPI_finish frees SPI's */
	old = MemoryContextSwitchTo(caller);
	config = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	MemoryContextSwitchTo(old);
	SPI_finish();
	SaeParseConfig(config, cfg);
}

SaeWeights *
SaeUploadRunWeights(SaeBackend *be, const SaeRunWeights *w)
{
	SaeWeights *out;
	SaeError	err;

	if (sae_weights_create(be, w->d, w->m, w->sae_type, w->apply_b_dec_to_input, w->w_enc,
						   w->b_enc, w->w_dec, w->b_dec, &out, &err) != SAE_OK)
		SaeReportError(&err);
	return out;
}

SaeLm *
SaeRunModel(int64 run_id, const SaeConfig *cfg, const char *hint)
{
	if (cfg->model_name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("run %lld was trained on a table of activations, not on a model", (long long) run_id),
				 errhint("%s", hint)));
	return SaeGetModelOn(cfg->model_name, SaeSessionDevice());
}

/* The dataset's tokens must be the model's: another tokenizer's ids would mean other tokens. */
void
SaeRunDataset(int64 run_id, const SaeConfig *cfg, const char *name, SaeDatasetInfo *ds)
{
	SaeDatasetLookup(name ? name : cfg->dataset_path, ds);
	if (strcmp(ds->model, cfg->model_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dataset \"%s\" was tokenized for model \"%s\", run %lld reads model \"%s\"",
						ds->name, ds->model, (long long) run_id, cfg->model_name),
				 errhint("Make a dataset with the run's model: sae_create_dataset(name, '%s', query).",
						 cfg->model_name)));
}
