/*
 * helpers.c — see helpers.h.
 */
#include "helpers.h"
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* See helpers.h: UNIT_THREADS threads, default 1. */
SaeBackend *
test_backend(void)
{
	const char *env = getenv("UNIT_THREADS");

	return sae_backend_cpu_create(env ? atoi(env) : 1);
}

/* Try test/unit-relative, then repository-relative. */
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

/* Reads n floats; a shorter or longer file is an error (noted). */
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

/* Defaults, a source, and quiet (no start-up notices). */
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

/* A JSON number. */
bool
cfg_num(SaeConfig *cfg, const char *key, double v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'n', v, false, NULL, &err), &err, key);
}

/* A JSON string. */
bool
cfg_str(SaeConfig *cfg, const char *key, const char *v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 's', 0, false, v, &err), &err, key);
}

/* A JSON boolean. */
bool
cfg_bool(SaeConfig *cfg, const char *key, bool v)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'b', 0, v, NULL, &err), &err, key);
}

/* A JSON null. */
bool
cfg_null(SaeConfig *cfg, const char *key)
{
	SaeError	err;

	return report(sae_config_set(cfg, key, 'z', 0, false, NULL, &err), &err, key);
}

/* sae_config_finish; a failure is a test failure with the full message. */
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

/* Norm-based relative error of float tensors. */
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

/* Norm-based relative error of double vectors. */
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

/* Largest elementwise difference. */
double
max_abs_diff_f(const float *a, const float *b, size_t n)
{
	double		m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double) a[i] - b[i]));
	return m;
}

/* Copy up to max_rows rows; 0 at the end (the run then rewinds for a new epoch). */
static int64_t
mem_read(void *ctx, float *dst, int64_t max_rows, SaeError *err)
{
	MemSource  *ms = ctx;
	int64_t		n = ms->n - ms->pos;

	ms->reads++;
	if (n > max_rows)
		n = max_rows;
	if (ms->max_per_read > 0 && n > ms->max_per_read)
		n = ms->max_per_read;
	memcpy(dst, ms->rows + (size_t) ms->pos * ms->d, sizeof(float) * (size_t) n * ms->d);
	ms->pos += n;
	return n;
}

/* Back to row 0, counting rewinds. */
static int
mem_rewind(void *ctx, SaeError *err)
{
	MemSource  *ms = ctx;

	ms->rewinds++;
	ms->pos = 0;
	return SAE_OK;
}

/* The SaeSource over ms. */
SaeSource
mem_source(MemSource *ms)
{
	SaeSource	src = {.ctx = ms, .read = mem_read, .rewind = mem_rewind};

	return src;
}

/* test/fixtures/models/<rel> (fixture_path's root is .../golden). */
const char *
model_path(const char *rel, char *buf, size_t size)
{
	char		r[256];

	snprintf(r, sizeof(r), "../models/%s", rel);
	return fixture_path(r, buf, size);
}

const char *
lm_path(const char *rel, char *buf, size_t size)
{
	char		r[256];

	snprintf(r, sizeof(r), "../lm/%s", rel);
	return fixture_path(r, buf, size);
}

bool
lm_ref_tokens(int32_t *tokens, int n)
{
	char		path[1024];
	FILE	   *fp = fopen(lm_path("ref/tokens.txt", path, sizeof(path)), "r");
	int			got = 0;

	if (fp == NULL)
		return false;
	while (got < n && fscanf(fp, "%d", &tokens[got]) == 1)
		got++;
	fclose(fp);
	return got == n;
}

/* Find "<file> <tensor> ..." in expected.txt. */
bool
expected_load(const char *file, const char *tensor, Expected *e)
{
	char		path[512],
				line[4096];
	FILE	   *fp = fopen(model_path("expected.txt", path, sizeof(path)), "r");
	bool		found = false;

	if (fp == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), fp) != NULL)
	{
		char	   *save = NULL;
		char	   *f = strtok_r(line, " \n", &save);
		char	   *t = strtok_r(NULL, " \n", &save);
		char	   *tok;

		if (f == NULL || t == NULL || f[0] == '#' || strcmp(f, file) != 0 || strcmp(t, tensor) != 0)
			continue;
		snprintf(e->dtype, sizeof(e->dtype), "%s", strtok_r(NULL, " \n", &save));
		e->ndim = atoi(strtok_r(NULL, " \n", &save));
		for (int d = 0; d < e->ndim; d++)
			e->shape[d] = atoll(strtok_r(NULL, " \n", &save));
		strtok_r(NULL, " \n", &save);	/* ":" */
		e->n = 0;
		while ((tok = strtok_r(NULL, " \n", &save)) != NULL && e->n < 64)
			e->bits[e->n++] = (uint32_t) strtoul(tok, NULL, 16);
		found = true;
	}
	fclose(fp);
	return found;
}
