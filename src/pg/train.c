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

/* One SAE of a sae_train call. */
typedef struct TrainState
{
	SaeConfig	cfg;
	int64		run_id;
	SaeRun	   *run;
	MemoryContext log_ctx;		/* reset after every callback */
	SaeLm	   *lm;				/* runs on a model: the model and the shared source */
	SaeLmSource *lm_src;
} TrainState;

/* Everything one sae_train call owns in the engine: the runs (one per layer) and their source. */
typedef struct TrainCall
{
	SaeDevice	dev;			/* where the runs and their model go */
	int			n;
	TrainState **st;
	SaeLmSource *lm_src;
	char	   *source_name;
	SaeTableSource *table;
} TrainCall;

/* Reset callback: free the engine's runs and source however the call ends. */
static void
destroy_call(void *arg)
{
	TrainCall  *call = arg;

	for (int i = 0; i < call->n; i++)
		if (call->st[i])		/* an ERROR while preparing may leave some unmade */
		{
			sae_run_destroy(call->st[i]->run);
			call->st[i]->run = NULL;
		}
	sae_lm_source_destroy(call->lm_src);
	call->lm_src = NULL;
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
 * Compare the call's needs with sae.max_memory before allocating anything:
 * per SAE the engine's buffers plus the host copy of the weights made to
 * store them; for runs on a model also the model's weights, its forward
 * pass over one store batch, the activation queues and evaluation.
 */
static void
check_memory_budget(const SaeConfig *cfg, int n_saes, size_t model_bytes, size_t forward_bytes)
{
	size_t		params = sizeof(float) * (size_t) (2 * cfg->d_in * cfg->d_sae + cfg->d_in + cfg->d_sae);
	size_t		engine = sae_run_memory_bytes(cfg);
	size_t		trainer = sae_trainer_memory_bytes(cfg->d_in, cfg->d_sae, cfg->train_batch_size);
	size_t		per_sae = engine + params;
	size_t		need = n_saes * per_sae + model_bytes + forward_bytes;
	size_t		limit = (size_t) sae_max_memory_kb * 1024;

	if (need <= limit)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("training run needs %ld MB but sae.max_memory is %ld MB", mb(need), mb(limit)),
			 errdetail("Per SAE (%d of them): parameters, gradients and Adam state %ld MB; batch buffers (train_batch_size %lld) %ld MB; shuffle buffer (%lld rows per half) %ld MB; copy of the weights for storing %ld MB. Language model weights %ld MB; its forward pass, activation queues and evaluation %ld MB.",
					   n_saes, mb(4 * params), (long long) cfg->train_batch_size, mb(trainer - 4 * params),
					   (long long) sae_config_half_buffer_rows(cfg), mb(engine - trainer), mb(params),
					   mb(model_bytes), mb(forward_bytes)),
			 errhint("Raise sae.max_memory, or lower d_sae, train_batch_size, n_batches_in_buffer or store_batch_size.")));
}

/* The config's "device", or sae.device where the config names none. */
static SaeDevice
choose_device(const SaeConfig *cfg)
{
	return SaeResolveDevice(sae_config_key_given(cfg, "device") ? cfg->device : sae_device);
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

/* One result row per SAE. */
static void
return_rows(FunctionCallInfo fcinfo, TrainCall *call)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < call->n; i++)
	{
		const TrainState *st = call->st[i];
		const SaeRunResult *res = sae_run_result(st->run);
		Datum		v[14];
		bool		n[14] = {0};

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
}

/* An evaluation on fresh contexts of the training stream, as SAELens's run_evals. */
static void
evaluate(TrainState *st, SaeTrainer *t, SaeEvalResult *r)
{
	int64		n = st->cfg.n_eval_batches * st->cfg.store_batch_size;
	int32	   *tokens = palloc_extended(sizeof(int32) * n * st->cfg.context_size, MCXT_ALLOC_HUGE);
	SaeRunWeights w;
	SaeError	err;

	n = sae_lm_source_next_contexts(st->lm_src, tokens, n, &err);
	if (n < 0)
		SaeReportError(&err);
	sae_trainer_finalize(t);
	SaeDownloadWeights(t, &st->cfg, &w);
	SaeEvaluateWeights(st->lm, &st->cfg, &w, tokens, (int) n, r);
}

static void
eval_notice(const TrainState *st, const char *when, const SaeEvalResult *r)
{
	ereport(NOTICE,
			(errmsg("%s%s: CE loss score %.4f (clean %.4f, with SAE %.4f, zero-ablated %.4f), KL score %.4f, explained variance %.4f, L0 %.1f",
					when, st->cfg.hook_point, r->ce_loss_score, r->ce_loss_without_sae, r->ce_loss_with_sae,
					r->ce_loss_with_ablation, r->kl_div_score, r->explained_variance, r->l0)));
}

static int
cb_evaluate(void *ctx, SaeTrainer *t, const SaeStepStats *stats, SaeError *err)
{
	TrainState *st = ctx;
	MemoryContext old = MemoryContextSwitchTo(st->log_ctx);
	SaeEvalResult r;

	evaluate(st, t, &r);
	SaeStoreEvalStep(st->run_id, stats->step + 1, &r);
	eval_notice(st, psprintf("eval at step %lld, ", (long long) stats->step + 1), &r);
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->log_ctx);
	return SAE_OK;
}

/* Bytes of one forward pass over a store batch, the activation queues and an evaluation. */
static size_t
model_work_bytes(SaeLm *lm, const SaeConfig *cfg, int n_hooks)
{
	const SaeLmConfig *c = sae_lm_config(lm);
	size_t		T = cfg->context_size,
				rows = cfg->store_batch_size * T;
	size_t		forward = sizeof(float) * (rows * (7 * (size_t) c->d_model + c->d_mlp + 1) +
										   2 * T * c->n_heads * T + T * c->d_vocab);
	size_t		eval = sizeof(float) * 2 * T * c->d_vocab;

	return forward + eval + sae_lm_source_memory_bytes(sae_config_half_buffer_rows(cfg), (int) cfg->d_in,
													   n_hooks, (int) cfg->store_batch_size, (int) T,
													   c->d_model);
}

/*
 * A config on a model: its dataset and hooks checked, one config per layer
 * (hook_point with {layer} filled in), and the shared activation source.
 */
static void
prepare_model_runs(TrainCall *call, const SaeConfig *cfg)
{
	SaeLm	   *lm = SaeGetModelOn(cfg->model_name, call->dev);
	SaeDatasetInfo ds;
	int			n = cfg->n_hook_layers > 1 ? cfg->n_hook_layers : 1;
	SaeHook    *hooks = palloc(sizeof(SaeHook) * n);
	SaeLmSourceOptions o = {0};
	SaeError	err;

	SaeDatasetLookup(cfg->dataset_path, &ds);
	if (ds.context_size != cfg->context_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context_size %lld does not match dataset \"%s\", whose contexts have %d tokens",
						(long long) cfg->context_size, cfg->dataset_path, ds.context_size),
				 errhint("Set \"context_size\": %d, or make the dataset with the context size you want.",
						 ds.context_size)));
	if (strcmp(ds.model, cfg->model_name) != 0)
		ereport(NOTICE,
				(errmsg("dataset \"%s\" was tokenized for model \"%s\", training on \"%s\"",
						cfg->dataset_path, ds.model, cfg->model_name)));
	call->n = n;
	call->st = palloc0(sizeof(TrainState *) * n);
	for (int i = 0; i < n; i++)
	{
		TrainState *st = palloc0(sizeof(TrainState));
		int64		layer = cfg->n_hook_layers > 1 ? cfg->hook_layers[i] : cfg->hook_point_layer;

		st->cfg = *cfg;
		hooks[i] = SaeConfigHook(lm, cfg, layer);
		sae_config_format_hook(cfg, layer, st->cfg.hook_point, sizeof(st->cfg.hook_point));
		st->cfg.hook_point_layer = layer;
		st->cfg.n_hook_layers = 0;
		if (n > 1)
			snprintf(st->cfg.run_name, sizeof(st->cfg.run_name), "%s-layer%lld", cfg->run_name, (long long) layer);
		st->lm = lm;
		call->st[i] = st;
	}
	check_memory_budget(cfg, n, sae_lm_weight_bytes(lm), model_work_bytes(lm, cfg, n));
	o.lm = lm;
	o.tokens = SaeDatasetTokens(ds.dataset_id, ds.context_size);
	o.context_size = ds.context_size;
	o.batch_contexts = (int) cfg->store_batch_size;
	o.hooks = hooks;
	o.n_hooks = n;
	o.head_index = (int) cfg->hook_point_head_index;
	o.notice = cb_notice;
	o.should_stop = SaeStopIfInterrupted;
	if (sae_lm_source_create(&o, &call->lm_src, &err) != SAE_OK)
		SaeReportError(&err);
	for (int i = 0; i < n; i++)
		call->st[i]->lm_src = call->lm_src;
	call->source_name = psprintf("%s over dataset %s", cfg->model_name, cfg->dataset_path);
}

/* A config on a table of activations: one run. */
static void
prepare_table_run(TrainCall *call, const SaeConfig *cfg)
{
	check_memory_budget(cfg, 1, 0, 0);
	call->n = 1;
	call->st = palloc0(sizeof(TrainState *));
	call->st[0] = palloc0(sizeof(TrainState));
	call->st[0]->cfg = *cfg;
	call->table = SaeTableSourceOpen(cfg);
	call->source_name = SaeTableSourceName(call->table);
}

/* The final evaluation of each SAE on a model, into sae.runs.final_metrics->'eval'. */
static void
final_evaluations(TrainCall *call)
{
	for (int i = 0; i < call->n && call->lm_src && call->st[i]->cfg.eval_every_n_wandb_logs > 0; i++)
	{
		TrainState *st = call->st[i];
		SaeEvalResult r;

		evaluate(st, sae_run_trainer(st->run), &r);
		SaeStoreEvalFinal(st->run_id, &r);
		eval_notice(st, "final eval, ", &r);
	}
}

Datum
sae_train(PG_FUNCTION_ARGS)
{
	SaeConfig  *cfg = palloc(sizeof(SaeConfig));
	MemoryContext run_ctx = AllocSetContextCreate(CurrentMemoryContext, "sae_train",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContextCallback *cleanup = MemoryContextAlloc(run_ctx, sizeof(MemoryContextCallback));
	TrainCall  *call = MemoryContextAllocZero(run_ctx, sizeof(TrainCall));
	SaeRun	  **runs;
	MemoryContext old;
	SaeBackend *be;
	SaeError	err;
	int			rc;

	SaeParseConfig(PG_GETARG_JSONB_P(0), cfg);
	call->dev = choose_device(cfg);
	note_accepted_keys(cfg);
	if (cfg->allow_tf32 && !call->dev.cuda)
		ereport(NOTICE,
				(errmsg("allow_tf32 applies to GPU runs: on the CPU every product is float32")));

	/*
	 * The backend first, then the cleanup of what the engine allocates from
	 * here on (reset callbacks run last-registered first: the runs and
	 * their source go before their backend).
	 */
	be = SaeBackendForContext(run_ctx, call->dev, cfg->allow_tf32);
	cleanup->func = destroy_call;
	cleanup->arg = call;
	MemoryContextRegisterResetCallback(run_ctx, cleanup);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(run_ctx);
	if (cfg->model_name[0] != '\0')
		prepare_model_runs(call, cfg);
	else
		prepare_table_run(call, cfg);

	runs = palloc(sizeof(SaeRun *) * call->n);
	for (int i = 0; i < call->n; i++)
	{
		TrainState *st = call->st[i];
		SaeRunCallbacks cb = {0};
		SaeSource	src;

		if (call->lm_src)
			src = sae_lm_source_hook(call->lm_src, i);
		else
			SaeTableSourceInit(call->table, &src);
		st->run_id = SaeStoreRunStart(&st->cfg, call->source_name, SaeDeviceName(call->dev));
		st->log_ctx = AllocSetContextCreate(run_ctx, "sae_train log", ALLOCSET_SMALL_SIZES);
		cb.ctx = st;
		cb.should_stop = SaeStopIfInterrupted;
		cb.notice = cb_notice;
		cb.log_step = cb_log_step;
		cb.checkpoint = cb_checkpoint;
		cb.progress_every = sae_progress_every;
		if (call->lm_src)
		{
			cb.evaluate = cb_evaluate;
			cb.evaluate_every = st->cfg.wandb_log_frequency * st->cfg.eval_every_n_wandb_logs;
		}
		if (sae_run_create(&st->cfg, be, &src, &cb, &st->run, &err) != SAE_OK)
			SaeReportError(&err);
		if (st->cfg.from_pretrained_run > 0)
			start_from_pretrained(st->run, &st->cfg);
		runs[i] = st->run;
	}
	rc = call->n == 1 ? sae_run_execute(runs[0], &err) : sae_runs_execute(runs, call->n, &err);
	if (rc != SAE_OK)
	{
		CHECK_FOR_INTERRUPTS();
		SaeReportError(&err);
	}
	if (call->table)
		SaeTableSourceClose(call->table);
	for (int i = 0; i < call->n; i++)
	{
		SaeStoreFeatures(call->st[i]->run_id, &call->st[i]->cfg, sae_run_trainer(call->st[i]->run));
		SaeStoreRunEnd(call->st[i]->run_id, sae_run_result(call->st[i]->run));
	}
	final_evaluations(call);
	MemoryContextSwitchTo(old);
	return_rows(fcinfo, call);
	SPI_finish();
	MemoryContextDelete(run_ctx);
	return (Datum) 0;
}
