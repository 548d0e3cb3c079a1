/*
 * explore.c — what the seed tutorial does with a model before training, in
 * SQL: sae_generate, sae_test_prompt, sae_token_log_probs (and its HTML
 * page) and sae_run_with_cache, each modelled on the TransformerLens
 * function of the same name.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include <math.h>

#include "rng.h"

PG_FUNCTION_INFO_V1(sae_generate);
PG_FUNCTION_INFO_V1(sae_test_prompt);
PG_FUNCTION_INFO_V1(sae_token_log_probs);
PG_FUNCTION_INFO_V1(sae_token_log_probs_html);
PG_FUNCTION_INFO_V1(sae_run_with_cache);

#define LOG_PROBS_TOP 5

static void
forward(SaeLm *lm, SaeLmRequest *req)
{
	SaeError	err;

	req->should_stop = SaeStopIfInterrupted;
	if (sae_lm_forward(lm, req, &err) != SAE_OK)
		SaeReportError(&err);
}

/* Logits of every position of one sequence (T x d_vocab, palloc'd). */
static float *
all_logits(SaeLm *lm, const int32 *ids, int T)
{
	size_t		V = sae_lm_config(lm)->d_vocab;
	float	   *logits = palloc_extended(sizeof(float) * V * T, MCXT_ALLOC_HUGE);
	SaeLmRequest req = {.tokens = ids, .B = 1, .T = T, .logits = logits};

	forward(lm, &req);
	return logits;
}

static void
require_tokens(int n)
{
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the input has no tokens"),
				 errhint("Give some text, or keep prepend_bos on.")));
}

/* log(sum(exp(x))) of a row, in double. */
static double
log_sum_exp(const float *x, int n)
{
	float		max = x[0];
	double		sum = 0;

	for (int i = 1; i < n; i++)
		max = x[i] > max ? x[i] : max;
	for (int i = 0; i < n; i++)
		sum += exp((double) x[i] - max);
	return max + log(sum);
}

/* The rank of token t among n logits: 0 = highest; ties go to the lower id. */
static int
rank_of(const float *x, int n, int t)
{
	int			r = 0;

	for (int i = 0; i < n; i++)
		if (x[i] > x[t] || (x[i] == x[t] && i < t))
			r++;
	return r;
}

/* The ids of the k highest logits, highest first (ties: lower id first). */
static void
top_k(const float *x, int n, int k, int32 *ids)
{
	int			have = 0;

	for (int i = 0; i < n; i++)
	{
		int			j;

		if (have == k && x[i] <= x[ids[k - 1]])
			continue;
		j = have < k ? have++ : k - 1;
		while (j > 0 && x[ids[j - 1]] < x[i])
		{
			ids[j] = ids[j - 1];
			j--;
		}
		ids[j] = i;
	}
}

/* Draw from softmax(logits / temperature) with the run's counter RNG; argmax when temperature is 0. */
static int32
sample(const float *logits, int V, double temperature, uint64 seed, uint64 step)
{
	double		u,
				sum = 0,
				acc = 0,
				max;
	int32		best;

	top_k(logits, V, 1, &best);
	if (temperature == 0)
		return best;
	max = logits[best];
	for (int i = 0; i < V; i++)
		sum += exp(((double) logits[i] - max) / temperature);
	u = sae_uniform(seed, SAE_STREAM_GENERATE, step) * sum;
	for (int i = 0; i < V; i++)
	{
		acc += exp(((double) logits[i] - max) / temperature);
		if (u < acc)
			return i;
	}
	return best;
}

Datum
sae_generate(PG_FUNCTION_ARGS)
{
	SaeLm	   *lm;
	const SaeLmConfig *cfg;
	int			n,
				max_new,
				n_prompt;
	double		temperature;
	uint64		seed;
	bool		stop_at_eos;
	int32	   *prompt,
			   *ids;
	float	   *logits;
	SaeTokBytes out = {0};
	SaeError	err;
	text	   *result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(5))
		PG_RETURN_NULL();
	lm = SaeGetModelOn(text_to_cstring(PG_GETARG_TEXT_PP(0)), SaeSessionDevice());
	cfg = sae_lm_config(lm);
	max_new = PG_GETARG_INT32(2);
	temperature = PG_GETARG_FLOAT4(3);
	seed = PG_ARGISNULL(4) ? pg_prng_uint64(&pg_global_prng_state) : (uint64) PG_GETARG_INT64(4);
	stop_at_eos = PG_GETARG_BOOL(5);
	if (max_new < 0 || !(temperature >= 0) || isinf(temperature))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_new_tokens must be >= 0 and temperature a finite number >= 0"),
				 errhint("temperature 0 takes the most likely token every time.")));
	prompt = SaeTokenize(lm, PG_GETARG_TEXT_PP(1), true, &n_prompt);
	if ((int64) n_prompt + max_new > cfg->n_ctx)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%d prompt tokens and %d new ones are more than the model's context of %d",
						n_prompt, max_new, cfg->n_ctx),
				 errhint("Ask for fewer new tokens or give a shorter prompt.")));
	ids = palloc(sizeof(int32) * (n_prompt + max_new + 1));
	memcpy(ids, prompt, sizeof(int32) * n_prompt);
	n = n_prompt;
	logits = palloc(sizeof(float) * cfg->d_vocab);
	for (int step = 0, pos0 = 0; step < max_new; step++)
	{
		SaeLmRequest req = {.tokens = ids + pos0, .B = 1, .T = n - pos0, .logits = logits,
		.logits_last_only = true, .use_cache = true, .pos0 = pos0};

		forward(lm, &req);
		ids[n] = sample(logits, cfg->d_vocab, temperature, seed, step);
		pos0 = n++;
		if (stop_at_eos && ids[n - 1] == cfg->eos_id)
			break;
	}
	/* TransformerLens returns the text without the BOS it put first */
	if (sae_tokenizer_decode(sae_lm_tokenizer(lm), ids + 1, n - 1, 0, &out, NULL, &err) != SAE_OK)
	{
		sae_tok_bytes_free(&out);
		SaeReportError(&err);
	}
	result = SaeUtf8ToText(out.data ? out.data : "", out.len);
	sae_tok_bytes_free(&out);
	PG_RETURN_TEXT_P(result);
}

/* Python's repr of a str, as TransformerLens's printed token lists show them. */
static void
append_py_repr(StringInfo buf, const char *s)
{
	char		q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';

	appendStringInfoChar(buf, q);
	for (; *s; s++)
	{
		if (*s == q || *s == '\\')
			appendStringInfo(buf, "\\%c", *s);
		else if (*s == '\n')
			appendStringInfoString(buf, "\\n");
		else if (*s == '\t')
			appendStringInfoString(buf, "\\t");
		else if (*s == '\r')
			appendStringInfoString(buf, "\\r");
		else if ((unsigned char) *s < 0x20)
			appendStringInfo(buf, "\\x%02x", (unsigned char) *s);
		else
			appendStringInfoChar(buf, *s);
	}
	appendStringInfoChar(buf, q);
}

static void
append_token_list(StringInfo buf, SaeLm *lm, const int32 *ids, int n)
{
	appendStringInfoChar(buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (i)
			appendStringInfoString(buf, ", ");
		append_py_repr(buf, text_to_cstring(SaeTokenText(lm, ids[i])));
	}
	appendStringInfoChar(buf, ']');
}

/*
 * TransformerLens's test_prompt: the prompt followed by the answer in one
 * pass; for each answer token, its rank, logit and probability where it is
 * predicted, and the top k there.  One row per (answer token, top-k rank);
 * the report test_prompt prints comes as a NOTICE.
 */
Datum
sae_test_prompt(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SaeLm	   *lm = SaeGetModelOn(text_to_cstring(PG_GETARG_TEXT_PP(0)), SaeSessionDevice());
	char	   *answer = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int			k = PG_GETARG_INT32(3);
	bool		prepend_space = PG_GETARG_BOOL(4);
	int			V = sae_lm_config(lm)->d_vocab;
	int			n_prompt,
				n_answer;
	int32	   *prompt,
			   *ans,
			   *all,
			   *top;
	float	   *logits;
	StringInfoData report;

	if (k < 1 || k > V)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and the vocabulary size %d, not %d", V, k)));
	if (prepend_space && answer[0] != ' ')
		answer = psprintf(" %s", answer);
	prompt = SaeTokenize(lm, PG_GETARG_TEXT_PP(1), true, &n_prompt);
	ans = SaeTokenize(lm, cstring_to_text(answer), false, &n_answer);
	require_tokens(n_answer);
	all = palloc(sizeof(int32) * (n_prompt + n_answer));
	memcpy(all, prompt, sizeof(int32) * n_prompt);
	memcpy(all + n_prompt, ans, sizeof(int32) * n_answer);
	logits = all_logits(lm, all, n_prompt + n_answer);
	top = palloc(sizeof(int32) * k);

	InitMaterializedSRF(fcinfo, 0);
	initStringInfo(&report);
	appendStringInfoString(&report, "Tokenized prompt: ");
	append_token_list(&report, lm, prompt, n_prompt);
	appendStringInfoString(&report, "\nTokenized answer: ");
	append_token_list(&report, lm, ans, n_answer);
	for (int a = 0; a < n_answer; a++)
	{
		const float *row = logits + (size_t) (n_prompt + a - 1) * V;
		double		lse = log_sum_exp(row, V);
		int			rank = rank_of(row, V, ans[a]);
		text	   *ans_text = SaeTokenText(lm, ans[a]);

		appendStringInfo(&report, "\nPerformance on answer token:\nRank: %-8d Logit: %5.2f Prob: %6.2f%% Token: |%s|",
						 rank, row[ans[a]], 100 * exp(row[ans[a]] - lse), text_to_cstring(ans_text));
		top_k(row, V, k, top);
		for (int r = 0; r < k; r++)
		{
			Datum		values[9];
			bool		nulls[9] = {0};
			text	   *tok = SaeTokenText(lm, top[r]);

			values[0] = Int32GetDatum(a);
			values[1] = PointerGetDatum(ans_text);
			values[2] = Int32GetDatum(rank);
			values[3] = Float4GetDatum(row[ans[a]]);
			values[4] = Float4GetDatum((float) exp(row[ans[a]] - lse));
			values[5] = Int32GetDatum(r);
			values[6] = PointerGetDatum(tok);
			values[7] = Float4GetDatum(row[top[r]]);
			values[8] = Float4GetDatum((float) exp(row[top[r]] - lse));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			appendStringInfo(&report, "\nTop %dth token. Logit: %5.2f Prob: %6.2f%% Token: |%s|",
							 r, row[top[r]], 100 * exp(row[top[r]] - lse), text_to_cstring(tok));
		}
	}
	ereport(NOTICE, (errmsg_internal("%s", report.data)));
	return (Datum) 0;
}

/*
 * Per position p of the input: the log-probability of token p + 1 given
 * tokens 0..p, its rank, and the LOG_PROBS_TOP most likely tokens at p.
 */
typedef struct LogProbs
{
	int			T;
	int32	   *ids;
	double	   *next_log_prob;	/* T - 1 entries */
	int		   *next_rank;
	int32	   *top;			/* T x LOG_PROBS_TOP */
	double	   *top_log_prob;
} LogProbs;

static void
compute_log_probs(SaeLm *lm, text *input, bool prepend_bos, LogProbs *lp)
{
	int			V = sae_lm_config(lm)->d_vocab;
	float	   *logits;

	lp->ids = SaeTokenize(lm, input, prepend_bos, &lp->T);
	require_tokens(lp->T);
	logits = all_logits(lm, lp->ids, lp->T);
	lp->next_log_prob = palloc(sizeof(double) * lp->T);
	lp->next_rank = palloc(sizeof(int) * lp->T);
	lp->top = palloc(sizeof(int32) * lp->T * LOG_PROBS_TOP);
	lp->top_log_prob = palloc(sizeof(double) * lp->T * LOG_PROBS_TOP);
	for (int p = 0; p < lp->T; p++)
	{
		const float *row = logits + (size_t) p * V;
		double		lse = log_sum_exp(row, V);
		int			k = V < LOG_PROBS_TOP ? V : LOG_PROBS_TOP;

		if (p + 1 < lp->T)
		{
			lp->next_log_prob[p] = row[lp->ids[p + 1]] - lse;
			lp->next_rank[p] = rank_of(row, V, lp->ids[p + 1]);
		}
		top_k(row, V, k, lp->top + p * LOG_PROBS_TOP);
		for (int r = 0; r < k; r++)
			lp->top_log_prob[p * LOG_PROBS_TOP + r] = row[lp->top[p * LOG_PROBS_TOP + r]] - lse;
	}
	pfree(logits);
}

Datum
sae_token_log_probs(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SaeLm	   *lm = SaeGetModelOn(text_to_cstring(PG_GETARG_TEXT_PP(0)), SaeSessionDevice());
	int			k = Min(LOG_PROBS_TOP, sae_lm_config(lm)->d_vocab);
	LogProbs	lp;

	compute_log_probs(lm, PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(2), &lp);
	InitMaterializedSRF(fcinfo, 0);
	for (int p = 0; p < lp.T; p++)
	{
		Datum		values[10];
		bool		nulls[10] = {0};
		text	  **top_text = palloc(sizeof(text *) * k);
		float	   *top_lp = palloc(sizeof(float) * k);
		bool		last = p + 1 == lp.T;

		for (int r = 0; r < k; r++)
		{
			top_text[r] = SaeTokenText(lm, lp.top[p * LOG_PROBS_TOP + r]);
			top_lp[r] = (float) lp.top_log_prob[p * LOG_PROBS_TOP + r];
		}
		values[0] = Int32GetDatum(p);
		values[1] = Int32GetDatum(lp.ids[p]);
		values[2] = PointerGetDatum(SaeTokenText(lm, lp.ids[p]));
		values[3] = last ? 0 : Int32GetDatum(lp.ids[p + 1]);
		values[4] = last ? 0 : PointerGetDatum(SaeTokenText(lm, lp.ids[p + 1]));
		values[5] = last ? 0 : Float4GetDatum((float) lp.next_log_prob[p]);
		values[6] = last ? 0 : Int32GetDatum(lp.next_rank[p]);
		nulls[3] = nulls[4] = nulls[5] = nulls[6] = last;
		values[7] = PointerGetDatum(SaeIntArray(lp.top + p * LOG_PROBS_TOP, k));
		values[8] = PointerGetDatum(SaeTextArray(top_text, k));
		values[9] = PointerGetDatum(SaeFloatArray(top_lp, k));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
sae_token_log_probs_html(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SaeLm	   *lm = SaeGetModelOn(model, SaeSessionDevice());
	int			k = Min(LOG_PROBS_TOP, sae_lm_config(lm)->d_vocab);
	LogProbs	lp;
	SaeLogProbRow *rows;

	compute_log_probs(lm, PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(2), &lp);
	rows = palloc0(sizeof(SaeLogProbRow) * lp.T);
	for (int p = 0; p < lp.T; p++)
	{
		SaeLogProbRow *r = &rows[p];

		r->token_id = lp.ids[p];
		r->token = SaeTokenText(lm, lp.ids[p]);
		r->log_prob = p == 0 ? NAN : lp.next_log_prob[p - 1];
		r->rank = p == 0 ? -1 : lp.next_rank[p - 1];
		r->n_top = p == 0 ? 0 : k;
		r->top_tokens = palloc(sizeof(text *) * k);
		r->top_log_probs = palloc(sizeof(double) * k);
		for (int i = 0; p > 0 && i < k; i++)
		{
			r->top_tokens[i] = SaeTokenText(lm, lp.top[(p - 1) * LOG_PROBS_TOP + i]);
			r->top_log_probs[i] = lp.top_log_prob[(p - 1) * LOG_PROBS_TOP + i];
		}
	}
	PG_RETURN_TEXT_P(SaeLogProbsHtml(model, rows, lp.T));
}

/* TransformerLens's run_with_cache for one hook: the activation at every position. */
Datum
sae_run_with_cache(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SaeLm	   *lm = SaeGetModelOn(text_to_cstring(PG_GETARG_TEXT_PP(0)), SaeSessionDevice());
	char	   *hook_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int			T,
				width;
	int32	   *ids = SaeTokenize(lm, PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(3), &T);
	SaeLmCapture cap = {.dst = NULL};
	SaeLmRequest req = {.tokens = ids, .B = 1};
	SaeError	err;

	if (sae_hook_parse(lm, hook_name, &cap.hook, &err) != SAE_OK)
		SaeReportError(&err);
	require_tokens(T);
	width = sae_hook_width(lm, cap.hook, T);
	cap.dst = palloc_extended(sizeof(float) * (size_t) T * width, MCXT_ALLOC_HUGE);
	req.T = T;
	req.captures = &cap;
	req.n_captures = 1;
	forward(lm, &req);
	InitMaterializedSRF(fcinfo, 0);
	for (int p = 0; p < T; p++)
	{
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = Int32GetDatum(p);
		values[1] = Int32GetDatum(ids[p]);
		values[2] = PointerGetDatum(SaeTokenText(lm, ids[p]));
		values[3] = PointerGetDatum(SaeFloatArray(cap.dst + (size_t) p * width, width));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
