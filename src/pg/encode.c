/*
 * encode.c — sae_encode and sae_reconstruct: a trained SAE on one vector.
 *
 * The weights of a run are read from sae.features / sae.tensors once per
 * query and call site (cached in fn_extra), so encoding a whole table costs
 * one load.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "infer.h"

PG_FUNCTION_INFO_V1(sae_encode);
PG_FUNCTION_INFO_V1(sae_reconstruct);

typedef struct CachedSae
{
	SaeBackend *be;
	int64		run_id;
	int			d,
				m;
	SaeWeights *weights;
} CachedSae;

static void
destroy_cached(void *arg)
{
	CachedSae  *c = arg;

	sae_weights_destroy(c->weights);
	c->weights = NULL;
}

/* d, m, sae_type and apply_b_dec_to_input of a completed run. */
static void
load_run_shape(int64 run_id, int *d, int *m, int *sae_type, bool *apply_b_dec)
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
	*d = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	*m = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	*sae_type = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) ? SAE_TYPE_TANH : SAE_TYPE_UNIT_NORM;
	*apply_b_dec = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
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

/* Read a run's weights into host arrays and upload them. */
static SaeWeights *
load_weights(SaeBackend *be, int64 run_id, int *d_out, int *m_out)
{
	int			d,
				m,
				sae_type;
	bool		apply_b_dec;
	Oid			types[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(run_id)};
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec,
			   *column;
	SaeWeights *w;
	SaeError	err;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	load_run_shape(run_id, &d, &m, &sae_type, &apply_b_dec);
	w_enc = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(float) * (size_t) d * m);
	w_dec = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(float) * (size_t) d * m);
	b_enc = palloc(sizeof(float) * m);
	b_dec = palloc(sizeof(float) * d);
	column = palloc(sizeof(float) * d);
	if (SPI_execute_with_args("SELECT w_enc, w_dec, b_enc FROM sae.features WHERE run_id = $1 "
							  "ORDER BY feature_id", 1, types, v, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) m)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("run %lld should have %d rows in sae.features, found %llu",
						(long long) run_id, m, (unsigned long long) SPI_processed)));
	for (int i = 0; i < m; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		copy_vector(tup, SPI_tuptable->tupdesc, 1, column, d, "sae.features.w_enc");
		for (int j = 0; j < d; j++)
			w_enc[(size_t) j * m + i] = column[j];
		copy_vector(tup, SPI_tuptable->tupdesc, 2, w_dec + (size_t) i * d, d, "sae.features.w_dec");
		b_enc[i] = DatumGetFloat4(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	}
	if (SPI_execute_with_args("SELECT data FROM sae.tensors WHERE run_id = $1 AND name = 'b_dec' "
							  "AND chunk = 0", 1, types, v, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("run %lld has no b_dec in sae.tensors", (long long) run_id)));
	copy_vector(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, b_dec, d, "sae.tensors b_dec");
	if (sae_weights_create(be, d, m, sae_type, apply_b_dec,
						   w_enc, b_enc, w_dec, b_dec, &w, &err) != SAE_OK)
		SaeReportError(&err);
	SPI_finish();
	*d_out = d;
	*m_out = m;
	return w;
}

/* The cached SAE of this call site, (re)loaded when the run changes. */
static CachedSae *
get_sae(FunctionCallInfo fcinfo, int64 run_id)
{
	CachedSae  *c = fcinfo->flinfo->fn_extra;

	if (c != NULL && c->run_id == run_id && c->weights != NULL)
		return c;
	if (c == NULL)
	{
		MemoryContextCallback *cb;

		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CachedSae));
		/* reset callbacks run last-registered first: weights before backend */
		c->be = SaeBackendForContext(fcinfo->flinfo->fn_mcxt);
		cb = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(MemoryContextCallback));
		cb->func = destroy_cached;
		cb->arg = c;
		MemoryContextRegisterResetCallback(fcinfo->flinfo->fn_mcxt, cb);
		fcinfo->flinfo->fn_extra = c;
	}
	else
		destroy_cached(c);
	c->run_id = run_id;
	c->weights = load_weights(c->be, run_id, &c->d, &c->m);
	return c;
}

/* Encode (and optionally reconstruct) one vector. */
static ArrayType *
apply_sae(FunctionCallInfo fcinfo, bool reconstruct)
{
	int64		run_id = PG_GETARG_INT64(0);
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	CachedSae  *c = get_sae(fcinfo, run_id);
	int			n;
	float	   *x = SaeArrayToFloats(arr, &n, "activation");
	float	   *f,
			   *recon = NULL;
	SaeError	err;

	if (n != c->d)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("activation has %d values but run %lld has d_in %d", n, (long long) run_id, c->d)));
	f = palloc(sizeof(float) * c->m);
	if (reconstruct)
		recon = palloc(sizeof(float) * c->d);
	if (sae_weights_apply(c->weights, x, 1, f, recon, &err) != SAE_OK)
		SaeReportError(&err);
	return reconstruct ? SaeFloatArray(recon, c->d) : SaeFloatArray(f, c->m);
}

Datum
sae_encode(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(apply_sae(fcinfo, false));
}

Datum
sae_reconstruct(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(apply_sae(fcinfo, true));
}
