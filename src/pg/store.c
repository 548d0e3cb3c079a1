/*
 * store.c — writing runs, logs, features and tensors into the sae.* tables.
 *
 * Everything goes through SPI with parameters (never values pasted into
 * SQL), in the caller's transaction: a run that fails or is cancelled
 * leaves no rows behind.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include <math.h>

/* Floats per sae.tensors chunk: 64 MB. */
#define SAE_TENSOR_CHUNK_FLOATS (16 * 1024 * 1024)

static SPIPlanPtr log_plan = NULL;
static SPIPlanPtr feature_plan = NULL;
static SPIPlanPtr tensor_plan = NULL;

/* Prepare once per backend; plans survive the transaction. */
SPIPlanPtr
SaePrepareOnce(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/* Run a prepared statement, which must return expected (SPI_OK_INSERT, ...). */
void
SaeExecutePlan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/* A float8 datum, or NULL for NaN (jsonb and tables get no NaN). */
static Datum
real_or_null(double v, char *null)
{
	*null = isfinite(v) ? ' ' : 'n';
	return Float4GetDatum((float4) (isfinite(v) ? v : 0));
}

int64
SaeStoreRunStart(const SaeConfig *cfg, const char *source, const char *device)
{
	size_t		len = sae_config_to_json(cfg, NULL, 0);
	char	   *json = palloc(len + 1);
	Oid			types[9] = {TEXTOID, JSONBOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[9];
	bool		isnull;
	int			rc;

	sae_config_to_json(cfg, json, len + 1);
	values[0] = CStringGetTextDatum(cfg->run_name);
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	values[2] = CStringGetTextDatum(cfg->hook_point);
	values[3] = Int32GetDatum((int32) cfg->hook_point_layer);
	values[4] = Int32GetDatum((int32) cfg->d_in);
	values[5] = Int32GetDatum((int32) cfg->d_sae);
	values[6] = CStringGetTextDatum(cfg->sae_type == SAE_TYPE_TANH ? "tanh_sae" : "unit_norm_sae");
	values[7] = CStringGetTextDatum(device);
	values[8] = CStringGetTextDatum(source);
	rc = SPI_execute_with_args("INSERT INTO sae.runs (run_name, config, hook_point, hook_point_layer, "
							   "d_in, d_sae, architecture, device, source) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING run_id",
							   9, types, values, NULL, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not insert into sae.runs: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void
SaeStoreLogRow(int64 run_id, const SaeStepStats *st, const SaeSparsityStats *sp)
{
	Oid			types[18] = {INT8OID, INT8OID, INT8OID, FLOAT8OID, FLOAT4OID, FLOAT4OID,
		FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID, FLOAT4OID,
	FLOAT4OID, INT4OID, FLOAT4OID, INT4OID, INT4OID};
	Datum		v[18];
	char		n[19];
	SPIPlanPtr	plan = SaePrepareOnce(&log_plan,
									"INSERT INTO sae.train_log (run_id, step, n_tokens, lr, mse_loss, l1_loss, "
									"ghost_grad_loss, overall_loss, l0, explained_variance, "
									"explained_variance_legacy, explained_variance_std, l2_norm, l2_ratio, "
									"dead_features, mean_log10_feature_sparsity, below_1e_5, below_1e_6) "
									"VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
									18, types);

	memset(n, ' ', sizeof(n));
	n[18] = '\0';
	v[0] = Int64GetDatum(run_id);
	v[1] = Int64GetDatum(st->step + 1);
	v[2] = Int64GetDatum(st->n_tokens);
	v[3] = Float8GetDatum(st->lr);
	v[4] = real_or_null(st->mse_loss, &n[4]);
	v[5] = real_or_null(st->l1_loss, &n[5]);
	v[6] = real_or_null(st->ghost_grad_loss, &n[6]);
	v[7] = real_or_null(st->overall_loss, &n[7]);
	v[8] = real_or_null(st->l0, &n[8]);
	v[9] = real_or_null(st->explained_variance, &n[9]);
	v[10] = real_or_null(st->explained_variance_legacy, &n[10]);
	v[11] = real_or_null(st->explained_variance_std, &n[11]);
	v[12] = real_or_null(st->l2_norm, &n[12]);
	v[13] = real_or_null(st->l2_ratio, &n[13]);
	v[14] = Int32GetDatum((int32) st->dead_features);
	if (sp)
	{
		v[15] = real_or_null(sp->mean_log10_feature_sparsity, &n[15]);
		v[16] = Int32GetDatum((int32) sp->below_1e5);
		v[17] = Int32GetDatum((int32) sp->below_1e6);
	}
	else
	{
		n[15] = n[16] = n[17] = 'n';
		v[15] = v[16] = v[17] = (Datum) 0;
	}
	SaeExecutePlan(plan, v, n, SPI_OK_INSERT);
}

void
SaeStoreTensor(int64 run_id, const char *name, const float *data, int ndims, const int *shape)
{
	Oid			types[5] = {INT8OID, TEXTOID, INT4OID, INT4ARRAYOID, FLOAT4ARRAYOID};
	SPIPlanPtr	plan = SaePrepareOnce(&tensor_plan,
									"INSERT INTO sae.tensors (run_id, name, chunk, shape, data) "
									"VALUES ($1, $2, $3, $4, $5)", 5, types);
	Datum	   *dims = palloc(sizeof(Datum) * ndims);
	size_t		total = 1;
	ArrayType  *shape_arr;

	for (int i = 0; i < ndims; i++)
	{
		dims[i] = Int32GetDatum(shape[i]);
		total *= (size_t) shape[i];
	}
	shape_arr = construct_array(dims, ndims, INT4OID, sizeof(int32), true, TYPALIGN_INT);
	for (size_t start = 0, chunk = 0; start < total; start += SAE_TENSOR_CHUNK_FLOATS, chunk++)
	{
		size_t		n = Min(total - start, (size_t) SAE_TENSOR_CHUNK_FLOATS);
		Datum		v[5];
		ArrayType  *part = SaeFloatArray(data + start, (int) n);

		v[0] = Int64GetDatum(run_id);
		v[1] = CStringGetTextDatum(name);
		v[2] = Int32GetDatum((int32) chunk);
		v[3] = PointerGetDatum(shape_arr);
		v[4] = PointerGetDatum(part);
		SaeExecutePlan(plan, v, NULL, SPI_OK_INSERT);
		pfree(part);
	}
}

/* Weights as rows of sae.features (rate NULL: firing rates unknown) and b_dec in sae.tensors. */
void
SaeStoreFeatureRows(int64 run_id, const SaeRunWeights *w, const float *rate)
{
	Oid			types[7] = {INT8OID, INT4OID, FLOAT4ARRAYOID, FLOAT4ARRAYOID, FLOAT4OID, FLOAT4OID, FLOAT4OID};
	SPIPlanPtr	plan = SaePrepareOnce(&feature_plan,
									  "INSERT INTO sae.features (run_id, feature_id, w_enc, w_dec, b_enc, "
									  "firing_rate, log10_sparsity) VALUES ($1, $2, $3, $4, $5, $6, $7)",
									  7, types);
	int			d = w->d,
				m = w->m;
	float	   *column = palloc(sizeof(float) * d);
	char		nulls[7] = "       ";
	MemoryContext row_ctx = AllocSetContextCreate(CurrentMemoryContext, "sae feature row",
												  ALLOCSET_DEFAULT_SIZES);

	if (rate == NULL)
		nulls[5] = nulls[6] = 'n';
	for (int i = 0; i < m; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(row_ctx);
		Datum		v[7];

		for (int j = 0; j < d; j++)
			column[j] = w->w_enc[(size_t) j * m + i];
		v[0] = Int64GetDatum(run_id);
		v[1] = Int32GetDatum(i);
		v[2] = PointerGetDatum(SaeFloatArray(column, d));
		v[3] = PointerGetDatum(SaeFloatArray(w->w_dec + (size_t) i * d, d));
		v[4] = Float4GetDatum(w->b_enc[i]);
		v[5] = Float4GetDatum(rate ? rate[i] : 0);
		v[6] = Float4GetDatum(rate ? (float4) log10(rate[i] + 1e-10) : 0);
		SaeExecutePlan(plan, v, nulls, SPI_OK_INSERT);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_ctx);
		if (i % 1024 == 0)
			CHECK_FOR_INTERRUPTS();
	}
	SaeStoreTensor(run_id, "b_dec", w->b_dec, 1, &d);
	MemoryContextDelete(row_ctx);
	pfree(column);
}

/* A trainer's weights and feature densities as rows of sae.features and b_dec. */
void
SaeStoreFeatures(int64 run_id, const SaeConfig *cfg, SaeTrainer *t)
{
	SaeRunWeights w;
	float	   *rate = palloc(sizeof(float) * cfg->d_sae);

	SaeDownloadWeights(t, cfg, &w);
	sae_trainer_feature_density(t, rate);
	SaeStoreFeatureRows(run_id, &w, rate);
	SaeFreeRunWeights(&w);
	pfree(rate);
}

/* The run's final metrics as jsonb text. */
static char *
final_metrics_json(const SaeRunResult *r)
{
	const SaeStepStats *s = &r->last;

	return psprintf("{\"mse_loss\": %.9g, \"l1_loss\": %.9g, \"ghost_grad_loss\": %.9g, "
					"\"overall_loss\": %.9g, \"l0\": %.9g, \"explained_variance\": %.9g, "
					"\"explained_variance_legacy\": %.9g, \"explained_variance_std\": %.9g, "
					"\"l2_norm\": %.9g, \"l2_ratio\": %.9g, \"dead_features\": %lld, "
					"\"mean_log10_feature_sparsity\": %.9g, \"below_1e-5\": %lld, \"below_1e-6\": %lld, "
					"\"lr\": %.9g, \"rows_read\": %lld, \"epochs\": %lld, \"sparse_steps\": %lld}",
					s->mse_loss, s->l1_loss, s->ghost_grad_loss, s->overall_loss, s->l0,
					s->explained_variance, s->explained_variance_legacy,
					s->explained_variance_std, s->l2_norm, s->l2_ratio,
					(long long) r->dead_features, r->sparsity.mean_log10_feature_sparsity,
					(long long) r->sparsity.below_1e5, (long long) r->sparsity.below_1e6,
					s->lr, (long long) r->rows_read, (long long) r->epochs,
					(long long) r->sparse_steps);
}

void
SaeStoreRunEnd(int64 run_id, const SaeRunResult *res)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, FLOAT4OID, FLOAT4OID, JSONBOID};
	Datum		v[6];
	int			rc;

	v[0] = Int64GetDatum(run_id);
	v[1] = Int64GetDatum(res->steps);
	v[2] = Int64GetDatum(res->n_tokens);
	v[3] = Float4GetDatum((float4) res->seconds);
	v[4] = Float4GetDatum((float4) res->tokens_per_second);
	v[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(final_metrics_json(res)));
	rc = SPI_execute_with_args("UPDATE sae.runs SET status = 'completed', n_steps = $2, n_tokens = $3, "
							   "seconds = $4, tokens_per_second = $5, final_metrics = $6, "
							   "finished_at = clock_timestamp() WHERE run_id = $1",
							   6, types, v, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.runs: %s", SPI_result_code_string(rc));
}

int
SaeStoreCheckpoint(int64 run_id, const SaeConfig *cfg, SaeTrainer *t, int64 n_tokens)
{
	SaeRunWeights w;
	int			enc_shape[2] = {(int) cfg->d_in, (int) cfg->d_sae},
				dec_shape[2] = {(int) cfg->d_sae, (int) cfg->d_in};
	char	   *prefix = psprintf("%s/%lld", cfg->checkpoint_path, (long long) n_tokens);

	SaeDownloadWeights(t, cfg, &w);
	SaeStoreTensor(run_id, psprintf("%s/W_enc", prefix), w.w_enc, 2, enc_shape);
	SaeStoreTensor(run_id, psprintf("%s/b_enc", prefix), w.b_enc, 1, &w.m);
	SaeStoreTensor(run_id, psprintf("%s/W_dec", prefix), w.w_dec, 2, dec_shape);
	SaeStoreTensor(run_id, psprintf("%s/b_dec", prefix), w.b_dec, 1, &w.d);
	SaeFreeRunWeights(&w);
	return SAE_OK;
}
