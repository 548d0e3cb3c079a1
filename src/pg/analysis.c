/*
 * analysis.c — what a trained SAE's features mean: sae_top_logits (the
 * tokens each decoder direction promotes and suppresses), sae_analyze
 * (firing rates, activation statistics and top examples over a dataset)
 * and sae_feature_activations (what fires on my text?).
 *
 * The engine (analysis.h) does the math; this file finds the run's model
 * and weights, feeds dataset contexts and stores the rows.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "analysis.h"
#include "infer.h"

#include <math.h>

PG_FUNCTION_INFO_V1(sae_top_logits);
PG_FUNCTION_INFO_V1(sae_analyze);
PG_FUNCTION_INFO_V1(sae_feature_activations);

/* Tokens of each top example's window before and after its top token. */
#define EXAMPLE_BEFORE 15
#define EXAMPLE_AFTER 5
/* sae_analyze encodes at most this many bytes of feature activations at once. */
#define ANALYZE_BATCH_BYTES ((size_t) 256 << 20)
/* sae_analyze's k above this is refused: the examples would not fit in memory for wide SAEs. */
#define MAX_EXAMPLES 1000
/* sae_top_logits's k above this is refused (and above the vocabulary, lowered to it). */
#define MAX_LOGITS 100000

static SPIPlanPtr stats_plan = NULL;
static SPIPlanPtr example_plan = NULL;

/* A run's SAE on its model, its weights uploaded to the model's backend. */
typedef struct RunOnModel
{
	SaeConfig	cfg;
	SaeRunWeights w;
	SaeLm	   *lm;
	SaeHook		hook;
	SaeWeights *sae;			/* freed with the memory context that opened it */
} RunOnModel;

static void
free_sae(void *arg)
{
	RunOnModel *r = arg;

	sae_weights_destroy(r->sae);
	r->sae = NULL;
}

/* Find the run's model and weights; what names the calling function in errors. */
static RunOnModel *
open_run(int64 run_id, const char *what)
{
	RunOnModel *r = palloc0(sizeof(RunOnModel));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	SaeRunConfig(run_id, &r->cfg);
	r->lm = SaeRunModel(run_id, &r->cfg,
						psprintf("%s reads features through the language model they were trained on.", what));
	r->hook = SaeConfigHook(r->lm, &r->cfg, r->cfg.hook_point_layer);
	SaeLoadRunWeights(run_id, &r->w);
	r->sae = SaeUploadRunWeights(sae_lm_backend(r->lm), &r->w);
	/* the backend's copy goes when this call's memory does, on error too */
	cb->func = free_sae;
	cb->arg = r;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return r;
}

static void
check_k(int k, int max)
{
	if (k < 1 || k > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and %d, not %d", max, k)));
}

/* Features whose logits go into sae.feature_logits with one INSERT. */
#define LOGIT_CHUNK 512

/* Token texts made once per call, in the memory context of the cache array itself. */
static Datum
token_text(SaeLm *lm, text **cache, int32 id)
{
	if (cache[id] == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(cache));

		cache[id] = SaeTokenText(lm, id);
		MemoryContextSwitchTo(old);
	}
	return PointerGetDatum(cache[id]);
}

/*
 * Features f0..f1-1's logits (top and bottom) as rows: returned, and stored
 * with one INSERT of unnested arrays, which costs a fraction of a statement
 * per row.
 */
static void
put_logits(ReturnSetInfo *rsinfo, SaeLm *lm, text **cache, int64 run_id, int f0, int f1, int k,
		   int32 *const *ids, float *const *vals)
{
	int			n = (f1 - f0) * 2 * k,
				at = 0;
	Datum	   *col[6];
	Oid			types[6] = {INT4OID, BOOLOID, INT4OID, INT4OID, TEXTOID, FLOAT4OID};
	Datum		args[7];

	for (int c = 0; c < 6; c++)
		col[c] = palloc(sizeof(Datum) * n);
	for (int f = f0; f < f1; f++)
		for (int side = 0; side < 2; side++)
			for (int i = 0; i < k; i++, at++)
			{
				size_t		j = (size_t) f * k + i;
				Datum		row[6];
				bool		nulls[6] = {0};

				col[0][at] = Int32GetDatum(f);
				col[1][at] = BoolGetDatum(side == 1);
				col[2][at] = Int32GetDatum(i + 1);
				col[3][at] = Int32GetDatum(ids[side][j]);
				col[4][at] = token_text(lm, cache, ids[side][j]);
				col[5][at] = Float4GetDatum(vals[side][j]);
				/* returned as feature_id, rank, token_id, token, logit, bottom */
				row[0] = col[0][at];
				row[1] = col[2][at];
				row[2] = col[3][at];
				row[3] = col[4][at];
				row[4] = col[5][at];
				row[5] = col[1][at];
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
			}
	args[0] = Int64GetDatum(run_id);
	for (int c = 0; c < 6; c++)
	{
		int16		len;
		bool		byval;
		char		align;

		get_typlenbyvalalign(types[c], &len, &byval, &align);
		args[c + 1] = PointerGetDatum(construct_array(col[c], n, types[c], len, byval, align));
	}
	if (SPI_execute_with_args("INSERT INTO sae.feature_logits (run_id, feature_id, bottom, rank, token_id, token, logit) "
							  "SELECT $1, * FROM unnest($2, $3, $4, $5, $6, $7)", 7,
							  (Oid[]) {INT8OID, INT4ARRAYOID, BOOLARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
							  TEXTARRAYOID, FLOAT4ARRAYOID}, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into sae.feature_logits");
}

/*
 * sae_top_logits(run_id, k): for every feature the k tokens whose logits
 * its decoder direction raises most and the k it lowers most (W_dec W_U),
 * stored in sae.feature_logits in place of the run's earlier ones.
 */
Datum
sae_top_logits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		run_id = PG_GETARG_INT64(0);
	int			k = PG_GETARG_INT32(1);
	RunOnModel *r;
	const SaeLmConfig *mc;
	int32	   *ids[2];
	float	   *vals[2];
	size_t		n;
	SaeError	err;
	text	  **cache;
	MemoryContext chunk_ctx;

	check_k(k, MAX_LOGITS);
	r = open_run(run_id, "sae_top_logits");
	mc = sae_lm_config(r->lm);
	if (r->w.d != mc->d_model)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("run %lld reads %s, %d wide, not the residual stream (%d wide)",
						(long long) run_id, r->cfg.hook_point, r->w.d, mc->d_model),
				 errhint("Top logits project decoder rows onto the unembedding; they need an SAE of the residual stream, hook_attn_out or hook_mlp_out.")));
	if (k > mc->d_vocab)
	{
		ereport(NOTICE, (errmsg("k %d is more than the vocabulary: all %d tokens ranked", k, mc->d_vocab)));
		k = mc->d_vocab;
	}
	n = (size_t) r->w.m * k;
	for (int side = 0; side < 2; side++)
	{
		ids[side] = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
		vals[side] = palloc_extended(sizeof(float) * n, MCXT_ALLOC_HUGE);
	}
	if (sae_decoder_top_logits(r->lm, r->w.w_dec, r->w.m, k, ids[0], vals[0], ids[1], vals[1],
					   SaeStopIfInterrupted, NULL, &err) != SAE_OK)
		SaeReportError(&err);

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM sae.feature_logits WHERE run_id = $1", 1,
							  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(run_id)}, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sae.feature_logits");
	cache = palloc0(sizeof(text *) * mc->d_vocab);
	chunk_ctx = AllocSetContextCreate(CurrentMemoryContext, "sae logit rows", ALLOCSET_DEFAULT_SIZES);
	for (int f0 = 0; f0 < r->w.m; f0 += LOGIT_CHUNK)
	{
		MemoryContext old = MemoryContextSwitchTo(chunk_ctx);

		put_logits(rsinfo, r->lm, cache, run_id, f0, Min(f0 + LOGIT_CHUNK, r->w.m), k, ids, vals);
		MemoryContextSwitchTo(old);
		MemoryContextReset(chunk_ctx);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	return (Datum) 0;
}

/* Contexts per batch: about 4096 tokens, and the activations under ANALYZE_BATCH_BYTES. */
static int
analyze_batch(int T, int m)
{
	int			by_tokens = 4096 / T,
				by_bytes = (int) (ANALYZE_BATCH_BYTES / ((size_t) T * m * sizeof(float)));
	int			b = by_tokens < by_bytes ? by_tokens : by_bytes;

	return b < 1 ? 1 : b;
}

/* One row of sae.feature_stats. */
static void
store_stats(int64 run_id, int f, const SaeFeatureSummary *s, int64 n_tokens)
{
	Oid			types[9] = {INT8OID, INT4OID, INT8OID, FLOAT4OID, FLOAT4OID, FLOAT4OID,
	FLOAT4OID, FLOAT4OID, INT8ARRAYOID};
	SPIPlanPtr	plan = SaePrepareOnce(&stats_plan,
									  "INSERT INTO sae.feature_stats (run_id, feature_id, n_tokens, firing_rate, "
									  "log10_density, mean_activation, max_activation, histogram_max, histogram) "
									  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9, types);
	double		rate = n_tokens > 0 ? (double) s->n_fired / n_tokens : 0;
	Datum		bins[SAE_HIST_BINS];
	Datum		v[9];
	char		nulls[9] = "         ";

	for (int i = 0; i < SAE_HIST_BINS; i++)
		bins[i] = Int64GetDatum(s->hist[i]);
	v[0] = Int64GetDatum(run_id);
	v[1] = Int32GetDatum(f);
	v[2] = Int64GetDatum(n_tokens);
	v[3] = Float4GetDatum((float4) rate);
	v[4] = Float4GetDatum((float4) log10(rate + 1e-10));
	v[5] = Float4GetDatum(s->n_fired > 0 ? (float4) (s->sum / s->n_fired) : 0);
	nulls[5] = s->n_fired > 0 ? ' ' : 'n';
	v[6] = Float4GetDatum(s->max);
	nulls[6] = nulls[5];
	v[7] = Float4GetDatum(s->hist_top);
	nulls[7] = nulls[5];
	v[8] = PointerGetDatum(construct_array(bins, SAE_HIST_BINS, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	SaeExecutePlan(plan, v, nulls, SPI_OK_INSERT);
}

/* One row of sae.feature_examples. */
static void
store_example(int64 run_id, SaeLm *lm, int f, int rank, const SaeFeatureExample *e)
{
	Oid			types[10] = {INT8OID, INT4OID, INT4OID, FLOAT4OID, INT8OID, INT4OID, INT4OID,
	INT4ARRAYOID, TEXTARRAYOID, FLOAT4ARRAYOID};
	SPIPlanPtr	plan = SaePrepareOnce(&example_plan,
									  "INSERT INTO sae.feature_examples (run_id, feature_id, rank, activation, "
									  "context_id, position, window_start, token_ids, tokens, activations) "
									  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, types);
	text	   *tokens[EXAMPLE_BEFORE + 1 + EXAMPLE_AFTER];
	Datum		v[10];

	for (int i = 0; i < e->window_len; i++)
		tokens[i] = SaeTokenText(lm, e->tokens[i]);
	v[0] = Int64GetDatum(run_id);
	v[1] = Int32GetDatum(f);
	v[2] = Int32GetDatum(rank);
	v[3] = Float4GetDatum(e->activation);
	v[4] = Int64GetDatum(e->context);
	v[5] = Int32GetDatum(e->position);
	v[6] = Int32GetDatum(e->window_start);
	v[7] = PointerGetDatum(SaeIntArray(e->tokens, e->window_len));
	v[8] = PointerGetDatum(SaeTextArray(tokens, e->window_len));
	v[9] = PointerGetDatum(SaeFloatArray(e->acts, e->window_len));
	SaeExecutePlan(plan, v, NULL, SPI_OK_INSERT);
}

/* Replace the run's rows of sae.feature_stats and sae.feature_examples with these statistics. */
static void
store_analysis(int64 run_id, SaeLm *lm, const SaeFeatureStats *stats, int m, int k)
{
	Datum		id = Int64GetDatum(run_id);
	int64		n_tokens = sae_feature_stats_tokens(stats);
	SaeFeatureExample *ex = palloc(sizeof(SaeFeatureExample) * k);
	MemoryContext row_ctx = AllocSetContextCreate(CurrentMemoryContext, "sae analysis row",
												  ALLOCSET_DEFAULT_SIZES);

	if (SPI_execute_with_args("DELETE FROM sae.feature_stats WHERE run_id = $1", 1, (Oid[]) {INT8OID},
							  &id, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("DELETE FROM sae.feature_examples WHERE run_id = $1", 1, (Oid[]) {INT8OID},
							  &id, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the run's earlier analysis");
	for (int f = 0; f < m; f++)
	{
		MemoryContext old = MemoryContextSwitchTo(row_ctx);
		SaeFeatureSummary s;
		int			n;

		sae_feature_stats_summary(stats, f, &s);
		store_stats(run_id, f, &s, n_tokens);
		n = sae_feature_stats_examples(stats, f, ex);
		for (int i = 0; i < n; i++)
			store_example(run_id, lm, f, i + 1, &ex[i]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_ctx);
		if (f % 256 == 0)
			CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(row_ctx);
}

/* The run's final_metrics gain an "analysis" object: what was read and a summary. */
static void
store_summary(int64 run_id, const char *dataset, int64 n_tokens, int64 n_contexts, int dead,
			  double mean_l0)
{
	Datum		v[6] = {Int64GetDatum(run_id), CStringGetTextDatum(dataset), Int64GetDatum(n_tokens),
	Int64GetDatum(n_contexts), Int32GetDatum(dead), Float8GetDatum(mean_l0)};

	if (SPI_execute_with_args("UPDATE sae.runs SET final_metrics = coalesce(final_metrics, '{}') || "
							  "jsonb_build_object('analysis', jsonb_build_object('dataset', $2::text, "
							  "'n_tokens', $3::bigint, 'n_contexts', $4::bigint, 'dead_features', $5::int, "
							  "'mean_l0', $6::float8)) WHERE run_id = $1",
							  6, (Oid[]) {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID, FLOAT8OID},
							  v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.runs");
}

/* What sae_analyze read, and its summary. */
typedef struct AnalysisResult
{
	int64		n_tokens;
	int64		n_contexts;
	int			dead;
	double		mean_l0;
} AnalysisResult;

/* Feed up to want contexts of the dataset through the model and the SAE into stats. */
static void
analyze_contexts(RunOnModel *r, const SaeDatasetInfo *ds, SaeFeatureStats *stats, int64 want,
				 AnalysisResult *res)
{
	int			T = ds->context_size,
				m = r->w.m,
				B = analyze_batch(T, m);
	int32	   *tokens = palloc(sizeof(int32) * B * T);
	float	   *x = palloc_extended(sizeof(float) * B * T * sae_hook_width(r->lm, r->hook, T), MCXT_ALLOC_HUGE);
	float	   *feats = palloc_extended(sizeof(float) * B * T * m, MCXT_ALLOC_HUGE);
	SaeTokenSource src = SaeDatasetTokens(ds->dataset_id, T);
	SaeError	err;
	double		fired = 0;

	res->n_contexts = 0;
	while (res->n_contexts < want)
	{
		int64		got = src.read(src.ctx, tokens, Min(B, want - res->n_contexts), &err);

		if (got < 0)
			SaeReportError(&err);
		if (got == 0)
			break;
		if (sae_feature_acts(r->lm, r->hook, (int) r->cfg.hook_point_head_index, r->sae, r->w.d,
							 tokens, (int) got, T, x, feats, SaeStopIfInterrupted, NULL, &err) != SAE_OK)
			SaeReportError(&err);
		sae_feature_stats_add(stats, feats, tokens, (int) got, T, res->n_contexts,
							  sae_lm_config(r->lm)->bos_id);
		res->n_contexts += got;
		CHECK_FOR_INTERRUPTS();
	}
	res->n_tokens = sae_feature_stats_tokens(stats);
	res->dead = 0;
	for (int f = 0; f < m; f++)
	{
		SaeFeatureSummary s;

		sae_feature_stats_summary(stats, f, &s);
		res->dead += s.n_fired == 0;
		fired += s.n_fired;
	}
	res->mean_l0 = res->n_tokens > 0 ? fired / res->n_tokens : 0;
}

/*
 * sae_analyze(run_id, n_tokens, k, dataset): run the model and the SAE over
 * the first n_tokens of a token dataset (the run's own by default) and keep
 * per feature its firing rate, mean and max activation, an activation
 * histogram and the k contexts where it fires most.  BOS tokens are left
 * out: their activations are outliers (SAELens's exclude_special_tokens).
 */
Datum
sae_analyze(PG_FUNCTION_ARGS)
{
	int64		run_id = PG_GETARG_INT64(0);
	int64		want_tokens = PG_GETARG_INT64(1);
	int			k = PG_GETARG_INT32(2);
	RunOnModel *r;
	SaeDatasetInfo ds;
	SaeFeatureStats *volatile stats = NULL;
	SaeError	err;
	AnalysisResult res;
	instr_time	start,
				now;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		out[5];
	bool		nulls[5] = {0};

	check_k(k, MAX_EXAMPLES);
	if (want_tokens < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("n_tokens must be positive")));
	INSTR_TIME_SET_CURRENT(start);
	r = open_run(run_id, "sae_analyze");
	SaeRunDataset(run_id, &r->cfg, PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)), &ds);
	PG_TRY();
	{
		if (sae_feature_stats_create(r->w.m, k, EXAMPLE_BEFORE, EXAMPLE_AFTER,
									 (SaeFeatureStats **) &stats, &err) != SAE_OK)
			SaeReportError(&err);
		SPI_connect();
		analyze_contexts(r, &ds, stats, Min((want_tokens + ds.context_size - 1) / ds.context_size,
											ds.n_contexts), &res);
		store_analysis(run_id, r->lm, stats, r->w.m, k);
		store_summary(run_id, ds.name, res.n_tokens, res.n_contexts, res.dead, res.mean_l0);
		SPI_finish();
	}
	PG_FINALLY();
	{
		sae_feature_stats_free(stats);
	}
	PG_END_TRY();
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	out[0] = Int64GetDatum(res.n_tokens);
	out[1] = Int64GetDatum(res.n_contexts);
	out[2] = Int32GetDatum(res.dead);
	out[3] = Float4GetDatum((float4) res.mean_l0);
	out[4] = Float4GetDatum((float4) INSTR_TIME_GET_DOUBLE(now));
	InitMaterializedSRF(fcinfo, 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	return (Datum) 0;
}

/* Index order for sorting one position's active features by activation, largest first. */
static const float *sort_acts;

static int
by_activation(const void *a, const void *b)
{
	float		x = sort_acts[*(const int32 *) a],
				y = sort_acts[*(const int32 *) b];

	if (x != y)
		return x > y ? -1 : 1;
	return *(const int32 *) a - *(const int32 *) b;
}

/*
 * sae_feature_activations(run_id, input): per token of the text (tokenized
 * as the run's training data was, with or without BOS), the features that
 * fire and their activations, largest first.
 */
Datum
sae_feature_activations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RunOnModel *r = open_run(PG_GETARG_INT64(0), "sae_feature_activations");
	int			T,
				m = r->w.m;
	int32	   *ids = SaeTokenize(r->lm, PG_GETARG_TEXT_PP(1), r->cfg.prepend_bos, &T);
	float	   *x,
			   *feats;
	int32	   *active = palloc(sizeof(int32) * m);
	float	   *values = palloc(sizeof(float) * m);
	SaeError	err;

	if (T == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the input has no tokens")));
	x = palloc_extended(sizeof(float) * T * sae_hook_width(r->lm, r->hook, T), MCXT_ALLOC_HUGE);
	feats = palloc_extended(sizeof(float) * T * m, MCXT_ALLOC_HUGE);
	if (sae_feature_acts(r->lm, r->hook, (int) r->cfg.hook_point_head_index, r->sae, r->w.d, ids, 1, T,
						 x, feats, SaeStopIfInterrupted, NULL, &err) != SAE_OK)
		SaeReportError(&err);
	InitMaterializedSRF(fcinfo, 0);
	for (int p = 0; p < T; p++)
	{
		const float *row = feats + (size_t) p * m;
		int			n = 0;
		Datum		v[5];
		bool		nulls[5] = {0};

		for (int f = 0; f < m; f++)
			if (row[f] > 0)
				active[n++] = f;
		sort_acts = row;
		qsort(active, n, sizeof(int32), by_activation);
		for (int i = 0; i < n; i++)
			values[i] = row[active[i]];
		v[0] = Int32GetDatum(p);
		v[1] = Int32GetDatum(ids[p]);
		v[2] = PointerGetDatum(SaeTokenText(r->lm, ids[p]));
		v[3] = PointerGetDatum(SaeIntArray(active, n));
		v[4] = PointerGetDatum(SaeFloatArray(values, n));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
