/*
 * sae_pg.h — what the PostgreSQL glue files share.
 *
 * The glue turns SQL arguments into engine structs, feeds the engine rows,
 * stores what it produces and turns engine errors into ereport(ERROR).
 */
#ifndef SAE_PG_H
#define SAE_PG_H

#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "backend.h"
#include "config.h"
#include "error.h"
#include "lm.h"
#include "eval.h"
#include "infer.h"
#include "lm_source.h"
#include "run.h"

/* GUCs (module.c) */
extern int	sae_max_memory_kb;
extern int	sae_progress_every;
extern int	sae_threads;
extern bool sae_allow_download;
extern char *sae_hub_cache;
extern char *sae_hub_endpoint;
extern char *sae_device;
extern char *sae_cuda_module;

/* module.c: raise an engine error as an ERROR with a SQLSTATE */
extern void SaeReportError(const SaeError *err) pg_attribute_noreturn();

/* module.c: an engine should_stop callback that raises a pending interrupt */
extern bool SaeStopIfInterrupted(void *arg);

/* module.c: devices and backends */
typedef struct SaeDevice
{
	bool		cuda;
	int			index;			/* the GPU, when cuda */
} SaeDevice;
#define SAE_DEVICE_CPU ((SaeDevice) {false, 0})
extern const char *SaeCudaModulePath(void);
extern SaeDevice SaeResolveDevice(const char *name);
extern SaeDevice SaeSessionDevice(void);
extern const char *SaeDeviceName(SaeDevice dev);
extern SaeBackend *SaeBackendCreate(SaeDevice dev, bool tf32);
extern SaeBackend *SaeBackendForContext(MemoryContext ctx, SaeDevice dev, bool tf32);

/* config_jsonb.c: a jsonb object -> a finished SaeConfig */
extern void SaeParseConfig(Jsonb *json, SaeConfig *cfg);

/* source_table.c: an SPI cursor over activations_table.activations_column */
typedef struct SaeTableSource SaeTableSource;
extern SaeTableSource *SaeTableSourceOpen(const SaeConfig *cfg);
extern void SaeTableSourceInit(SaeTableSource *ts, SaeSource *src);
extern void SaeTableSourceClose(SaeTableSource *ts);
extern char *SaeTableSourceName(SaeTableSource *ts);

/* model.c: loaded language models, on the CPU or a GPU */
extern void SaeCheckReadServerFiles(const char *what);
extern SaeLm *SaeGetModel(const char *name);
extern SaeLm *SaeGetModelOn(const char *name, SaeDevice dev);

/* tokens_sql.c: tokens and text */
extern int32 *SaeTokenize(SaeLm *lm, text *t, bool prepend_bos, int *n);
extern text *SaeUtf8ToText(const char *s, size_t len);
extern text *SaeTokenText(SaeLm *lm, int32 id);
extern ArrayType *SaeIntArray(const int32 *values, int n);
extern ArrayType *SaeTextArray(text **values, int n);

/* datasets.c: token datasets */
typedef struct SaeDatasetInfo
{
	int64		dataset_id;
	int			context_size;
	char	   *name;
	char	   *model;
	int64		n_contexts;
} SaeDatasetInfo;
extern void SaeDatasetLookup(const char *name, SaeDatasetInfo *info);
/* contexts in order, read inside the caller's SPI connection */
extern SaeTokenSource SaeDatasetTokens(int64 dataset_id, int context_size);

/* model.c: the hook a config trains on at a layer (checked against d_in) */
extern SaeHook SaeConfigHook(SaeLm *lm, const SaeConfig *cfg, int64 layer);

/* html.c: the page of sae_token_log_probs_html */
typedef struct SaeLogProbRow
{
	int32		token_id;
	text	   *token;
	double		log_prob;		/* of this token given the ones before; NaN for the first */
	int			rank;
	int			n_top;
	text	  **top_tokens;		/* predictions at the previous position */
	double	   *top_log_probs;
} SaeLogProbRow;
extern text *SaeLogProbsHtml(const char *model, const SaeLogProbRow *rows, int n);
/* html.c: text escaped for HTML, and a token with its newlines shown (and kept, if breaks) */
extern void SaeHtmlEscape(StringInfo buf, const char *s);
extern void SaeHtmlToken(StringInfo buf, const char *s, bool breaks);

/* arrays of float4 */
extern ArrayType *SaeFloatArray(const float *values, int n);
extern float *SaeArrayToFloats(ArrayType *arr, int *n, const char *what);

/* store.c: rows of the sae.* tables */
extern SPIPlanPtr SaePrepareOnce(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types);
extern void SaeExecutePlan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected);
extern int64 SaeStoreRunStart(const SaeConfig *cfg, const char *source, const char *device);
extern void SaeStoreLogRow(int64 run_id, const SaeStepStats *st, const SaeSparsityStats *sp);
extern void SaeStoreTensor(int64 run_id, const char *name, const float *data,
						   int ndims, const int *shape);
extern void SaeStoreFeatures(int64 run_id, const SaeConfig *cfg, SaeTrainer *t);
extern void SaeStoreRunEnd(int64 run_id, const SaeRunResult *res);
extern int	SaeStoreCheckpoint(int64 run_id, const SaeConfig *cfg, SaeTrainer *t, int64 n_tokens);

/* weights.c: a completed run's weights, in SAELens's layout (W_enc d x m) */
typedef struct SaeRunWeights
{
	int			d,
				m,
				sae_type;
	bool		apply_b_dec_to_input;
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec;
} SaeRunWeights;

extern void SaeLoadRunWeights(int64 run_id, SaeRunWeights *w);
extern void SaeDownloadWeights(SaeTrainer *t, const SaeConfig *cfg, SaeRunWeights *w);
extern void SaeFreeRunWeights(SaeRunWeights *w);
/* store.c: weights as rows of sae.features (firing rates may be NULL) and b_dec in sae.tensors */
extern void SaeStoreFeatureRows(int64 run_id, const SaeRunWeights *w, const float *rate);
/* the config a run was trained with (ERROR if there is no such run) */
extern void SaeRunConfig(int64 run_id, SaeConfig *cfg);
/* a run's weights uploaded to a backend for encoding (ERROR if that fails) */
extern SaeWeights *SaeUploadRunWeights(SaeBackend *be, const SaeRunWeights *w);
/* the model a run was trained on; ERROR for runs of a table, with hint saying why a model is needed */
extern SaeLm *SaeRunModel(int64 run_id, const SaeConfig *cfg, const char *hint);
/* a token dataset of the run's model: name, or the run's own when NULL */
extern void SaeRunDataset(int64 run_id, const SaeConfig *cfg, const char *name, SaeDatasetInfo *ds);

/* evaluate.c: SAELens's evaluation of runs on a model */
extern void SaeEvaluateWeights(SaeLm *lm, const SaeConfig *cfg, const SaeRunWeights *w,
							   const int32 *tokens, int n, SaeEvalResult *out);
extern void SaeStoreEvalStep(int64 run_id, int64 step, const SaeEvalResult *r);
extern void SaeStoreEvalFinal(int64 run_id, const SaeEvalResult *r);

#endif
