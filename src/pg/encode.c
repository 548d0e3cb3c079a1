/*
 * encode.c — sae_encode and sae_reconstruct: a trained SAE on one vector.
 *
 * The weights of a run are read (weights.c) once per query and call site
 * (cached in fn_extra), so encoding a whole table costs one load.
 */
#include "sae_pg.h"

#include "fmgr.h"
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

/* Read a run's weights and upload them to the backend. */
static SaeWeights *
load_weights(SaeBackend *be, int64 run_id, int *d_out, int *m_out)
{
	SaeRunWeights rw;
	SaeWeights *w;

	SaeLoadRunWeights(run_id, &rw);
	w = SaeUploadRunWeights(be, &rw);
	SaeFreeRunWeights(&rw);
	*d_out = rw.d;
	*m_out = rw.m;
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
		c->be = SaeBackendForContext(fcinfo->flinfo->fn_mcxt, SAE_DEVICE_CPU, false);
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
