/*
 * helpers.c — see helpers.h.
 */
#include "helpers.h"
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *
fixture_path(const char *rel, char *buf, size_t size)
{
	static const char *const roots[] = {"../fixtures/golden", "test/fixtures/golden"};

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
	{
		snprintf(buf, size, "%s/%s", roots[i], rel);
		if (access(buf, R_OK) == 0)
			return buf;
	}
	snprintf(buf, size, "%s/%s", roots[0], rel);
	return buf;
}

float *
read_f32(const char *path, size_t n)
{
	FILE	   *fp = fopen(path, "rb");
	float	   *data;
	size_t		got;
	int			extra;

	if (fp == NULL)
	{
		unit_note("cannot open %s", path);
		return NULL;
	}
	data = malloc(sizeof(float) * (n ? n : 1));
	got = data ? fread(data, sizeof(float), n, fp) : 0;
	extra = fgetc(fp);
	fclose(fp);
	if (got != n || extra != EOF)
	{
		unit_note("%s: expected exactly %zu floats (read %zu%s)", path, n, got,
				  extra != EOF ? ", file is longer" : "");
		free(data);
		return NULL;
	}
	return data;
}

void
cfg_base(SaeConfig *cfg)
{
	sae_config_defaults(cfg);
	cfg_str(cfg, "activations_table", "acts");
	cfg_str(cfg, "activations_column", "v");
	cfg_bool(cfg, "verbose", false);
	cfg_bool(cfg, "log_to_wandb", false);
}

/* Record a failed sae_config_set with the engine's message. */
static bool
report(int rc, const SaeError *err, const char *key)
{
	if (rc != SAE_OK)
		unit_fail(__FILE__, __LINE__, "sae_config_set(\"%s\") failed (%d): %s [hint: %s]",
				  key, rc, err->message, err->hint);
	return rc == SAE_OK;
}

bool
cfg_num(SaeConfig *cfg, const char *key, double v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'n', v, false, NULL, &err), &err, key);
}

bool
cfg_str(SaeConfig *cfg, const char *key, const char *v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 's', 0, false, v, &err), &err, key);
}

bool
cfg_bool(SaeConfig *cfg, const char *key, bool v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'b', 0, v, NULL, &err), &err, key);
}

bool
cfg_null(SaeConfig *cfg, const char *key)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'z', 0, false, NULL, &err), &err, key);
}

bool
cfg_finish(SaeConfig *cfg)
{
	SaeError	err;
	int			rc = sae_config_finish(cfg, &err);

	if (rc != SAE_OK)
		unit_fail(__FILE__, __LINE__, "sae_config_finish failed (%d): %s [detail: %s] [hint: %s]",
				  rc, err.message, err.detail, err.hint);
	return rc == SAE_OK;
}

double
rel_err_norm_f(const float *a, const float *b, size_t n)
{
	double		num = 0,
				den = 0;

	for (size_t i = 0; i < n; i++)
	{
		double		diff = (double) a[i] - b[i];

		num += diff * diff;
		den += (double) b[i] * b[i];
	}
	return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double
rel_err_norm_d(const double *a, const double *b, size_t n)
{
	double		num = 0,
				den = 0;

	for (size_t i = 0; i < n; i++)
	{
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double
max_abs_diff_f(const float *a, const float *b, size_t n)
{
	double		m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double) a[i] - b[i]));
	return m;
}
