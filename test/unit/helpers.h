/*
 * helpers.h — engine-specific helpers shared by the unit tests: fixture
 * files, building configs key by key, comparing float tensors, and an
 * in-memory activation source.
 */
#ifndef UNIT_HELPERS_H
#define UNIT_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "config.h"
#include "run.h"
#include "safetensors.h"

/*
 * The CPU backend with UNIT_THREADS threads (default 1).  The tests use tiny
 * shapes, where OpenMP threads only add overhead, and on a shared, loaded
 * machine spinning OpenMP barriers slow a run down by 10x or more.
 */
SaeBackend *test_backend(void);

/* Path of test/fixtures/golden/<rel>, whether run from test/unit or the repo root. */
const char *fixture_path(const char *rel, char *buf, size_t size);

/* Path of test/fixtures/lm/<rel> (the language-model fixtures). */
const char *lm_path(const char *rel, char *buf, size_t size);

/* The reference batch of the LM fixtures, ref/tokens.txt: n ids; false if it is not there. */
bool		lm_ref_tokens(int32_t *tokens, int n);

/* Path of test/fixtures/models/<rel>. */
const char *model_path(const char *rel, char *buf, size_t size);

/* One line of test/fixtures/models/expected.txt: a tensor's dtype, shape and float32 bits. */
typedef struct Expected
{
	char		dtype[16];
	int			ndim;
	int64_t		shape[SAE_MAX_DIMS];
	size_t		n;
	uint32_t	bits[64];
} Expected;

/* Find "<file> <tensor> ..." in expected.txt; false if absent. */
bool		expected_load(const char *file, const char *tensor, Expected *e);

/* A raw little-endian float32 file of exactly n floats (malloc'd), or NULL. */
float	   *read_f32(const char *path, size_t n);

/* Defaults plus a table and column, so that sae_config_finish can succeed. */
void		cfg_base(SaeConfig *cfg);

/* sae_config_set for one key; a failure is a test failure naming the key. */
bool		cfg_num(SaeConfig *cfg, const char *key, double v);
bool		cfg_str(SaeConfig *cfg, const char *key, const char *v);
bool		cfg_bool(SaeConfig *cfg, const char *key, bool v);
bool		cfg_null(SaeConfig *cfg, const char *key);
bool		cfg_finish(SaeConfig *cfg);

/* ||a - b|| / ||b|| in double (||b|| floored at tiny). */
double		rel_err_norm_f(const float *a, const float *b, size_t n);
double		rel_err_norm_d(const double *a, const double *b, size_t n);

/* max_i |a_i - b_i| */
double		max_abs_diff_f(const float *a, const float *b, size_t n);

/* --- an in-memory SaeSource (rows x d floats), with counters for the tests --- */

typedef struct MemSource
{
	const float *rows;
	int64_t		n;				/* rows in the source */
	int			d;
	int64_t		pos;
	int64_t		reads;			/* read() calls */
	int64_t		rewinds;		/* rewind() calls */
	int64_t		max_per_read;	/* cap on rows per read (0: none) */
} MemSource;

/* A SaeSource reading ms (which must outlive the run). */
SaeSource	mem_source(MemSource *ms);

#endif
