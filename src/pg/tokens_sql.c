/*
 * tokens_sql.c — the tokenizer in SQL: sae_to_tokens, sae_to_string and
 * sae_to_str_tokens, as TransformerLens's methods of the same names, and
 * the text conversions the other model functions share.
 *
 * The tokenizer works on UTF-8 bytes; a database in another encoding has
 * its text converted on the way in and out.  Token text that is not valid
 * UTF-8 (a token can hold part of a character) is shown with U+FFFD, as
 * TransformerLens shows it, and so is a NUL byte, which text cannot hold.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "tokenizer.h"

PG_FUNCTION_INFO_V1(sae_to_tokens);
PG_FUNCTION_INFO_V1(sae_to_string);
PG_FUNCTION_INFO_V1(sae_to_str_tokens);

/* Raise an engine error after freeing what the engine allocated. */
static void
report_freeing(SaeError *err, SaeTokIds *ids, SaeTokBytes *bytes)
{
	if (ids)
		sae_tok_ids_free(ids);
	if (bytes)
		sae_tok_bytes_free(bytes);
	SaeReportError(err);
}

/*
 * The tokens of text t as TransformerLens's to_tokens gives them: BOS first
 * if prepend_bos.  Returns a palloc'd array and its length in *n.
 */
int32 *
SaeTokenize(SaeLm *lm, text *t, bool prepend_bos, int *n)
{
	char	   *server = text_to_cstring(t);
	char	   *utf8 = pg_server_to_any(server, strlen(server), PG_UTF8);
	size_t		len = strlen(utf8);
	SaeTokIds	ids = {0};
	SaeError	err;
	int32	   *out;

	if (sae_tokenizer_encode(sae_lm_tokenizer(lm), utf8, len, prepend_bos ? SAE_TOK_PREPEND_BOS : 0,
							 &ids, &err) != SAE_OK)
		report_freeing(&err, &ids, NULL);
	if (ids.len > (size_t) PG_INT32_MAX / sizeof(int32))
		report_freeing(&(SaeError) {SAE_ERR_LIMIT, "the input has too many tokens"}, &ids, NULL);
	*n = (int) ids.len;
	out = palloc(sizeof(int32) * (ids.len + 1));
	memcpy(out, ids.ids, sizeof(int32) * ids.len);
	sae_tok_ids_free(&ids);
	return out;
}

/* UTF-8 bytes as text: invalid sequences and NUL as U+FFFD, then the database encoding. */
text *
SaeUtf8ToText(const char *s, size_t len)
{
	SaeTokBytes lossy = {0};
	SaeError	err;
	StringInfoData buf;
	char	   *server;

	if (sae_utf8_lossy(s, len, &lossy, &err) != SAE_OK)
		report_freeing(&err, NULL, &lossy);
	initStringInfo(&buf);
	for (size_t i = 0; i < lossy.len; i++)
	{
		if (lossy.data[i] == '\0')
			appendStringInfoString(&buf, "\xEF\xBF\xBD");
		else
			appendStringInfoChar(&buf, lossy.data[i]);
	}
	sae_tok_bytes_free(&lossy);
	server = pg_any_to_server(buf.data, buf.len, PG_UTF8);
	return cstring_to_text(server);
}

/* One token as text, as to_str_tokens shows it. */
text *
SaeTokenText(SaeLm *lm, int32 id)
{
	size_t		len;
	const char *bytes = sae_tokenizer_token_bytes(sae_lm_tokenizer(lm), id, &len);

	if (bytes == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token id %d is not in the vocabulary", id),
				 errhint("Token ids are 0 to %d.", sae_tokenizer_vocab_size(sae_lm_tokenizer(lm)) - 1)));
	return SaeUtf8ToText(bytes, len);
}

/* An int4[] from C ints. */
ArrayType *
SaeIntArray(const int32 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n + 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(values[i]);
	return construct_array(d, n, INT4OID, sizeof(int32), true, TYPALIGN_INT);
}

/* A text[] from texts. */
ArrayType *
SaeTextArray(text **values, int n)
{
	return construct_array((Datum *) values, n, TEXTOID, -1, false, TYPALIGN_INT);
}

Datum
sae_to_tokens(PG_FUNCTION_ARGS)
{
	SaeLm	   *lm = SaeGetModel(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	int			n;
	int32	   *ids = SaeTokenize(lm, PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(2), &n);

	/* TransformerLens's to_tokens truncates to the context (truncate=True) */
	if (n > sae_lm_config(lm)->n_ctx)
		n = sae_lm_config(lm)->n_ctx;
	PG_RETURN_ARRAYTYPE_P(SaeIntArray(ids, n));
}

/* The ids of a one-dimensional int[] without NULLs. */
static int32 *
int_array(ArrayType *arr, int *n)
{
	Datum	   *d;
	bool	   *nulls;
	int32	   *out;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR), errmsg("tokens must be a one-dimensional array")));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT, &d, &nulls, n);
	out = palloc(sizeof(int32) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("tokens must not contain NULL (element %d)", i + 1)));
		out[i] = DatumGetInt32(d[i]);
	}
	return out;
}

Datum
sae_to_string(PG_FUNCTION_ARGS)
{
	SaeLm	   *lm = SaeGetModel(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	int			n;
	int32	   *ids = int_array(PG_GETARG_ARRAYTYPE_P(1), &n);
	SaeTokBytes bytes = {0};
	SaeError	err;
	text	   *result;

	if (sae_tokenizer_decode(sae_lm_tokenizer(lm), ids, n, 0, &bytes, NULL, &err) != SAE_OK)
		report_freeing(&err, NULL, &bytes);
	result = SaeUtf8ToText(bytes.data ? bytes.data : "", bytes.len);
	sae_tok_bytes_free(&bytes);
	PG_RETURN_TEXT_P(result);
}

Datum
sae_to_str_tokens(PG_FUNCTION_ARGS)
{
	SaeLm	   *lm = SaeGetModel(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	int			n;
	int32	   *ids = SaeTokenize(lm, PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(2), &n);
	text	  **strs;

	if (n > sae_lm_config(lm)->n_ctx)
		n = sae_lm_config(lm)->n_ctx;
	strs = palloc(sizeof(text *) * (n + 1));
	for (int i = 0; i < n; i++)
		strs[i] = SaeTokenText(lm, ids[i]);
	PG_RETURN_ARRAYTYPE_P(SaeTextArray(strs, n));
}
