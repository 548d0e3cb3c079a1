/*
 * synthetic_sql.c — sae_synthetic_dictionary and sae_synthetic_activations.
 *
 * Rows are produced one per call, so a million-row table streams rather
 * than materialising.  The C names end in _srf because the engine's
 * generator functions (synthetic.h) already have the SQL names.
 */
#include "sae_pg.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"

#include "synthetic.h"

PG_FUNCTION_INFO_V1(sae_synthetic_dictionary_srf);
PG_FUNCTION_INFO_V1(sae_synthetic_activations_srf);

typedef struct SynthState
{
	int			d,
				n_features;
	double		active;
	int64		seed;
	float	   *dict;
	float	   *row;
} SynthState;

/* Check the sizes and build the dictionary in the SRF's memory. */
static SynthState *
synth_start(FunctionCallInfo fcinfo, FuncCallContext *fctx, int d, int n_features, double active, int64 seed)
{
	MemoryContext old = MemoryContextSwitchTo(fctx->multi_call_memory_ctx);
	SynthState *s = palloc0(sizeof(SynthState));

	if (d < 1 || d > 65536 || n_features < 1 || (int64) d * n_features > 64 * 1024 * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("d_in %d and n_features %d are out of range", d, n_features),
				 errhint("Use 1 <= d_in <= 65536, n_features >= 1 and d_in * n_features <= 67108864.")));
	if (!(active > 0) || active > n_features)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("active_per_row %g is out of range", active),
				 errhint("Use a value in (0, n_features].")));
	s->d = d;
	s->n_features = n_features;
	s->active = active;
	s->seed = seed;
	s->dict = palloc(sizeof(float) * (size_t) d * n_features);
	s->row = palloc(sizeof(float) * d);
	sae_synthetic_dictionary(d, n_features, seed, s->dict);
	if (get_call_result_type(fcinfo, NULL, &fctx->tuple_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	fctx->tuple_desc = BlessTupleDesc(fctx->tuple_desc);
	MemoryContextSwitchTo(old);
	return s;
}

/* One (id, real[]) result tuple. */
static Datum
synth_tuple(FuncCallContext *fctx, Datum id, const float *v, int d)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = id;
	values[1] = PointerGetDatum(SaeFloatArray(v, d));
	return HeapTupleGetDatum(heap_form_tuple(fctx->tuple_desc, values, nulls));
}

Datum
sae_synthetic_dictionary_srf(PG_FUNCTION_ARGS)
{
	FuncCallContext *fctx;
	SynthState *s;

	if (SRF_IS_FIRSTCALL())
	{
		fctx = SRF_FIRSTCALL_INIT();
		fctx->user_fctx = synth_start(fcinfo, fctx, PG_GETARG_INT32(0), PG_GETARG_INT32(1), 1,
									  PG_GETARG_INT64(2));
		fctx->max_calls = PG_GETARG_INT32(1);
	}
	fctx = SRF_PERCALL_SETUP();
	s = fctx->user_fctx;
	if (fctx->call_cntr < fctx->max_calls)
	{
		int			i = (int) fctx->call_cntr;

		SRF_RETURN_NEXT(fctx, synth_tuple(fctx, Int32GetDatum(i), s->dict + (size_t) i * s->d, s->d));
	}
	SRF_RETURN_DONE(fctx);
}

Datum
sae_synthetic_activations_srf(PG_FUNCTION_ARGS)
{
	FuncCallContext *fctx;
	SynthState *s;

	if (SRF_IS_FIRSTCALL())
	{
		int64		n_rows = PG_GETARG_INT64(0);

		fctx = SRF_FIRSTCALL_INIT();
		if (n_rows < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("n_rows must not be negative: %lld", (long long) n_rows)));
		fctx->user_fctx = synth_start(fcinfo, fctx, PG_GETARG_INT32(1), PG_GETARG_INT32(2),
									  PG_GETARG_FLOAT4(3), PG_GETARG_INT64(4));
		fctx->max_calls = (uint64) n_rows;
	}
	fctx = SRF_PERCALL_SETUP();
	s = fctx->user_fctx;
	if (fctx->call_cntr < fctx->max_calls)
	{
		int64		row = (int64) fctx->call_cntr;

		sae_synthetic_row(s->dict, s->d, s->n_features, s->active, s->seed, row, s->row);
		SRF_RETURN_NEXT(fctx, synth_tuple(fctx, Int64GetDatum(row + 1), s->row, s->d));
	}
	SRF_RETURN_DONE(fctx);
}
