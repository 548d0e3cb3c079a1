/*
 * dashboard.c — self-contained HTML pages about a run: one feature's
 * dashboard (sae_feature_dashboard: activation histogram, top and bottom
 * logits, top examples with each token shaded by the activation, as
 * sae_vis and Neuronpedia show them) and the run's report (sae_run_report:
 * training curves as SVG plots, the config and the final metrics).
 *
 * Like html.c's page: inline CSS and SVG, no scripts and nothing from the
 * network.  The numbers come from the sae.* tables through SPI.
 */
#include "sae_pg.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include <math.h>

PG_FUNCTION_INFO_V1(sae_feature_dashboard);
PG_FUNCTION_INFO_V1(sae_run_report);

/* Plot size in SVG user units. */
#define PLOT_W 420
#define PLOT_H 180
#define PLOT_PAD 34

static const char *const dashboard_style =
"body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:24px;color:#222;background:#fff}"
"h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px}"
".meta{color:#555;font-size:13px;margin-bottom:10px}"
".cols{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}"
"table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left}"
"th{color:#555;font-weight:normal;border-bottom:1px solid #ccc}"
".num{text-align:right;font-family:'DejaVu Sans Mono',monospace}"
".pos{color:#1a7f37}.neg{color:#b42318}"
".ex{font-family:'DejaVu Sans Mono',monospace;font-size:14px;line-height:2;white-space:pre-wrap;margin:2px 0}"
".ex .act{display:inline-block;width:70px;color:#555;font-size:12px}"
".tok{border:1px solid #eee;border-radius:3px;margin:0 1px}.top{outline:2px solid #c2410c}"
"svg text{font-size:11px;fill:#444}.bar{fill:#ea580c}.line{fill:none;stroke:#2563eb;stroke-width:1.5}"
".axis{stroke:#999;stroke-width:1}.dot{fill:#2563eb}.note{color:#777;font-size:13px}";

/* Run a read-only query with int8 arguments; rows are in SPI_tuptable. */
static uint64
query(const char *sql, int nargs, const int64 *args)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];

	for (int i = 0; i < nargs; i++)
		values[i] = Int64GetDatum(args[i]);
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run \"%s\"", sql);
	return SPI_processed;
}

/* Column col (1-based) of row r as text, or NULL. */
static char *
cell(uint64 r, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col);
}

/* Column col of row r as a double; NaN for NULL. */
static double
cell_num(uint64 r, int col)
{
	char	   *s = cell(r, col);

	return s ? strtod(s, NULL) : NAN;
}

/* The page's start: doctype, style and a title. */
static void
begin_page(StringInfo buf, const char *title)
{
	appendStringInfo(buf, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
	SaeHtmlEscape(buf, title);
	appendStringInfo(buf, "</title><style>%s</style></head><body>\n<h1>", dashboard_style);
	SaeHtmlEscape(buf, title);
	appendStringInfoString(buf, "</h1>\n");
}

/* The run's one-line description under the title; ERROR if there is no such run. */
static void
append_run_meta(StringInfo buf, int64 run_id)
{
	if (query("SELECT run_name, hook_point, d_in, d_sae, architecture, status, "
			  "config->>'model_name' FROM sae.runs WHERE run_id = $1", 1, &run_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run %lld does not exist", (long long) run_id)));
	appendStringInfoString(buf, "<div class=\"meta\">run ");
	SaeHtmlEscape(buf, psprintf("%lld %s", (long long) run_id, cell(0, 1)));
	appendStringInfoString(buf, " · ");
	SaeHtmlEscape(buf, psprintf("%s%s%s · d_in %s · d_sae %s · %s · %s", cell(0, 7) ? cell(0, 7) : "",
								cell(0, 7) ? " " : "", cell(0, 2), cell(0, 3), cell(0, 4), cell(0, 5),
								cell(0, 6)));
	appendStringInfoString(buf, "</div>\n");
}

/* A bar chart of histogram counts over [0, top). */
static void
append_histogram(StringInfo buf, const double *counts, int n, double top)
{
	double		max = 0;
	double		bw = (double) (PLOT_W - 2 * PLOT_PAD) / n;

	for (int i = 0; i < n; i++)
		max = Max(max, counts[i]);
	appendStringInfo(buf, "<svg class=\"hist\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">",
					 PLOT_W, PLOT_H, PLOT_W, PLOT_H);
	for (int i = 0; i < n; i++)
	{
		double		h = max > 0 ? (PLOT_H - 2 * PLOT_PAD) * counts[i] / max : 0;

		appendStringInfo(buf, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
						 "<title>%.4g to %.4g: %.0f</title></rect>",
						 PLOT_PAD + i * bw, PLOT_H - PLOT_PAD - h, bw * 0.9, h,
						 top * i / n, top * (i + 1) / n, counts[i]);
	}
	appendStringInfo(buf, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
					 PLOT_PAD, PLOT_H - PLOT_PAD, PLOT_W - PLOT_PAD, PLOT_H - PLOT_PAD);
	appendStringInfo(buf, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>"
					 "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">activation</text>"
					 "<text x=\"%d\" y=\"%d\">%.0f tokens</text></svg>\n",
					 PLOT_PAD, PLOT_H - PLOT_PAD + 14, PLOT_W - PLOT_PAD, PLOT_H - PLOT_PAD + 14, top,
					 PLOT_W / 2, PLOT_H - 6, PLOT_PAD, PLOT_PAD - 8, max);
}

/* The top or bottom logits of a feature as a table, or a note when none are stored. */
static void
append_logits(StringInfo buf, int64 run_id, int64 feature, bool bottom)
{
	int64		args[2] = {run_id, feature};
	uint64		n = query(bottom ?
						  "SELECT token, logit FROM sae.feature_logits WHERE run_id = $1 AND feature_id = $2 AND bottom ORDER BY rank" :
						  "SELECT token, logit FROM sae.feature_logits WHERE run_id = $1 AND feature_id = $2 AND NOT bottom ORDER BY rank",
						  2, args);

	appendStringInfo(buf, "<div><h2>%s logits</h2>", bottom ? "Negative" : "Positive");
	if (n == 0)
	{
		appendStringInfoString(buf, "<p class=\"note\">none stored: run sae_top_logits(run_id)</p></div>");
		return;
	}
	appendStringInfoString(buf, "<table class=\"logits\"><tr><th>token</th><th>logit</th></tr>");
	for (uint64 i = 0; i < n; i++)
	{
		appendStringInfoString(buf, "<tr><td><span class=\"tok\">");
		SaeHtmlToken(buf, cell(i, 1), false);
		appendStringInfo(buf, "</span></td><td class=\"num %s\">%+.3f</td></tr>", bottom ? "neg" : "pos",
						 cell_num(i, 2));
	}
	appendStringInfoString(buf, "</table></div>\n");
}

/* Parse a text[] / real[] value into its elements. */
static void
array_elements(Datum arr, Oid type, Datum **elems, int *n)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	deconstruct_array(DatumGetArrayTypeP(arr), type, len, byval, align, elems, NULL, n);
}

/* The feature's top examples: each window's tokens shaded by the activation on them. */
static void
append_examples(StringInfo buf, int64 run_id, int64 feature, double max_act)
{
	int64		args[2] = {run_id, feature};
	uint64		n = query("SELECT activation, tokens, activations, position - window_start FROM sae.feature_examples "
						  "WHERE run_id = $1 AND feature_id = $2 ORDER BY rank", 2, args);

	appendStringInfoString(buf, "<h2>Top activations</h2>\n");
	if (n == 0)
		appendStringInfoString(buf, "<p class=\"note\">the feature never fired in the analysed tokens</p>\n");
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum	   *toks,
				   *acts;
		int			nt,
					na,
					top = atoi(cell(i, 4));

		array_elements(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull), TEXTOID, &toks, &nt);
		array_elements(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull), FLOAT4OID, &acts, &na);
		appendStringInfo(buf, "<div class=\"ex\"><span class=\"act\">%.3f</span>", cell_num(i, 1));
		for (int j = 0; j < nt && j < na; j++)
		{
			double		a = DatumGetFloat4(acts[j]);
			double		t = max_act > 0 ? Max(0, Min(1, a / max_act)) : 0;

			appendStringInfo(buf, "<span class=\"tok%s\" style=\"background-color:hsl(25,95%%,%.1f%%)\" title=\"%.3f\">",
							 j == top ? " top" : "", 100 - 48 * t, a);
			SaeHtmlToken(buf, TextDatumGetCString(toks[j]), false);
			appendStringInfoString(buf, "</span>");
		}
		appendStringInfoString(buf, "</div>\n");
	}
}

/*
 * sae_feature_dashboard(run_id, feature_id): one feature's page, from the
 * rows sae_analyze and sae_top_logits stored.
 */
Datum
sae_feature_dashboard(PG_FUNCTION_ARGS)
{
	int64		run_id = PG_GETARG_INT64(0);
	int64		args[2] = {run_id, PG_GETARG_INT32(1)};
	StringInfoData buf;
	double		counts[64];
	int			n_bins;
	double		max_act;
	text	   *page;

	initStringInfo(&buf);
	SPI_connect();
	begin_page(&buf, psprintf("Feature %lld", (long long) args[1]));
	append_run_meta(&buf, run_id);
	if (args[1] < 0 || args[1] >= atoi(cell(0, 4)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("run %lld has no feature %lld", (long long) run_id, (long long) args[1]),
				 errhint("Feature ids are 0 to %d.", atoi(cell(0, 4)) - 1)));
	if (query("SELECT n_tokens, firing_rate, log10_density, mean_activation, max_activation, histogram_max, "
			  "histogram FROM sae.feature_stats WHERE run_id = $1 AND feature_id = $2", 2, args) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("run %lld has not been analysed", (long long) run_id),
				 errhint("Run sae_analyze(%lld) first; sae_top_logits(%lld) adds the logits.",
						 (long long) run_id, (long long) run_id)));
	max_act = cell_num(0, 5);
	appendStringInfo(&buf, "<div class=\"meta\">fires on %.4f%% of %s tokens (log10 density %.2f) · "
					 "mean activation %.3f · max %.3f</div>\n",
					 100 * cell_num(0, 2), cell(0, 1), cell_num(0, 3), cell_num(0, 4), max_act);
	{
		bool		isnull;
		Datum	   *bins;

		array_elements(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull), INT8OID,
					   &bins, &n_bins);
		n_bins = Min(n_bins, lengthof(counts));
		for (int i = 0; i < n_bins; i++)
			counts[i] = (double) DatumGetInt64(bins[i]);
	}
	appendStringInfoString(&buf, "<div class=\"cols\"><div><h2>Activation density</h2>");
	if (isnan(cell_num(0, 6)))
		appendStringInfoString(&buf, "<p class=\"note\">the feature never fired in the analysed tokens</p>");
	else
		append_histogram(&buf, counts, n_bins, cell_num(0, 6));
	appendStringInfoString(&buf, "</div>\n");
	append_logits(&buf, run_id, args[1], false);
	append_logits(&buf, run_id, args[1], true);
	appendStringInfoString(&buf, "</div>\n");
	append_examples(&buf, run_id, args[1], max_act);
	appendStringInfoString(&buf, "</body></html>\n");
	SPI_finish();
	/* buf lives in the caller's memory, which SPI_finish leaves alone */
	page = cstring_to_text_with_len(buf.data, buf.len);
	PG_RETURN_TEXT_P(page);
}

/* Where v of [lo, hi] falls on a plot axis running from a to b (SVG user units). */
static double
scale(double v, double lo, double hi, double a, double b)
{
	return a + (b - a) * (v - lo) / (hi - lo);
}

/* Points of a chart with fewer than this many get a dot each (a single point shows at all). */
#define CHART_DOTS_MAX 60

/* A line chart of y against x (NaN points skipped); nothing if no point is finite. */
static void
append_line_chart(StringInfo buf, const char *title, const double *x, const double *y, int n)
{
	double		x0 = INFINITY,
				x1 = -INFINITY,
				y0 = INFINITY,
				y1 = -INFINITY;
	int			shown = 0;

	for (int i = 0; i < n; i++)
		if (isfinite(y[i]))
		{
			x0 = Min(x0, x[i]);
			x1 = Max(x1, x[i]);
			y0 = Min(y0, y[i]);
			y1 = Max(y1, y[i]);
			shown++;
		}
	if (shown == 0)
		return;
	if (x1 == x0)
		x1 = x0 + 1;
	if (y1 == y0)
		y1 = y0 + 1;
	appendStringInfoString(buf, "<div><h2>");
	SaeHtmlEscape(buf, title);
	appendStringInfo(buf, "</h2><svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">"
					 "<polyline class=\"line\" points=\"", PLOT_W, PLOT_H, PLOT_W, PLOT_H);
	for (int i = 0; i < n; i++)
		if (isfinite(y[i]))
			appendStringInfo(buf, "%.1f,%.1f ", scale(x[i], x0, x1, PLOT_PAD, PLOT_W - PLOT_PAD),
							 scale(y[i], y0, y1, PLOT_H - PLOT_PAD, PLOT_PAD));
	appendStringInfoString(buf, "\"/>");
	for (int i = 0; i < n && shown < CHART_DOTS_MAX; i++)
		if (isfinite(y[i]))
			appendStringInfo(buf, "<circle class=\"dot\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>",
							 scale(x[i], x0, x1, PLOT_PAD, PLOT_W - PLOT_PAD),
							 scale(y[i], y0, y1, PLOT_H - PLOT_PAD, PLOT_PAD));
	appendStringInfo(buf, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
					 "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
					 PLOT_PAD, PLOT_H - PLOT_PAD, PLOT_W - PLOT_PAD, PLOT_H - PLOT_PAD,
					 PLOT_PAD, PLOT_PAD, PLOT_PAD, PLOT_H - PLOT_PAD);
	appendStringInfo(buf, "<text x=\"%d\" y=\"%d\">%.4g</text><text x=\"%d\" y=\"%d\">%.4g</text>"
					 "<text x=\"%d\" y=\"%d\">%.4g</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>"
					 "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">training tokens</text></svg></div>\n",
					 2, PLOT_PAD + 4, y1, 2, PLOT_H - PLOT_PAD, y0,
					 PLOT_PAD, PLOT_H - PLOT_PAD + 14, x0, PLOT_W - PLOT_PAD, PLOT_H - PLOT_PAD + 14, x1,
					 PLOT_W / 2, PLOT_H - 4);
}

/* A table of a jsonb object's keys and values (the result of the query in SPI_tuptable). */
static void
append_key_values(StringInfo buf, const char *title, uint64 n)
{
	appendStringInfoString(buf, "<div><h2>");
	SaeHtmlEscape(buf, title);
	appendStringInfoString(buf, "</h2><table>");
	for (uint64 i = 0; i < n; i++)
	{
		appendStringInfoString(buf, "<tr><td>");
		SaeHtmlEscape(buf, cell(i, 1));
		appendStringInfoString(buf, "</td><td class=\"num\">");
		SaeHtmlEscape(buf, cell(i, 2) ? cell(i, 2) : "null");
		appendStringInfoString(buf, "</td></tr>");
	}
	appendStringInfoString(buf, "</table></div>\n");
}

/* The curves of sae.train_log that the report plots, with their titles. */
static const char *const curve_columns[][2] = {
	{"overall_loss", "Loss"},
	{"mse_loss", "MSE loss"},
	{"l0", "L0 (features active per token)"},
	{"explained_variance", "Explained variance"},
	{"dead_features", "Dead features"},
	{"ce_loss_score", "CE loss score"},
};

/*
 * sae_run_report(run_id): the run's training curves against tokens, its
 * config and its final metrics, as one page.
 */
Datum
sae_run_report(PG_FUNCTION_ARGS)
{
	int64		run_id = PG_GETARG_INT64(0);
	StringInfoData buf;
	text	   *page;
	uint64		n;

	initStringInfo(&buf);
	SPI_connect();
	begin_page(&buf, psprintf("Run %lld", (long long) run_id));
	append_run_meta(&buf, run_id);
	appendStringInfoString(&buf, "<div class=\"cols\">");
	n = query("SELECT n_tokens, overall_loss, mse_loss, l0, explained_variance, dead_features, ce_loss_score "
			  "FROM sae.train_log WHERE run_id = $1 ORDER BY step", 1, &run_id);
	if (n == 0)
		appendStringInfoString(&buf, "<p class=\"note\">no training log (an imported SAE?)</p>");
	else
	{
		double	   *x = palloc(sizeof(double) * n),
				   *y = palloc(sizeof(double) * n);

		for (uint64 i = 0; i < n; i++)
			x[i] = cell_num(i, 1);
		for (int c = 0; c < lengthof(curve_columns); c++)
		{
			for (uint64 i = 0; i < n; i++)
				y[i] = cell_num(i, c + 2);
			append_line_chart(&buf, curve_columns[c][1], x, y, (int) n);
		}
	}
	appendStringInfoString(&buf, "</div><div class=\"cols\">");
	n = query("SELECT key, value::text FROM sae.runs, jsonb_each(final_metrics) WHERE run_id = $1 ORDER BY key",
			  1, &run_id);
	append_key_values(&buf, "Final metrics", n);
	n = query("SELECT key, value::text FROM sae.runs, jsonb_each(config) WHERE run_id = $1 ORDER BY key",
			  1, &run_id);
	append_key_values(&buf, "Config", n);
	appendStringInfoString(&buf, "</div></body></html>\n");
	SPI_finish();
	/* buf lives in the caller's memory, which SPI_finish leaves alone */
	page = cstring_to_text_with_len(buf.data, buf.len);
	PG_RETURN_TEXT_P(page);
}
