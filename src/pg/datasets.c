/*
 * datasets.c — token datasets: sae_create_dataset (from any query) and
 * sae_load_dataset_file (from a file on the server) tokenize and pack text
 * into contexts as SAELens does, and the token stream training reads.
 *
 * Text goes through the model's tokenizer without BOS (SAELens's
 * to_tokens(prepend_bos=False)) and into the packer (packer.h): BOS at the
 * start of every context when prepend_bos, a separator between documents.
 * Already tokenized rows (an int[] column, input_ids in JSON lines) pass
 * through as one context each, cut to context_size, as SAELens 6 takes
 * pretokenized datasets; a uint16 token file is one long document.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "dataset_file.h"
#include "packer.h"

PG_FUNCTION_INFO_V1(sae_create_dataset);
PG_FUNCTION_INFO_V1(sae_load_dataset_file);

/* NOTICE every this many contexts while building a dataset */
#define PROGRESS_CONTEXTS 10000

typedef struct Builder
{
	SaeLm	   *lm;
	const char *name;
	int64		dataset_id;
	int			context_size;
	int			vocab;
	SaePacker	packer;
	SPIPlanPtr	insert;
	int64		contexts;
	int64		documents;
} Builder;

/* One context into sae.dataset_tokens, its ids checked against the vocabulary. */
static int
store_context(void *arg, const int32_t *ids, SaeError *err)
{
	Builder    *b = arg;
	Datum		values[3];

	for (int i = 0; i < b->context_size; i++)
		if (ids[i] < 0 || ids[i] >= b->vocab)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("token id %d in context %lld of dataset \"%s\" is outside the vocabulary",
							ids[i], (long long) b->contexts, b->name),
					 errhint("The model's token ids are 0 to %d; was the dataset tokenized for another model?",
							 b->vocab - 1)));
	values[0] = Int64GetDatum(b->dataset_id);
	values[1] = Int64GetDatum(b->contexts);
	values[2] = PointerGetDatum(SaeIntArray(ids, b->context_size));
	if (SPI_execute_plan(b->insert, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into sae.dataset_tokens");
	b->contexts++;
	if (b->contexts % PROGRESS_CONTEXTS == 0)
		ereport(NOTICE, (errmsg("dataset \"%s\": %lld contexts (%lld tokens) from %lld documents so far",
								b->name, (long long) b->contexts,
								(long long) b->contexts * b->context_size, (long long) b->documents)));
	CHECK_FOR_INTERRUPTS();
	return SAE_OK;
}

/* A text document: tokenized without BOS, then packed. */
static int
add_text(void *arg, const char *text, size_t len, int64_t line, SaeError *err)
{
	Builder    *b = arg;
	SaeTokIds	ids = {0};
	volatile int rc;

	b->documents++;
	PG_TRY();
	{
		rc = sae_tokenizer_encode(sae_lm_tokenizer(b->lm), text, len, 0, &ids, err);
		if (rc == SAE_OK)
			rc = sae_packer_add(&b->packer, ids.ids, ids.len, err);
	}
	PG_CATCH();
	{
		sae_tok_ids_free(&ids);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sae_tok_ids_free(&ids);
	return rc;
}

/* An already tokenized row: one context, its first context_size tokens. */
static int
add_row(void *arg, const int32_t *ids, size_t n, int64_t line, SaeError *err)
{
	Builder    *b = arg;

	b->documents++;
	if (n < (size_t) b->context_size)
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "tokenized row %lld has %zu tokens, fewer than context_size %d",
				  (long long) (line > 0 ? line : b->documents), n, b->context_size);
		return sae_error_hint(err, "Pretokenized rows are cut to context_size, never packed (as in SAELens); use a smaller context_size.");
	}
	return store_context(b, ids, err);
}

/* A uint16 token stream: one long document through the packer. */
static int
add_stream(void *arg, const int32_t *ids, size_t n, int64_t line, SaeError *err)
{
	Builder    *b = arg;

	b->documents++;
	return sae_packer_add(&b->packer, ids, n, err);
}

/* The separator's token id, from its name. */
static int32_t
separator_id(SaeLm *lm, const char *sep)
{
	SaeTokenizer *tok = sae_lm_tokenizer(lm);

	if (strcmp(sep, "bos") == 0)
		return sae_tokenizer_bos_id(tok);
	if (strcmp(sep, "eos") == 0)
		return sae_tokenizer_eos_id(tok);
	if (strcmp(sep, "none") == 0)
		return -1;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("sequence_separator must be \"bos\", \"eos\" or \"none\", not \"%s\"", sep)));
	return -1;
}

/* The packer's buffer is the engine's: freed with the builder's memory, on error too. */
static void
free_packer(void *arg)
{
	sae_packer_free(arg);
}

/* Check the arguments, record the dataset and prepare its inserts. */
static void
builder_start(Builder *b, const char *name, const char *model, int context_size,
			  bool prepend_bos, const char *sep, const char *source)
{
	Datum		values[6];
	Oid			types[6] = {TEXTOID, TEXTOID, INT4OID, BOOLOID, TEXTOID, TEXTOID};
	bool		isnull;
	SaeError	err;
	MemoryContextCallback *cleanup;

	memset(b, 0, sizeof(*b));
	b->lm = SaeGetModel(model);
	SPI_connect();
	b->name = name;
	b->context_size = context_size;
	b->vocab = sae_lm_config(b->lm)->d_vocab;
	if (context_size < 2 || context_size > sae_lm_config(b->lm)->n_ctx)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context_size %d is outside 2 to the model's context of %d", context_size,
						sae_lm_config(b->lm)->n_ctx),
				 errhint("Contexts longer than the model's positions cannot be run through it.")));
	if (sae_packer_init(&b->packer, context_size,
						prepend_bos ? sae_tokenizer_bos_id(sae_lm_tokenizer(b->lm)) : -1,
						separator_id(b->lm, sep), store_context, b, &err) != SAE_OK)
		SaeReportError(&err);
	cleanup = palloc(sizeof(MemoryContextCallback));
	cleanup->func = free_packer;
	cleanup->arg = &b->packer;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cleanup);
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT 1 FROM sae.datasets WHERE name = $1", 1, (Oid[]) {TEXTOID},
							  values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("token dataset \"%s\" already exists", name),
				 errhint("Choose another name, or drop it first: DELETE FROM sae.datasets WHERE name = '%s';", name)));
	values[1] = CStringGetTextDatum(model);
	values[2] = Int32GetDatum(context_size);
	values[3] = BoolGetDatum(prepend_bos);
	values[4] = CStringGetTextDatum(sep);
	values[5] = CStringGetTextDatum(source);
	if (SPI_execute_with_args("INSERT INTO sae.datasets (name, model, context_size, prepend_bos, sequence_separator, source) "
							  "VALUES ($1, $2, $3, $4, $5, $6) RETURNING dataset_id",
							  6, types, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into sae.datasets");
	b->dataset_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	b->insert = SPI_prepare("INSERT INTO sae.dataset_tokens (dataset_id, context_id, tokens) VALUES ($1, $2, $3)",
							3, (Oid[]) {INT8OID, INT8OID, INT4ARRAYOID});
	if (b->insert == NULL)
		elog(ERROR, "could not prepare the insert into sae.dataset_tokens");
}

/* Totals into the dataset's row; an empty dataset is an error. */
static int64
builder_finish(Builder *b)
{
	Datum		values[3] = {Int64GetDatum(b->dataset_id), Int64GetDatum(b->contexts),
	Int64GetDatum(b->documents)};

	if (b->contexts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("dataset \"%s\" would have no contexts", b->name),
				 errdetail("%lld documents gave fewer than %d tokens in all.", (long long) b->documents,
						   b->context_size),
				 errhint("Give more text, or a smaller context_size.")));
	if (SPI_execute_with_args("UPDATE sae.datasets SET n_contexts = $2, n_tokens = $2 * context_size, "
							  "n_documents = $3 WHERE dataset_id = $1",
							  3, (Oid[]) {INT8OID, INT8OID, INT8OID}, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sae.datasets");
	ereport(NOTICE, (errmsg("dataset \"%s\": %lld contexts of %d tokens from %lld documents",
							b->name, (long long) b->contexts, b->context_size, (long long) b->documents)));
	return b->dataset_id;
}

/* Feed the rows of the query's first column (text, or an int[] of token ids). */
static void
feed_query(Builder *b, const char *query)
{
	Portal		portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	Oid			type;
	SaeError	err;

	type = SPI_gettypeid(portal->tupDesc, 1);
	if (type != TEXTOID && type != VARCHAROID && type != INT4ARRAYOID && type != INT8ARRAYOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the query's first column is %s, not text or int[]", format_type_be(type)),
				 errhint("Select the text column (or a column of token ids) first.")));
	for (;;)
	{
		SPITupleTable *batch;
		uint64		rows;

		SPI_cursor_fetch(portal, true, 1000);
		/* keep them: the inserts below replace SPI_tuptable and SPI_processed */
		batch = SPI_tuptable;
		rows = SPI_processed;
		if (rows == 0)
			break;
		for (uint64 i = 0; i < rows; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull);
			int			rc;

			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("row %lld of the dataset query is NULL", (long long) b->documents + 1),
						 errhint("Filter NULLs out, e.g. WHERE text IS NOT NULL.")));
			if (type == TEXTOID || type == VARCHAROID)
			{
				char	   *s = TextDatumGetCString(d);
				char	   *utf8 = pg_server_to_any(s, strlen(s), PG_UTF8);

				rc = add_text(b, utf8, strlen(utf8), b->documents + 1, &err);
			}
			else
			{
				ArrayType  *arr = DatumGetArrayTypeP(d);
				Datum	   *elems;
				bool	   *nulls;
				int			n;
				int32	   *ids;

				if (type == INT4ARRAYOID)
					deconstruct_array(arr, INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &n);
				else
					deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
				ids = palloc(sizeof(int32) * (n + 1));
				for (int k = 0; k < n; k++)
				{
					int64		v = type == INT4ARRAYOID ? DatumGetInt32(elems[k]) : DatumGetInt64(elems[k]);

					ids[k] = nulls[k] || v < 0 || v > PG_INT32_MAX ? -1 : (int32) v;
				}
				rc = add_row(b, ids, n, b->documents + 1, &err);
			}
			if (rc != SAE_OK)
				SaeReportError(&err);
		}
		SPI_freetuptable(batch);
	}
	SPI_cursor_close(portal);
}

Datum
sae_create_dataset(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *sep = text_to_cstring(PG_GETARG_TEXT_PP(5));
	Builder    *b = palloc(sizeof(Builder));
	int64		id;

	builder_start(b, name, model, PG_GETARG_INT32(3), PG_GETARG_BOOL(4), sep, query);
	feed_query(b, query);
	id = builder_finish(b);
	SPI_finish();
	PG_RETURN_INT64(id);
}

Datum
sae_load_dataset_file(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *format = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(3));
	char	   *sep = text_to_cstring(PG_GETARG_TEXT_PP(6));
	SaeDatasetCallbacks cb;
	Builder    *b = palloc(sizeof(Builder));
	SaeError	err;
	int64		id;

	SaeCheckReadServerFiles("a dataset file");
	if (sae_dataset_format_check(format, &err) != SAE_OK)
		SaeReportError(&err);
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("dataset path \"%s\" is not absolute", path)));
	builder_start(b, name, model, PG_GETARG_INT32(4), PG_GETARG_BOOL(5), sep, path);
	cb.arg = b;
	cb.text = add_text;
	cb.tokens = strcmp(format, "uint16") == 0 ? add_stream : add_row;
	if (sae_dataset_file_read(path, format, &cb, &err) != SAE_OK)
		SaeReportError(&err);
	id = builder_finish(b);
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* A dataset by name (an error with a hint when there is none). */
void
SaeDatasetLookup(const char *name, SaeDatasetInfo *info)
{
	Datum		arg = CStringGetTextDatum(name);
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	if (SPI_execute_with_args("SELECT dataset_id, context_size, model, n_contexts FROM sae.datasets WHERE name = $1",
							  1, (Oid[]) {TEXTOID}, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.datasets");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("token dataset \"%s\" does not exist", name),
				 errhint("Make it with sae_create_dataset(name, model, query) or sae_load_dataset_file.")));
	info->name = MemoryContextStrdup(caller, name);
	info->dataset_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	info->context_size = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	info->model = MemoryContextStrdup(caller, TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)));
	info->n_contexts = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	SPI_finish();
}

/* Reading a dataset's contexts in order, a batch per query on its primary key. */
typedef struct DatasetReader
{
	int64		dataset_id;
	int			context_size;
	int64		next_id;
	SPIPlanPtr	plan;
} DatasetReader;

/* SaeTokenSource.read; runs inside the caller's SPI connection. */
static int64_t
reader_read(void *ctx, int32_t *dst, int64_t max, SaeError *err)
{
	DatasetReader *r = ctx;
	Datum		values[3] = {Int64GetDatum(r->dataset_id), Int64GetDatum(r->next_id), Int64GetDatum(max)};
	uint64		n;

	if (SPI_execute_plan(r->plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read sae.dataset_tokens");
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		ArrayType  *arr = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (ARR_NDIM(arr) != 1 || ARR_DIMS(arr)[0] != r->context_size || ARR_HASNULL(arr))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("context %lld of dataset %lld does not hold %d tokens",
							(long long) (r->next_id + i), (long long) r->dataset_id, r->context_size)));
		memcpy(dst + i * r->context_size, ARR_DATA_PTR(arr), sizeof(int32) * r->context_size);
	}
	if (n > 0)
	{
		bool		isnull;

		r->next_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, 2, &isnull)) + 1;
	}
	SPI_freetuptable(SPI_tuptable);
	return (int64_t) n;
}

static int
reader_rewind(void *ctx, SaeError *err)
{
	((DatasetReader *) ctx)->next_id = 0;
	return SAE_OK;
}

SaeTokenSource
SaeDatasetTokens(int64 dataset_id, int context_size)
{
	DatasetReader *r = palloc0(sizeof(DatasetReader));
	SaeTokenSource src = {r, reader_read, reader_rewind};

	r->dataset_id = dataset_id;
	r->context_size = context_size;
	r->plan = SPI_prepare("SELECT tokens, context_id FROM sae.dataset_tokens WHERE dataset_id = $1 AND context_id >= $2 "
						  "ORDER BY context_id LIMIT $3", 3, (Oid[]) {INT8OID, INT8OID, INT8OID});
	if (r->plan == NULL)
		elog(ERROR, "could not prepare reading sae.dataset_tokens");
	return src;
}
