/*
 * evaluate.c — SAELens's evaluation of SAEs trained on a model: during
 * training (rows of sae.train_log), at the end (sae.runs.final_metrics ->
 * 'eval') and on demand with sae_evaluate(run_id, n_batches).
 *
 * The engine (eval.h) runs the model with and without the SAE; this file
 * finds the tokens, uploads the weights and stores the numbers.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "eval.h"
#include "infer.h"

#include <math.h>

PG_FUNCTION_INFO_V1(sae_evaluate);

/* Evaluate host weights (SAELens layout) at cfg's hook on n contexts. */
void
SaeEvaluateWeights(SaeLm *lm, const SaeConfig *cfg, const SaeRunWeights *w,
				   const int32 *tokens, int n, SaeEvalResult *out)
{
	SaeEvalSpec spec = {0};
	SaeWeights *volatile sae = NULL;
	SaeError	err;
	int			rc;

	spec.lm = lm;
	spec.hook = SaeConfigHook(lm, cfg, cfg->hook_point_layer);
	spec.head_index = (int) cfg->hook_point_head_index;
	spec.d_in = w->d;
	spec.d_sae = w->m;
	spec.should_stop = SaeStopIfInterrupted;
	sae = SaeUploadRunWeights(sae_lm_backend(lm), w);
	spec.sae = sae;
	PG_TRY();
	{
		rc = sae_eval(&spec, tokens, n, (int) cfg->context_size, out, &err);
	}
	PG_CATCH();
	{
		sae_weights_destroy(sae);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sae_weights_destroy(sae);
	if (rc != SAE_OK)
		SaeReportError(&err);
}

/* The metrics as (name, value) pairs, in one order for JSON and for rows. */
static int
eval_pairs(const SaeEvalResult *r, const char **names, double *values)
{
	static const char *const n[] = {"ce_loss_score", "ce_loss_without_sae", "ce_loss_with_sae",
		"ce_loss_with_ablation", "kl_div_score", "kl_div_with_sae", "kl_div_with_ablation",
	"l2_norm_in", "l2_norm_out", "l2_ratio", "explained_variance", "mse", "l0", "tokens"};
	double		v[] = {r->ce_loss_score, r->ce_loss_without_sae, r->ce_loss_with_sae,
		r->ce_loss_with_ablation, r->kl_div_score, r->kl_div_with_sae, r->kl_div_with_ablation,
	r->l2_norm_in, r->l2_norm_out, r->l2_ratio, r->explained_variance, r->mse, r->l0, (double) r->tokens};
	int			count = sizeof(v) / sizeof(v[0]);

	for (int i = 0; i < count; i++)
	{
		names[i] = n[i];
		values[i] = v[i];
	}
	return count;
}

/* final_metrics->'eval' of a run (inside the caller's SPI connection). */
void
SaeStoreEvalFinal(int64 run_id, const SaeEvalResult *r)
{
	const char *names[16];
	double		values[16];
	int			n = eval_pairs(r, names, values);
	StringInfoData s;
	Datum		args[2];

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"eval\": {");
	for (int i = 0; i < n; i++)
		appendStringInfo(&s, "%s\"%s\": %s", i ? ", " : "", names[i],
						 isfinite(values[i]) ? psprintf("%.9g", values[i]) : "null");
	appendStringInfoString(&s, "}}");
	args[0] = Int64GetDatum(run_id);
	args[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data));
	if (SPI_execute_with_args("UPDATE sae.runs SET final_metrics = coalesce(final_metrics, '{}') || $2 WHERE run_id = $1",
							  2, (Oid[]) {INT8OID, JSONBOID}, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.runs");
}

/* The evaluation columns of a train_log row (inside the caller's SPI connection). */
void
SaeStoreEvalStep(int64 run_id, int64 step, const SaeEvalResult *r)
{
	Datum		v[9] = {Int64GetDatum(run_id), Int64GetDatum(step),
		Float4GetDatum(r->ce_loss_score), Float4GetDatum(r->ce_loss_without_sae),
		Float4GetDatum(r->ce_loss_with_sae), Float4GetDatum(r->ce_loss_with_ablation),
	Float4GetDatum(r->kl_div_score), Float4GetDatum(r->kl_div_with_sae), Float4GetDatum(r->kl_div_with_ablation)};
	Oid			t[9] = {INT8OID, INT8OID, FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID,
	FLOAT4OID, FLOAT4OID};

	if (SPI_execute_with_args("UPDATE sae.train_log SET ce_loss_score = $3, ce_loss_without_sae = $4, "
							  "ce_loss_with_sae = $5, ce_loss_with_ablation = $6, kl_div_score = $7, "
							  "kl_div_with_sae = $8, kl_div_with_ablation = $9 WHERE run_id = $1 AND step = $2",
							  9, t, v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.train_log");
}

Datum
sae_evaluate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		run_id;
	int			n_batches;
	SaeConfig	cfg;
	SaeRunWeights w;
	SaeDatasetInfo ds;
	SaeLm	   *lm;
	SaeTokenSource src;
	SaeEvalResult r;
	SaeError	err;
	int32	   *tokens;
	int64		n,
				got;
	const char *names[16];
	double		values[16];
	int			count;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
	{
		InitMaterializedSRF(fcinfo, 0);		/* no run: no rows */
		return (Datum) 0;
	}
	run_id = PG_GETARG_INT64(0);
	n_batches = PG_GETARG_INT32(1);
	if (n_batches < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("n_batches must be positive")));
	SaeRunConfig(run_id, &cfg);
	lm = SaeRunModel(run_id, &cfg, "sae_evaluate measures SAEs in a model: CE loss with the SAE spliced in.");
	SaeRunDataset(run_id, &cfg, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)), &ds);
	cfg.context_size = ds.context_size;
	SaeLoadRunWeights(run_id, &w);
	n = (int64) n_batches * cfg.store_batch_size;
	tokens = palloc_extended(sizeof(int32) * n * cfg.context_size, MCXT_ALLOC_HUGE);
	SPI_connect();
	src = SaeDatasetTokens(ds.dataset_id, (int) cfg.context_size);
	got = src.read(src.ctx, tokens, n, &err);
	if (got <= 0)
		ereport(ERROR, (errcode(ERRCODE_NO_DATA_FOUND), errmsg("dataset \"%s\" has no contexts", ds.name)));
	SaeEvaluateWeights(lm, &cfg, &w, tokens, (int) got, &r);
	SaeStoreEvalFinal(run_id, &r);
	SPI_finish();
	SaeFreeRunWeights(&w);

	InitMaterializedSRF(fcinfo, 0);
	count = eval_pairs(&r, names, values);
	for (int i = 0; i < count; i++)
	{
		Datum		v[2] = {CStringGetTextDatum(names[i]), Float8GetDatum(values[i])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
