/*
 * train.c — sae_train(config jsonb): the SQL entry point of training.
 *
 * Flow: parse and check the config; check the memory budget before
 * allocating anything; resolve the activation table; insert the run row;
 * run the engine, whose callbacks check for interrupts, send NOTICEs and
 * write train_log rows; store features and tensors; return one row.
 *
 * Cleanup: the engine run and its backend are freed by a reset callback of
 * a memory context made for this call, so an ERROR, a cancel or a
 * statement_timeout anywhere in between frees everything, and the
 * transaction's rollback removes every row written so far.
 */
#include "sae_pg.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(sae_train);

typedef struct TrainState
{
	SaeConfig	cfg;
	int64		run_id;
	SaeRun	   *run;
	MemoryContext log_ctx;		/* reset after every callback */
} TrainState;

/* Reset callback: free the engine's run however the call ends. */
static void
destroy_run(void *arg)
{
	TrainState *st = arg;

	sae_run_destroy(st->run);
	st->run = NULL;
}

static bool
cb_should_stop(void *ctx)
{
	/* raises the right error (cancel, timeout, terminate) if one is pending */
	CHECK_FOR_INTERRUPTS();
	return false;
}

static void
cb_notice(void *ctx, const char *message)
{
	ereport(NOTICE, (errmsg_internal("%s", message)));
}

static void
cb_log_step(void *ctx, const SaeStepStats *stats, const SaeSparsityStats *sparsity)
{
	TrainState *st = ctx;
	MemoryContext old = MemoryContextSwitchTo(st->log_ctx);

	SaeStoreLogRow(st->run_id, stats, sparsity);
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->log_ctx);
}

static int
cb_checkpoint(void *ctx, SaeTrainer *t, int64_t n_tokens, SaeError *err)
{
	TrainState *st = ctx;
	MemoryContext old = MemoryContextSwitchTo(st->log_ctx);
	int			rc = SaeStoreCheckpoint(st->run_id, &st->cfg, t, n_tokens);

	MemoryContextSwitchTo(old);
	MemoryContextReset(st->log_ctx);
	ereport(NOTICE, (errmsg("checkpoint saved at %lld tokens in sae.tensors under \"%s/%lld\"",
							(long long) n_tokens, st->cfg.checkpoint_path, (long long) n_tokens)));
	return rc;
}

/* Megabytes, rounded up, for messages. */
static long
mb(size_t bytes)
{
	return (long) ((bytes + (1 << 20) - 1) >> 20);
}

/*
 * Compare the run's needs with sae.max_memory before allocating anything:
 * the engine's buffers plus the host copy of the weights made to store them.
 */
static void
check_memory_budget(const SaeConfig *cfg)
{
	size_t		params = sizeof(float) * (size_t) (2 * cfg->d_in * cfg->d_sae + cfg->d_in + cfg->d_sae);
	size_t		engine = sae_run_memory_bytes(cfg);
	size_t		trainer = sae_trainer_memory_bytes(cfg->d_in, cfg->d_sae, cfg->train_batch_size);
	size_t		need = engine + params;
	size_t		limit = (size_t) sae_max_memory_kb * 1024;

	if (need <= limit)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("training run needs %ld MB but sae.max_memory is %ld MB", mb(need), mb(limit)),
			 errdetail("SAE parameters, gradients and Adam state: %ld MB; batch buffers (train_batch_size %lld): %ld MB; shuffle buffer (%lld rows per half): %ld MB; copy of the weights for storing: %ld MB.",
					   mb(4 * params), (long long) cfg->train_batch_size, mb(trainer - 4 * params),
					   (long long) sae_config_half_buffer_rows(cfg), mb(engine - trainer), mb(params)),
			 errhint("Raise sae.max_memory, or lower d_sae, train_batch_size or n_batches_in_buffer.")));
}

/* "cpu", or an error for what this build cannot do. */
static const char *
choose_device(const SaeConfig *cfg)
{
	if (strcmp(cfg->device, "cuda") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("device \"cuda\" is not available: this build of sae has no CUDA backend"),
				 errhint("Use \"device\": \"cpu\" or \"auto\".")));
	if (strcmp(cfg->device, "auto") == 0)
		ereport(NOTICE, (errmsg("device \"auto\": no CUDA backend in this build, training on the CPU")));
	return "cpu";
}

/* What SAELens keys mean here, when they differ from SAELens. */
static void
note_accepted_keys(const SaeConfig *cfg)
{
	if (sae_config_key_given(cfg, "log_to_wandb") && cfg->log_to_wandb)
		ereport(NOTICE,
				(errmsg("log_to_wandb: metrics are logged to sae.train_log, not to Weights & Biases (project \"%s\")",
						cfg->wandb_project)));
	if (sae_config_key_given(cfg, "dead_feature_threshold"))
		ereport(NOTICE,
				(errmsg("dead_feature_threshold is accepted but unused, as in SAELens: dead features are those that did not fire for dead_feature_window steps")));
}

/* "from_pretrained_run": the run's weights, which must fit this config. */
static void
start_from_pretrained(SaeRun *run, const SaeConfig *cfg)
{
	SaeRunWeights w;

	SaeLoadRunWeights(cfg->from_pretrained_run, &w);
	if (w.d != cfg->d_in || w.m != cfg->d_sae || w.sae_type != cfg->sae_type)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_pretrained_run %lld does not fit this config",
						(long long) cfg->from_pretrained_run),
				 errdetail("The run has d_in %d, d_sae %d and sae_type %s; the config asks for d_in %lld, d_sae %lld and sae_type %s.",
						   w.d, w.m, w.sae_type == SAE_TYPE_TANH ? "tanh_sae" : "unit_norm_sae",
						   (long long) cfg->d_in, (long long) cfg->d_sae,
						   cfg->sae_type == SAE_TYPE_TANH ? "tanh_sae" : "unit_norm_sae"),
				 errhint("Use the pretrained run's d_in, d_sae (or expansion_factor) and sae_type.")));
	sae_run_start_from(run, w.w_enc, w.b_enc, w.w_dec, w.b_dec);
	SaeFreeRunWeights(&w);
}

static void
return_row(FunctionCallInfo fcinfo, const TrainState *st, const SaeRunResult *res)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		v[14];
	bool		n[14] = {0};

	InitMaterializedSRF(fcinfo, 0);
	v[0] = Int64GetDatum(st->run_id);
	v[1] = CStringGetTextDatum(st->cfg.run_name);
	v[2] = CStringGetTextDatum(st->cfg.hook_point);
	v[3] = Int32GetDatum((int32) st->cfg.d_in);
	v[4] = Int32GetDatum((int32) st->cfg.d_sae);
	v[5] = Int64GetDatum(res->steps);
	v[6] = Int64GetDatum(res->n_tokens);
	v[7] = Float4GetDatum((float4) res->last.l0);
	v[8] = Float4GetDatum((float4) res->last.explained_variance);
	v[9] = Float4GetDatum((float4) res->last.mse_loss);
	v[10] = Float4GetDatum((float4) res->last.l1_loss);
	v[11] = Int32GetDatum((int32) res->dead_features);
	v[12] = Float4GetDatum((float4) res->tokens_per_second);
	v[13] = Float4GetDatum((float4) res->seconds);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
}

Datum
sae_train(PG_FUNCTION_ARGS)
{
	TrainState *st = palloc0(sizeof(TrainState));
	MemoryContext run_ctx = AllocSetContextCreate(CurrentMemoryContext, "sae_train",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContextCallback *cleanup = MemoryContextAlloc(run_ctx, sizeof(MemoryContextCallback));
	MemoryContext old;
	SaeTableSource *ts;
	SaeSource	src;
	SaeRunCallbacks cb = {0};
	SaeBackend *be;
	SaeError	err;
	const char *device;

	SaeParseConfig(PG_GETARG_JSONB_P(0), &st->cfg);
	device = choose_device(&st->cfg);
	check_memory_budget(&st->cfg);
	note_accepted_keys(&st->cfg);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(run_ctx);
	ts = SaeTableSourceOpen(&st->cfg);
	SaeTableSourceInit(ts, &src);
	st->run_id = SaeStoreRunStart(&st->cfg, SaeTableSourceName(ts), device);
	st->log_ctx = AllocSetContextCreate(run_ctx, "sae_train log", ALLOCSET_SMALL_SIZES);

	/* callbacks run last-registered first: the run must go before its backend */
	be = SaeBackendForContext(run_ctx);
	cleanup->func = destroy_run;
	cleanup->arg = st;
	MemoryContextRegisterResetCallback(run_ctx, cleanup);

	cb.ctx = st;
	cb.should_stop = cb_should_stop;
	cb.notice = cb_notice;
	cb.log_step = cb_log_step;
	cb.checkpoint = cb_checkpoint;
	cb.progress_every = sae_progress_every;
	if (sae_run_create(&st->cfg, be, &src, &cb, &st->run, &err) != SAE_OK)
		SaeReportError(&err);
	if (st->cfg.from_pretrained_run > 0)
		start_from_pretrained(st->run, &st->cfg);
	if (sae_run_execute(st->run, &err) != SAE_OK)
	{
		CHECK_FOR_INTERRUPTS();
		SaeReportError(&err);
	}
	SaeTableSourceClose(ts);

	SaeStoreFeatures(st->run_id, &st->cfg, sae_run_trainer(st->run));
	SaeStoreRunEnd(st->run_id, sae_run_result(st->run));
	MemoryContextSwitchTo(old);
	return_row(fcinfo, st, sae_run_result(st->run));
	SPI_finish();
	MemoryContextDelete(run_ctx);
	return (Datum) 0;
}
