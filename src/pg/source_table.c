/*
 * source_table.c — activation rows from a table or view, through SPI.
 *
 * The relation name in the config is parsed as a (possibly qualified)
 * identifier and resolved to an OID, the column is looked up in the
 * catalog, and only then is a query built from the quoted names: nothing
 * from the config is pasted into SQL.  The query runs with the caller's
 * privileges, so a config can read only what its caller could.  Rows are
 * fetched through a cursor, a chunk at a time.
 */
#include "sae_pg.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/varlena.h"

struct SaeTableSource
{
	char	   *relname;		/* quoted, schema-qualified */
	char	   *colname;		/* as given */
	char	   *query;
	SPIPlanPtr	plan;
	Portal		portal;
	Oid			elemtype;		/* FLOAT4OID or FLOAT8OID */
	int			d_in;
	int64		row;			/* 1-based row number within the epoch */
};

/* Error context: which config value a name-syntax error is about. */
static void
relation_name_context(void *arg)
{
	errcontext("activations_table \"%s\"", (const char *) arg);
}

/* Resolve the relation the way a SQL identifier would be. */
static Oid
resolve_relation(const char *name)
{
	ErrorContextCallback ctx = {.callback = relation_name_context, .arg = (void *) name,
	.previous = error_context_stack};
	List	   *names;
	Oid			relid;

	error_context_stack = &ctx;
	names = stringToQualifiedNameList(name);
	error_context_stack = ctx.previous;
	relid = RangeVarGetRelid(makeRangeVarFromNameList(names), AccessShareLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("activations_table \"%s\" does not exist", name),
				 errhint("Create the table or view first, or check search_path.")));
	switch (get_rel_relkind(relid))
	{
		case RELKIND_RELATION:
		case RELKIND_VIEW:
		case RELKIND_MATVIEW:
		case RELKIND_PARTITIONED_TABLE:
		case RELKIND_FOREIGN_TABLE:
			return relid;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("activations_table \"%s\" is not a table or view", name),
					 errhint("Name a table, view, materialized view, partitioned table or foreign table.")));
	}
	return InvalidOid;
}

/* Check the column exists and holds real[] or float8[]. */
static Oid
resolve_column(Oid relid, const char *relname, const char *col)
{
	AttrNumber	attnum = get_attnum(relid, col);
	Oid			type;

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of activations_table \"%s\" does not exist", col, relname),
				 errhint("Set \"activations_column\" to a real[] or float8[] column.")));
	type = get_atttype(relid, attnum);
	if (type == FLOAT4ARRAYOID)
		return FLOAT4OID;
	if (type == FLOAT8ARRAYOID)
		return FLOAT8OID;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("column \"%s\" of activations_table \"%s\" has type %s", col, relname,
					format_type_be(type)),
			 errhint("Activations must be real[] or float8[].")));
	return InvalidOid;
}

SaeTableSource *
SaeTableSourceOpen(const SaeConfig *cfg)
{
	SaeTableSource *ts = palloc0(sizeof(SaeTableSource));
	Oid			relid = resolve_relation(cfg->activations_table);
	StringInfoData q;

	ts->relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											 get_rel_name(relid));
	ts->colname = pstrdup(cfg->activations_column);
	ts->elemtype = resolve_column(relid, cfg->activations_table, cfg->activations_column);
	ts->d_in = (int) cfg->d_in;
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s FROM %s", quote_identifier(ts->colname), ts->relname);
	ts->query = q.data;
	ts->plan = SPI_prepare(ts->query, 0, NULL);
	if (ts->plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", ts->query, SPI_result_code_string(SPI_result));
	return ts;
}

char *
SaeTableSourceName(SaeTableSource *ts)
{
	return psprintf("%s.%s", ts->relname, quote_identifier(ts->colname));
}

static void
open_cursor(SaeTableSource *ts)
{
	ts->portal = SPI_cursor_open(NULL, ts->plan, NULL, NULL, true);
	ts->row = 0;
}

void
SaeTableSourceClose(SaeTableSource *ts)
{
	if (ts->portal != NULL)
		SPI_cursor_close(ts->portal);
	ts->portal = NULL;
}

/* One row into dst, with the row number in every complaint. */
static void
copy_row(SaeTableSource *ts, Datum value, bool isnull, float *dst)
{
	ArrayType  *arr;
	int			n;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("row %lld of activations_table %s has a NULL %s", (long long) ts->row,
						ts->relname, quote_identifier(ts->colname)),
				 errhint("Filter out NULL rows with a view, and train on the view.")));
	arr = DatumGetArrayTypeP(value);
	n = ARR_NDIM(arr) == 1 ? ARR_DIMS(arr)[0] : (ARR_NDIM(arr) == 0 ? 0 : -1);
	if (n != ts->d_in)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("row %lld of activations_table %s has %s", (long long) ts->row, ts->relname,
						n < 0 ? "a multi-dimensional array" : psprintf("%d values", n)),
				 errdetail("The config's d_in is %d.", ts->d_in),
				 errhint("Every activation must be a one-dimensional array of d_in values.")));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("row %lld of activations_table %s contains a NULL element", (long long) ts->row,
						ts->relname)));
	if (ts->elemtype == FLOAT4OID)
		memcpy(dst, ARR_DATA_PTR(arr), sizeof(float) * n);
	else
	{
		const double *src = (const double *) ARR_DATA_PTR(arr);

		for (int i = 0; i < n; i++)
			dst[i] = (float) src[i];
	}
	for (int i = 0; i < n; i++)
		if (!isfinite(dst[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("row %lld of activations_table %s has a non-finite value (%g) at position %d",
							(long long) ts->row, ts->relname, (double) dst[i], i + 1),
					 errhint("Remove or fix rows with NaN or Infinity (or values too large for real).")));
	if ((Pointer) arr != DatumGetPointer(value))
		pfree(arr);
}

/* SaeSource.read: the next chunk of rows. */
static int64_t
source_read(void *ctx, float *dst, int64_t max_rows, SaeError *err)
{
	SaeTableSource *ts = ctx;
	int64		got;

	CHECK_FOR_INTERRUPTS();
	if (ts->portal == NULL)
		open_cursor(ts);
	SPI_cursor_fetch(ts->portal, true, max_rows);
	got = (int64) SPI_processed;
	for (int64 r = 0; r < got; r++)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

		ts->row++;
		copy_row(ts, value, isnull, dst + (size_t) r * ts->d_in);
	}
	SPI_freetuptable(SPI_tuptable);
	return got;
}

/* SaeSource.rewind: a new epoch reads from the first row again. */
static int
source_rewind(void *ctx, SaeError *err)
{
	SaeTableSource *ts = ctx;

	SaeTableSourceClose(ts);
	open_cursor(ts);
	return SAE_OK;
}

void
SaeTableSourceInit(SaeTableSource *ts, SaeSource *src)
{
	*src = (SaeSource) {.ctx = ts, .read = source_read, .rewind = source_rewind};
}
