/*
 * config_jsonb.c — a jsonb training config into a SaeConfig.
 *
 * The engine's key table does the checking (config.c); this file only walks
 * the top-level object and hands each key its JSON kind and value.
 */
#include "sae_pg.h"

#include "utils/builtins.h"
#include "utils/numeric.h"

#include <math.h>

/* Pass one key/value pair to the engine, raising its error if any. */
static void
set_key(SaeConfig *cfg, const char *key, JsonbValue *v)
{
	SaeError	err;
	int			rc;

	switch (v->type)
	{
		case jbvNull:
			rc = sae_config_set(cfg, key, 'z', 0, false, NULL, &err);
			break;
		case jbvBool:
			rc = sae_config_set(cfg, key, 'b', 0, v->val.boolean, NULL, &err);
			break;
		case jbvNumeric:
			rc = sae_config_set(cfg, key, 'n',
								DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
																   NumericGetDatum(v->val.numeric))),
								false, NULL, &err);
			break;
		case jbvString:
			rc = sae_config_set(cfg, key, 's', 0, false,
								pnstrdup(v->val.string.val, v->val.string.len), &err);
			break;
		default:
			/* arrays and objects: let the engine name the expected type */
			rc = sae_config_set(cfg, key, 'x', 0, false, NULL, &err);
			break;
	}
	if (rc != SAE_OK)
		SaeReportError(&err);
}

/* hook_point_layer as a list: read its integers up to the end of the array. */
static void
set_layers(SaeConfig *cfg, JsonbIterator **it)
{
	int64		layers[SAE_MAX_HOOK_LAYERS + 1];
	int			n = 0;
	JsonbValue	v;
	JsonbIteratorToken tok;
	SaeError	err;

	while ((tok = JsonbIteratorNext(it, &v, true)) != WJB_END_ARRAY)
	{
		double		d;

		if (tok != WJB_ELEM || v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("config key \"hook_point_layer\" must be an integer or a list of integers")));
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(v.val.numeric)));
		if (d != floor(d))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("config key \"hook_point_layer\": %g is not an integer", d)));
		if (n <= SAE_MAX_HOOK_LAYERS)
			layers[n] = (int64) d;
		n++;
	}
	if (sae_config_set_layers(cfg, layers, n, &err) != SAE_OK)
		SaeReportError(&err);
}

void
SaeParseConfig(Jsonb *json, SaeConfig *cfg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	SaeError	err;
	int			depth = 0;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sae_train config must be a JSON object"),
				 errhint("Pass keys as in SAELens's LanguageModelSAERunnerConfig, e.g. '{\"d_in\": 512, \"activations_table\": \"acts\", \"activations_column\": \"v\"}'.")));
	sae_config_defaults(cfg);
	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY && depth == 1 && strcmp(key, "hook_point_layer") == 0)
		{
			set_layers(cfg, &it);
			continue;
		}
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
		{
			/* a nested container is the value of the current key */
			if (depth == 1)
			{
				JsonbValue	container = {.type = tok == WJB_BEGIN_OBJECT ? jbvObject : jbvArray};

				set_key(cfg, key, &container);
			}
			depth++;
			continue;
		}
		if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
		{
			depth--;
			continue;
		}
		if (depth != 1)
			continue;
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
			set_key(cfg, key, &v);
	}
	if (sae_config_finish(cfg, &err) != SAE_OK)
		SaeReportError(&err);
}
