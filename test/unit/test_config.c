/*
 * test_config.c — the config table: defaults, setting keys of every kind,
 * the errors users see for bad keys and values, the contradictions that
 * config_finish rejects, the derived run name, and the normalized JSON.
 */
#include "unit.h"
#include "helpers.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Set one key, expecting failure with `code`; returns the error for more checks. */
static SaeError
expect_set_error(SaeConfig *cfg, const char *key, char kind, double num, bool b,
				 const char *s, SaeErrCode code)
{
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	rc = sae_config_set(cfg, key, kind, num, b, s, &err);
	CHECK_MSG(rc == (int) code && err.code == code,
			  "sae_config_set(\"%s\", '%c') returned %d (err.code %d), want %d; message \"%s\"",
			  key, kind, rc, err.code, code, err.message);
	return err;
}

/* Run config_finish expecting failure with `code`. */
static SaeError
expect_finish_error(SaeConfig *cfg, SaeErrCode code)
{
	SaeError	err;
	int			rc;

	memset(&err, 0, sizeof(err));
	rc = sae_config_finish(cfg, &err);
	CHECK_MSG(rc == (int) code && err.code == code,
			  "sae_config_finish returned %d (err.code %d), want %d; message \"%s\"",
			  rc, err.code, code, err.message);
	return err;
}

/* The SAELens v1.0 tutorial config of reference/saelens.md §1.2. */
static void
tutorial_config(SaeConfig *cfg)
{
	cfg_base(cfg);
	cfg_num(cfg, "d_in", 1024);
	cfg_num(cfg, "expansion_factor", 16);
	cfg_num(cfg, "l1_coefficient", 0.001);
	cfg_num(cfg, "lr", 0.0008);
	cfg_num(cfg, "train_batch_size", 4096);
	cfg_num(cfg, "context_size", 512);
	cfg_num(cfg, "n_batches_in_buffer", 64);
	cfg_num(cfg, "total_training_tokens", 50000000);
	cfg_num(cfg, "store_batch_size", 16);
	cfg_num(cfg, "feature_sampling_window", 1000);
	cfg_num(cfg, "dead_feature_window", 1000);
	cfg_num(cfg, "wandb_log_frequency", 10);
}

/* The defaults are SAELens v1.0's; a changed default silently changes every run. */
UNIT_TEST(defaults)
{
	SaeConfig	c;

	sae_config_defaults(&c);
	CHECK_INT_EQ(c.d_in, 512);
	CHECK_INT_EQ(c.expansion_factor, 4);
	CHECK_INT_EQ(c.context_size, 128);
	CHECK_INT_EQ(c.train_batch_size, 4096);
	CHECK_INT_EQ(c.n_batches_in_buffer, 20);
	CHECK_INT_EQ(c.store_batch_size, 32);
	CHECK_INT_EQ(c.total_training_tokens, 2000000);
	CHECK_INT_EQ(c.lr_warm_up_steps, 500);
	CHECK_INT_EQ(c.lr_decay_steps, 0);
	CHECK_INT_EQ(c.n_restart_cycles, 1);
	CHECK_INT_EQ(c.feature_sampling_window, 2000);
	CHECK_INT_EQ(c.dead_feature_window, 1000);
	CHECK_INT_EQ(c.wandb_log_frequency, 10);
	CHECK_INT_EQ(c.n_checkpoints, 0);
	CHECK_INT_EQ(c.seed, 42);
	CHECK_INT_EQ(c.b_dec_init_method, SAE_BDEC_GEOMETRIC_MEDIAN);
	CHECK_INT_EQ(c.sae_type, SAE_TYPE_UNIT_NORM);
	CHECK_INT_EQ(c.lr_scheduler_name, SAE_LR_CONSTANT);
	CHECK(c.apply_b_dec_to_input);
	CHECK(!c.decoder_orthogonal_init);
	CHECK(!c.mse_dense_batch);
	CHECK(!c.l1_l2_squared);
	CHECK(!c.use_ghost_grads);
	CHECK_NEAR(c.lr, 3e-4, 0);
	CHECK_NEAR(c.l1_coefficient, 1e-3, 0);
	CHECK_NEAR(c.lp_norm, 1, 0);
	CHECK_NEAR(c.adam_beta1, 0, 0);
	CHECK_NEAR(c.adam_beta2, 0.999, 0);
	CHECK_NEAR(c.noise_scale, 0, 0);
	CHECK_NEAR(c.dead_feature_threshold, 1e-8, 0);
	CHECK_MSG(isnan(c.lr_end), "lr_end should be unset (NaN) before finish, got %g", c.lr_end);
	CHECK_STR_EQ(c.activations_table, "");
	CHECK_STR_EQ(c.wandb_project, "mats_sae_training_language_model");
	CHECK_STR_EQ(c.checkpoint_path, "checkpoints");
}

/* Each JSON kind lands in the right field: integer, real, boolean, string, enum, null. */
UNIT_TEST(set_each_kind)
{
	SaeConfig	c;

	sae_config_defaults(&c);
	CHECK(cfg_num(&c, "d_in", 768));
	CHECK_INT_EQ(c.d_in, 768);
	CHECK(cfg_num(&c, "lr", 1.5e-4));
	CHECK_NEAR(c.lr, 1.5e-4, 0);
	CHECK(cfg_bool(&c, "use_ghost_grads", true));
	CHECK(c.use_ghost_grads);
	CHECK(cfg_bool(&c, "apply_b_dec_to_input", false));
	CHECK(!c.apply_b_dec_to_input);
	CHECK(cfg_str(&c, "activations_table", "public.acts"));
	CHECK_STR_EQ(c.activations_table, "public.acts");
	CHECK(cfg_str(&c, "lr_scheduler_name", "cosineannealingwarmrestarts"));
	CHECK_INT_EQ(c.lr_scheduler_name, SAE_LR_COSINE_RESTARTS);
	CHECK(cfg_str(&c, "b_dec_init_method", "zeros"));
	CHECK_INT_EQ(c.b_dec_init_method, SAE_BDEC_ZEROS);
	CHECK(cfg_str(&c, "sae_type", "tanh_sae"));
	CHECK_INT_EQ(c.sae_type, SAE_TYPE_TANH);
	CHECK(cfg_str(&c, "mse_loss_normalization", "dense_batch"));
	CHECK(c.mse_dense_batch);
	CHECK(cfg_null(&c, "mse_loss_normalization"));
	CHECK(!c.mse_dense_batch);
	CHECK(cfg_str(&c, "l1_loss_normalization", "l2_squared"));
	CHECK(c.l1_l2_squared);
	CHECK(cfg_num(&c, "seed", -7));
	CHECK_INT_EQ(c.seed, -7);
	CHECK(cfg_null(&c, "lr_end"));
	CHECK(isnan(c.lr_end));
	CHECK(cfg_num(&c, "lr_end", 2e-5));
	CHECK_NEAR(c.lr_end, 2e-5, 0);
	CHECK(cfg_str(&c, "device", "cuda"));
	CHECK_STR_EQ(c.device, "cuda");
}

/* A typo gets INVALID_PARAMETER and a "Perhaps you meant" hint with the real key. */
UNIT_TEST(unknown_key_hint)
{
	SaeConfig	c;
	SaeError	e;

	sae_config_defaults(&c);
	e = expect_set_error(&c, "l1_coeficient", 'n', 1e-3, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "l1_coeficient");
	CHECK_CONTAINS(e.hint, "Perhaps you meant \"l1_coefficient\"");
	e = expect_set_error(&c, "lr_warmup_steps", 'n', 10, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.hint, "\"lr_warm_up_steps\"");
	CHECK_STR_EQ(sae_config_nearest_key("exapnsion_factor") ? sae_config_nearest_key("exapnsion_factor") : "(null)",
				 "expansion_factor");
	/* nothing near: no misleading suggestion */
	CHECK_MSG(sae_config_nearest_key("qqqqqqqqqqqqqqqqqqqqqqqqq") == NULL,
			  "nearest key of garbage is \"%s\"", sae_config_nearest_key("qqqqqqqqqqqqqqqqqqqqqqqqq"));
	e = expect_set_error(&c, "qqqqqqqqqqqqqqqqqqqqqqqqq", 'n', 1, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_MSG(strstr(e.hint, "Perhaps") == NULL, "hint suggests a key for garbage: %s", e.hint);
}

/* Wrong JSON types name the key and the expected type; the field is unchanged. */
UNIT_TEST(wrong_type)
{
	SaeConfig	c;
	SaeError	e;

	sae_config_defaults(&c);
	e = expect_set_error(&c, "lr", 's', 0, false, "0.001", SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "\"lr\"");
	CHECK_CONTAINS(e.message, "a number");
	CHECK_NEAR(c.lr, 3e-4, 0);
	e = expect_set_error(&c, "sae_type", 'n', 1, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "\"sae_type\"");
	CHECK_CONTAINS(e.hint, "\"tanh_sae\"");
	CHECK_INT_EQ(c.sae_type, SAE_TYPE_UNIT_NORM);
	e = expect_set_error(&c, "use_ghost_grads", 'n', 1, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "a boolean");
	e = expect_set_error(&c, "d_in", 'b', 0, true, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "an integer");
	e = expect_set_error(&c, "lr", 'z', 0, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "\"lr\"");
	e = expect_set_error(&c, "sae_type", 's', 0, false, "tanh", SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.hint, "\"unit_norm_sae\"");
}

/* Values outside the key's range, and fractional integers, are rejected untouched. */
UNIT_TEST(out_of_range)
{
	SaeConfig	c;
	SaeError	e;

	sae_config_defaults(&c);
	e = expect_set_error(&c, "lr", 'n', 0, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "\"lr\"");
	CHECK_NEAR(c.lr, 3e-4, 0);
	e = expect_set_error(&c, "d_in", 'n', -5, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "\"d_in\"");
	CHECK_INT_EQ(c.d_in, 512);
	e = expect_set_error(&c, "d_in", 'n', 3.5, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "integer");
	CHECK_INT_EQ(c.d_in, 512);
	e = expect_set_error(&c, "adam_beta2", 'n', 1.0, false, NULL, SAE_ERR_INVALID_PARAMETER);
	e = expect_set_error(&c, "l1_coefficient", 'n', NAN, false, NULL, SAE_ERR_INVALID_PARAMETER);
	e = expect_set_error(&c, "train_batch_size", 'n', 0, false, NULL, SAE_ERR_INVALID_PARAMETER);
	CHECK_INT_EQ(c.train_batch_size, 4096);
	/* the bounds themselves are allowed */
	CHECK(cfg_num(&c, "l1_coefficient", 0));
	CHECK(cfg_num(&c, "d_in", 1));
}

/* d_sae and expansion_factor must agree when both are given; either alone works. */
UNIT_TEST(contradiction_widths)
{
	SaeConfig	c;
	SaeError	e;

	cfg_base(&c);
	cfg_num(&c, "d_in", 512);
	cfg_num(&c, "expansion_factor", 4);
	cfg_num(&c, "d_sae", 1000);
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "d_sae");
	CHECK_CONTAINS(e.message, "expansion_factor");

	cfg_base(&c);
	cfg_num(&c, "d_in", 512);
	cfg_num(&c, "expansion_factor", 4);
	cfg_num(&c, "d_sae", 2048);
	CHECK(cfg_finish(&c));
	CHECK_INT_EQ(c.d_sae, 2048);

	cfg_base(&c);
	cfg_num(&c, "d_in", 100);
	cfg_num(&c, "d_sae", 300);
	CHECK(cfg_finish(&c));
	CHECK_INT_EQ(c.d_sae, 300);
	CHECK_INT_EQ(c.expansion_factor, 3);

	cfg_base(&c);
	cfg_num(&c, "d_in", 100);
	cfg_num(&c, "expansion_factor", 8);
	CHECK(cfg_finish(&c));
	CHECK_INT_EQ(c.d_sae, 800);
}

/* tanh_sae needs noise_scale > 0 and unit_norm_sae must not have noise (the seed fork's asserts). */
UNIT_TEST(contradiction_sae_type_noise)
{
	SaeConfig	c;
	SaeError	e;

	cfg_base(&c);
	cfg_str(&c, "sae_type", "tanh_sae");
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "noise_scale");

	cfg_base(&c);
	cfg_num(&c, "noise_scale", 0.5);
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "noise_scale");

	cfg_base(&c);
	cfg_str(&c, "sae_type", "tanh_sae");
	cfg_num(&c, "noise_scale", 1);
	CHECK(cfg_finish(&c));
}

/* A cosine schedule needs main-phase steps: warm-up + decay >= total is rejected. */
UNIT_TEST(contradiction_schedule)
{
	SaeConfig	c;
	SaeError	e;

	cfg_base(&c);
	cfg_num(&c, "train_batch_size", 100);
	cfg_num(&c, "total_training_tokens", 100 * 100);
	cfg_str(&c, "lr_scheduler_name", "cosineannealing");
	cfg_num(&c, "lr_warm_up_steps", 50);
	cfg_num(&c, "lr_decay_steps", 50);
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "lr_warm_up_steps");
	CHECK_CONTAINS(e.detail, "100 steps");

	cfg_base(&c);
	cfg_num(&c, "train_batch_size", 100);
	cfg_num(&c, "total_training_tokens", 100 * 100);
	cfg_str(&c, "lr_scheduler_name", "cosineannealing");
	cfg_num(&c, "lr_warm_up_steps", 50);
	cfg_num(&c, "lr_decay_steps", 49);
	CHECK(cfg_finish(&c));

	/* fewer tokens than one batch: no steps at all */
	cfg_base(&c);
	cfg_num(&c, "train_batch_size", 100);
	cfg_num(&c, "total_training_tokens", 99);
	expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
}

/* Only float32 exists: "torch.float32" is accepted, other torch dtypes are NOT_SUPPORTED. */
UNIT_TEST(dtype)
{
	SaeConfig	c;
	SaeError	e;

	sae_config_defaults(&c);
	CHECK(cfg_str(&c, "dtype", "torch.float32"));
	CHECK_STR_EQ(c.dtype, "float32");
	CHECK(cfg_str(&c, "dtype", "float32"));
	e = expect_set_error(&c, "dtype", 's', 0, false, "float64", SAE_ERR_NOT_SUPPORTED);
	CHECK_CONTAINS(e.message, "float64");
	expect_set_error(&c, "dtype", 's', 0, false, "torch.bfloat16", SAE_ERR_NOT_SUPPORTED);
	expect_set_error(&c, "dtype", 's', 0, false, "int8", SAE_ERR_INVALID_PARAMETER);
	CHECK_STR_EQ(c.dtype, "float32");
}

/* Training from a language model is a later feature: model_name is NOT_SUPPORTED at finish. */
UNIT_TEST(model_source_keys_are_checked)
{
	SaeConfig	c;
	SaeError	e;
	int64_t		layers[3] = {0, 2, 5};
	char		hook[128];

	cfg_base(&c);				/* has activations_table */
	CHECK(cfg_str(&c, "model_name", "gelu-2l"));
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "exclude each other");

	cfg_base(&c);
	CHECK(cfg_str(&c, "dataset_path", "stories"));
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "needs \"model_name\"");

	sae_config_defaults(&c);
	CHECK(cfg_str(&c, "model_name", "gpt2"));
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "dataset_path");
	CHECK(cfg_str(&c, "dataset_path", "stories"));
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "hook_point");

	/* a list of layers needs {layer} in the hook point */
	CHECK(cfg_str(&c, "hook_point", "blocks.0.hook_mlp_out"));
	CHECK(sae_config_set_layers(&c, layers, 3, &e) == SAE_OK);
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "{layer}");
	CHECK(cfg_str(&c, "hook_point", "blocks.{layer}.hook_resid_pre"));
	CHECK(cfg_finish(&c));
	sae_config_format_hook(&c, 5, hook, sizeof(hook));
	CHECK(strcmp(hook, "blocks.5.hook_resid_pre") == 0);
	layers[1] = 0;
	CHECK(sae_config_set_layers(&c, layers, 3, &e) == SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "twice");

	/* one layer: {layer} is filled in by finish */
	sae_config_defaults(&c);
	CHECK(cfg_str(&c, "model_name", "gpt2"));
	CHECK(cfg_str(&c, "dataset_path", "stories"));
	CHECK(cfg_str(&c, "hook_point", "blocks.{layer}.hook_mlp_out"));
	CHECK(cfg_num(&c, "hook_point_layer", 3));
	CHECK(cfg_finish(&c));
	CHECK(strcmp(c.hook_point, "blocks.3.hook_mlp_out") == 0);
	CHECK(c.hook_point_head_index == -1);
	CHECK(cfg_num(&c, "hook_point_head_index", 0));
	CHECK(c.hook_point_head_index == 0);
}

/* Without activations_table (or column) there is nothing to train on. */
UNIT_TEST(missing_activations_table)
{
	SaeConfig	c;
	SaeError	e;

	sae_config_defaults(&c);
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "activations_table");

	sae_config_defaults(&c);
	cfg_str(&c, "activations_table", "acts");
	e = expect_finish_error(&c, SAE_ERR_INVALID_PARAMETER);
	CHECK_CONTAINS(e.message, "activations_column");

	/* the default hook_point names the source */
	cfg_base(&c);
	CHECK(cfg_finish(&c));
	CHECK_STR_EQ(c.hook_point, "acts.v");
}

/* The run name users search by is SAELens's, character for character. */
UNIT_TEST(run_name_tutorial)
{
	SaeConfig	c;

	tutorial_config(&c);
	REQUIRE(cfg_finish(&c));
	CHECK_STR_EQ(c.run_name, "16384-L1-0.001-LR-0.0008-Tokens-5.000e+07");
	CHECK_INT_EQ(c.d_sae, 16384);
	CHECK_INT_EQ(sae_config_total_steps(&c), 12207);
	CHECK_INT_EQ(sae_config_half_buffer_rows(&c), 262144);
	CHECK_NEAR(c.lr_end, 0.0008 / 10, 0);

	cfg_base(&c);
	cfg_num(&c, "d_in", 1024);
	cfg_num(&c, "d_sae", 12288);
	cfg_num(&c, "l1_coefficient", 1e-05);
	cfg_num(&c, "lr", 0.0001);
	cfg_num(&c, "total_training_tokens", 50000000);
	REQUIRE(cfg_finish(&c));
	CHECK_STR_EQ(c.run_name, "12288-L1-1e-05-LR-0.0001-Tokens-5.000e+07");

	/* a given run_name is kept */
	tutorial_config(&c);
	cfg_str(&c, "run_name", "mine");
	REQUIRE(cfg_finish(&c));
	CHECK_STR_EQ(c.run_name, "mine");
}

/* sae_format_pyfloat(v) is Python's repr(v) (shortest round-trip, exponent rules). */
UNIT_TEST(pyfloat_repr)
{
	static const struct
	{
		double		v;
		const char *repr;
	}			cases[] = {
		{0.524288, "0.524288"}, {2097.152, "2097.152"}, {1e-05, "1e-05"},
		{1.0, "1.0"}, {100.0, "100.0"}, {1e16, "1e+16"}, {0.0001, "0.0001"},
		{0.001024, "0.001024"}, {0.0008, "0.0008"}, {0.1 + 0.2, "0.30000000000000004"},
		{0.00030000000000000003, "0.00030000000000000003"}, {1.5e-05, "1.5e-05"},
		{1e15, "1000000000000000.0"}, {123456789.0, "123456789.0"},
		{1.2345678901234568e+17, "1.2345678901234568e+17"}, {-2.5, "-2.5"},
		{0.0, "0.0"}, {3e-4, "0.0003"}, {5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"}, {4.1e6, "4100000.0"},
	};
	char		buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		sae_format_pyfloat(cases[i].v, buf, sizeof(buf));
		CHECK_MSG(strcmp(buf, cases[i].repr) == 0, "repr(%.17g): got \"%s\", want \"%s\"",
				  cases[i].v, buf, cases[i].repr);
	}
}

/* --- a minimal JSON validator (objects, arrays, strings, numbers, literals) --- */

static const char *json_value_end(const char *p);

/* Skip JSON whitespace. */
static const char *
json_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

/* End of a string literal starting at p (p at the quote), or NULL. */
static const char *
json_string_end(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"')
	{
		if ((unsigned char) *p < 0x20)
			return NULL;
		if (*p == '\\')
		{
			p++;
			if (*p == 'u')
			{
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char) p[i]))
						return NULL;
				p += 4;
			}
			else if (!strchr("\"\\/bfnrt", *p) || *p == '\0')
				return NULL;
		}
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

/* End of a JSON number at p (strict grammar), or NULL. */
static const char *
json_number_end(const char *p)
{
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (isdigit((unsigned char) *p))
			p++;
	else
		return NULL;
	if (*p == '.')
	{
		if (!isdigit((unsigned char) *++p))
			return NULL;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return NULL;
		while (isdigit((unsigned char) *p))
			p++;
	}
	return p;
}

/* End of an object or array (p at the bracket), or NULL. */
static const char *
json_container_end(const char *p)
{
	char		close = *p == '{' ? '}' : ']';
	bool		object = *p == '{';

	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;)
	{
		if (object)
		{
			if ((p = json_string_end(p)) == NULL)
				return NULL;
			p = json_ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if ((p = json_value_end(json_ws(p))) == NULL)
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
		p = json_ws(p);
	}
}

/* End of any JSON value at p, or NULL. */
static const char *
json_value_end(const char *p)
{
	if (*p == '{' || *p == '[')
		return json_container_end(p);
	if (*p == '"')
		return json_string_end(p);
	if (strncmp(p, "true", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	if (strncmp(p, "null", 4) == 0)
		return p + 4;
	return json_number_end(p);
}

/* s is exactly one JSON value (with optional surrounding whitespace). */
static bool
json_valid(const char *s)
{
	const char *end = json_value_end(json_ws(s));

	return end != NULL && *json_ws(end) == '\0';
}

/* The validator itself must reject broken JSON, or the JSON test proves nothing. */
UNIT_TEST(json_validator_self_check)
{
	CHECK(json_valid("{\"a\": 1, \"b\": [true, null, \"x\\n\"], \"c\": -1.5e-3}"));
	CHECK(!json_valid("{\"a\": 1,}"));
	CHECK(!json_valid("{\"a\": nan}"));
	CHECK(!json_valid("{\"a\": \"x\"\"}"));
	CHECK(!json_valid("{\"a\": 01}"));
	CHECK(!json_valid("{\"a\": 1"));
}

/* The normalized config is valid JSON with every default filled in (d_sae, lr_end). */
UNIT_TEST(to_json)
{
	SaeConfig	c;
	char	   *buf;
	size_t		need,
				again;
	char		small[16];
	const char *p;

	tutorial_config(&c);
	cfg_str(&c, "run_name", "quote\" and \\ backslash\n");
	REQUIRE(cfg_finish(&c));
	need = sae_config_to_json(&c, small, sizeof(small));
	buf = malloc(need + 1);
	REQUIRE(buf != NULL);
	again = sae_config_to_json(&c, buf, need + 1);
	CHECK_INT_EQ(again, need);
	CHECK_INT_EQ(strlen(buf), need);
	CHECK_MSG(json_valid(buf), "not valid JSON: %s", buf);
	CHECK_CONTAINS(buf, "\"d_sae\": 16384");
	CHECK_CONTAINS(buf, "\"expansion_factor\": 16");
	CHECK_CONTAINS(buf, "\"lr_scheduler_name\": \"constant\"");
	CHECK_CONTAINS(buf, "\"mse_loss_normalization\": null");
	CHECK_CONTAINS(buf, "\"use_ghost_grads\": false");
	p = strstr(buf, "\"lr_end\": ");
	CHECK_MSG(p != NULL && strtod(p + strlen("\"lr_end\": "), NULL) == 0.0008 / 10,
			  "lr_end not filled in: %s", p ? p : "(missing)");
	/* a truncated write reported the full size and terminated the buffer */
	CHECK_INT_EQ(strlen(small), sizeof(small) - 1);
	CHECK(strncmp(small, buf, sizeof(small) - 1) == 0);
	free(buf);
}

/* Real numbers survive the JSON round trip exactly (%.17g). */
UNIT_TEST(to_json_numbers_round_trip)
{
	SaeConfig	c;
	char		buf[8192];
	const char *p;

	cfg_base(&c);
	cfg_num(&c, "lr", 0.1 + 0.2);
	cfg_num(&c, "l1_coefficient", 1.0 / 3.0);
	REQUIRE(cfg_finish(&c));
	REQUIRE(sae_config_to_json(&c, buf, sizeof(buf)) < sizeof(buf));
	p = strstr(buf, "\"lr\": ");
	CHECK(p != NULL && strtod(p + 6, NULL) == 0.1 + 0.2);
	p = strstr(buf, "\"l1_coefficient\": ");
	CHECK(p != NULL && strtod(p + 18, NULL) == 1.0 / 3.0);
}
