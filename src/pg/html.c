/*
 * html.c — the page of sae_token_log_probs_html: the input's tokens, each
 * shaded by how likely the model found it, with the five likeliest tokens
 * at that point on hover (what circuitsvis's token_log_probs showed in the
 * seed tutorial).
 *
 * The page is self-contained: inline CSS, no scripts, no fonts or images
 * from the network, so it opens from a file or an e-mail the same way.
 */
#include "sae_pg.h"

#include <math.h>

#include "utils/builtins.h"

/* Text escaped for HTML element content and attribute values. */
void
SaeHtmlEscape(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&#39;");
				break;
			default:
				appendStringInfoChar(buf, *s);
		}
	}
}

/*
 * A token as shown: each newline as a visible mark, followed by a line
 * break in the text (breaks) or not (the hover box).
 */
void
SaeHtmlToken(StringInfo buf, const char *s, bool breaks)
{
	for (const char *nl; (nl = strchr(s, '\n')) != NULL; s = nl + 1)
	{
		SaeHtmlEscape(buf, pnstrdup(s, nl - s));
		appendStringInfoString(buf, breaks ? "<span class=\"nl\">\xE2\x86\xB5</span><br>" : "\xE2\x86\xB5");
	}
	SaeHtmlEscape(buf, s);
}

/* Background colour for a token: white when certain, deep red when unlikely. */
static void
append_shade(StringInfo buf, double log_prob)
{
	/* by log-probability, clamped at e^-10, so that rare tokens stand out */
	double		t = log_prob < -10 ? 1 : -log_prob / 10;

	appendStringInfo(buf, "background-color: hsl(0, 85%%, %.1f%%)", 100 - 45 * t);
}

static const char *const page_style =
"body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:24px;color:#222;background:#fff}"
"h1{font-size:18px;margin:0 0 4px}"
".meta{color:#666;font-size:13px;margin-bottom:16px}"
".text{font-family:'DejaVu Sans Mono',monospace;font-size:15px;line-height:2.1;white-space:pre-wrap}"
".tok{position:relative;border:1px solid #ddd;border-radius:3px;padding:1px 0;margin:0 1px}"
".tok .tip{display:none;position:absolute;left:0;top:1.9em;z-index:2;background:#fff;border:1px solid #999;"
"border-radius:4px;padding:6px 8px;font-size:12px;line-height:1.4;white-space:pre;box-shadow:0 2px 6px rgba(0,0,0,.2)}"
".tok:hover .tip{display:block}"
".tip table{border-collapse:collapse}.tip td{padding:0 6px}"
".nl{color:#999}"
".legend{margin-top:18px;font-size:12px;color:#666}"
".legend span{display:inline-block;width:60px;text-align:center;border:1px solid #ddd;color:#000}";

/* The hover box of one token: its probability and rank, and the top predictions. */
static void
append_tip(StringInfo buf, const SaeLogProbRow *r)
{
	appendStringInfo(buf, "<span class=\"tip\">log p = %.3f (p = %.2f%%), rank %d<table>",
					 r->log_prob, 100 * exp(r->log_prob), r->rank);
	for (int i = 0; i < r->n_top; i++)
	{
		appendStringInfo(buf, "<tr><td>%d</td><td>|", i + 1);
		SaeHtmlToken(buf, text_to_cstring(r->top_tokens[i]), false);
		appendStringInfo(buf, "|</td><td>%.3f</td></tr>", r->top_log_probs[i]);
	}
	appendStringInfoString(buf, "</table></span>");
}

text *
SaeLogProbsHtml(const char *model, const SaeLogProbRow *rows, int n)
{
	StringInfoData buf;
	double		sum = 0;

	for (int p = 1; p < n; p++)
		sum += rows[p].log_prob;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Token log probs: ");
	SaeHtmlEscape(&buf, model);
	appendStringInfo(&buf, "</title><style>%s</style></head><body>\n<h1>Token log probs: ", page_style);
	SaeHtmlEscape(&buf, model);
	appendStringInfo(&buf, "</h1>\n<div class=\"meta\">%d tokens; mean log-probability of the predicted tokens %.3f. "
					 "Hover over a token for the model's top predictions there.</div>\n<div class=\"text\">",
					 n, n > 1 ? sum / (n - 1) : 0.0);
	for (int p = 0; p < n; p++)
	{
		const SaeLogProbRow *r = &rows[p];

		appendStringInfo(&buf, "<span class=\"tok\" data-pos=\"%d\" data-token-id=\"%d\"", p, r->token_id);
		if (p > 0)
		{
			appendStringInfo(&buf, " data-log-prob=\"%.6f\" style=\"", r->log_prob);
			append_shade(&buf, r->log_prob);
			appendStringInfoChar(&buf, '"');
		}
		appendStringInfoChar(&buf, '>');
		SaeHtmlToken(&buf, text_to_cstring(r->token), true);
		if (p > 0)
			append_tip(&buf, r);
		appendStringInfoString(&buf, "</span>");
	}
	appendStringInfoString(&buf, "</div>\n<div class=\"legend\">p: ");
	for (int i = 0; i <= 4; i++)
	{
		double		lp = -2.5 * i;

		appendStringInfoString(&buf, "<span style=\"");
		append_shade(&buf, lp);
		appendStringInfo(&buf, "\">%.3g</span>", exp(lp));
	}
	appendStringInfoString(&buf, "</div>\n</body></html>\n");
	return cstring_to_text_with_len(buf.data, buf.len);
}
