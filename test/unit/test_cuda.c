/*
 * test_cuda.c — the CUDA backend (kernels/, opened through device.h)
 * against the CPU reference backend: every op of the SaeBackend table on the
 * same inputs, short training runs (full float32 and TF32), and the
 * GPT-2 / GPT-Neo forward pass.
 *
 * The op shapes are small but odd (B 37, d 70, m 300: no multiple of a warp
 * or of a block of threads), so that the kernels' edge handling runs.
 * Floats are compared element by element, relative to max(|want|, rms of
 * want) (rounding in a sum is relative to the sum's terms, not to its
 * value); doubles relative to |want|; counts and sparse index lists must be
 * equal.  Failures name the worst element and both values.
 *
 * Without a GPU, or without kernels/sae_cuda.so, every test is skipped.
 * SAE_CUDA_MODULE names the module (the Makefile sets it).
 */
#include "unit.h"
#include "helpers.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "device.h"
#include "lm.h"
#include "rng.h"
#include "trainer.h"

/* The op tests' shapes. */
#define OB 37
#define OD 70
#define OM 300

/* Float tolerance of the op tests, and of double reductions (summation order differs). */
#define TOL 1e-4
#define TOL_SUM 1e-6

#define SEED 20240611

/* ---------------------------------------------------------------------- */
/* The CUDA backend                                                          */
/* ---------------------------------------------------------------------- */

/*
 * A CUDA backend on GPU 0, or NULL after unit_skip: the module is missing
 * (not built: no nvcc) or it says it cannot run (no driver, no GPU).
 */
static SaeBackend *
cuda_or_skip(bool tf32)
{
	const char *path = getenv("SAE_CUDA_MODULE");
	SaeError	err = {0};
	SaeBackend *be;

	if (path == NULL || path[0] == '\0')
		path = "../../kernels/sae_cuda.so";
	if (access(path, R_OK) != 0)
	{
		unit_skip("the CUDA module was not built (no %s; make kernels/sae_cuda.so needs nvcc)", path);
		return NULL;
	}
	be = sae_backend_cuda_create(path, 0, tf32, &err);
	if (be == NULL)
		unit_skip("no GPU: %s", err.message);
	return be;
}

/* No device error so far on be; otherwise a test failure saying where. */
static bool
backend_ok(SaeBackend *be, const char *what)
{
	SaeError	err = {0};

	if (sae_backend_check(be, &err) == SAE_OK)
		return true;
	unit_fail(__FILE__, __LINE__, "%s on the %s backend: %s", what, be->name, err.message);
	return false;
}

/* ---------------------------------------------------------------------- */
/* Host and backend buffers                                                 */
/* ---------------------------------------------------------------------- */

#define MAX_HOST_BUFS 1024

/* Host buffers of the running test, all freed by host_free_all. */
static void *host_bufs[MAX_HOST_BUFS];
static int	n_host_bufs;

/* bytes of zeroed host memory, freed at the end of the test. */
static void *
host_bytes(size_t bytes)
{
	void	   *p = calloc(1, bytes ? bytes : 1);

	if (p == NULL || n_host_bufs >= MAX_HOST_BUFS)
	{
		fprintf(stderr, "test_cuda: out of host buffers\n");
		abort();
	}
	host_bufs[n_host_bufs++] = p;
	return p;
}

/* n zeroed host floats, freed at the end of the test. */
static float *
host_floats(size_t n)
{
	return host_bytes(sizeof(float) * n);
}

/* A host copy of n floats. */
static float *
host_copy(const float *src, size_t n)
{
	float	   *p = host_floats(n);

	memcpy(p, src, sizeof(float) * n);
	return p;
}

/* Free every host buffer of the test (each test calls this before it returns). */
static void
host_free_all(void)
{
	while (n_host_bufs > 0)
		free(host_bufs[--n_host_bufs]);
}

/* offset + scale * N(0,1), a fixed pseudo-random stream per caller. */
static float *
normals(size_t n, uint64_t stream, float scale, float offset)
{
	float	   *x = host_floats(n);

	for (size_t i = 0; i < n; i++)
		x[i] = offset + scale * sae_normal(SEED, stream, i);
	return x;
}

/* Uniform in [lo, hi). */
static float *
uniforms(size_t n, uint64_t stream, float lo, float hi)
{
	float	   *x = host_floats(n);

	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * (float) sae_uniform(SEED, stream, i);
	return x;
}

#define MAX_DEV_BUFS 32

/* The buffers one op run allocates on a backend, freed together. */
typedef struct Dev
{
	SaeBackend *be;
	int			n;
	void	   *p[MAX_DEV_BUFS];
} Dev;

/*
 * A buffer of bytes on the backend holding host (zeros if host is NULL).
 * NULL only after a device error (noted; the ops then do nothing).
 */
static void *
dev_put(Dev *d, const void *host, size_t bytes)
{
	void	   *p;

	if (d->n >= MAX_DEV_BUFS)
	{
		fprintf(stderr, "test_cuda: more than %d buffers in one op run\n", MAX_DEV_BUFS);
		abort();
	}
	p = d->be->alloc(d->be, bytes ? bytes : 1);
	if (p == NULL)
	{
		unit_fail(__FILE__, __LINE__, "%s backend: alloc(%zu) failed", d->be->name, bytes);
		return NULL;
	}
	d->p[d->n++] = p;
	if (host != NULL && bytes > 0)
		d->be->to_device(d->be, p, host, bytes);
	return p;
}

/* bytes of a backend buffer into host memory. */
static void
dev_get(Dev *d, void *host, const void *src, size_t bytes)
{
	d->be->to_host(d->be, host, src, bytes);
}

/* Free the run's buffers; false (a failure) if the backend had an error. */
static bool
dev_done(Dev *d, const char *what)
{
	bool		ok = backend_ok(d->be, what);

	while (d->n > 0)
		d->be->free(d->be, d->p[--d->n]);
	return ok;
}

/* ---------------------------------------------------------------------- */
/* Comparisons                                                              */
/* ---------------------------------------------------------------------- */

/* The largest error a test's comparisons saw (for a note at its end). */
static double worst_seen;
static char worst_what[160];

/* Start a test's record of its largest error. */
static void
worst_reset(void)
{
	worst_seen = 0;
	worst_what[0] = '\0';
}

/* Note the largest error, so that a GPU run shows its margins. */
static void
worst_note(const char *test)
{
	unit_note("%s: largest error %.2e (%s)", test, worst_seen, worst_what[0] ? worst_what : "-");
}

/* Keep err if it is the largest so far. */
static void
worst_update(const char *what, double err)
{
	if (err > worst_seen)
	{
		worst_seen = err;
		snprintf(worst_what, sizeof(worst_what), "%s", what);
	}
}

/*
 * got vs want, n floats: each error |got - want| / max(|want_i|, rms(want)),
 * at most tol.  Infinities must match exactly (masked attention scores); a
 * NaN anywhere fails.  Reports the worst element.
 */
static bool
close_f(const char *what, const float *got, const float *want, size_t n, double tol)
{
	double		ss = 0,
				rms,
				worst = 0;
	size_t		finite = 0,
				at = 0;

	for (size_t i = 0; i < n; i++)
		if (isfinite(want[i]))
		{
			ss += (double) want[i] * want[i];
			finite++;
		}
	rms = finite > 0 ? sqrt(ss / finite) : 0;
	for (size_t i = 0; i < n; i++)
	{
		double		err;

		if (!isfinite(want[i]) || !isfinite(got[i]))
			err = got[i] == want[i] ? 0 : INFINITY;
		else
			err = fabs((double) got[i] - want[i]) / fmax(fmax(fabs(want[i]), rms), 1e-30);
		if (err > worst)
		{
			worst = err;
			at = i;
		}
	}
	worst_update(what, worst);
	if (worst <= tol)
		return true;
	unit_fail(__FILE__, __LINE__, "%s: element %zu of %zu: got %.9g, want %.9g (error %.3g > %.3g; rms of want %.3g)",
			  what, at, n, (double) got[at], (double) want[at], worst, tol, rms);
	return false;
}

/* Floats that must be equal (copies, counts, fills). */
static bool
equal_f(const char *what, const float *got, const float *want, size_t n)
{
	size_t		bad = 0,
				first = 0;

	for (size_t i = 0; i < n; i++)
		if (!(got[i] == want[i]))
		{
			if (bad++ == 0)
				first = i;
		}
	if (bad == 0)
		return true;
	unit_fail(__FILE__, __LINE__, "%s: %zu of %zu elements differ; first %zu: got %.9g, want %.9g",
			  what, bad, n, first, (double) got[first], (double) want[first]);
	return false;
}

/* int32 lists that must be equal (sparse indices). */
static bool
equal_i32(const char *what, const int32_t *got, const int32_t *want, size_t n)
{
	size_t		bad = 0,
				first = 0;

	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
		{
			if (bad++ == 0)
				first = i;
		}
	if (bad == 0)
		return true;
	unit_fail(__FILE__, __LINE__, "%s: %zu of %zu entries differ; first %zu: got %d, want %d",
			  what, bad, n, first, (int) got[first], (int) want[first]);
	return false;
}

/* |got - want| <= tol * max(|want|, floor). */
static bool
close_d(const char *what, double got, double want, double tol, double floor)
{
	double		err = fabs(got - want) / fmax(fabs(want), floor);

	if (isnan(got) || isnan(want))
		err = INFINITY;
	worst_update(what, err);
	if (err <= tol)
		return true;
	unit_fail(__FILE__, __LINE__, "%s: got %.17g, want %.17g (relative error %.3g > %.3g)",
			  what, got, want, err, tol);
	return false;
}

/* ---------------------------------------------------------------------- */
/* The SAE training ops                                                     */
/* ---------------------------------------------------------------------- */

/* fill over part of a buffer (the rest stays zero), then copy a range of it into a second buffer. */
static void
run_fill_copy(SaeBackend *be, const float *src, float *filled, float *copied, size_t n)
{
	Dev			d = {.be = be};
	float	   *x = dev_put(&d, NULL, sizeof(float) * n),
			   *y = dev_put(&d, src, sizeof(float) * n);

	be->fill(be, x + 5, n - 11, 3.25f);
	be->fill(be, x + 2, 0, -1.0f);
	dev_get(&d, filled, x, sizeof(float) * n);
	be->copy(be, y + 3, x + 1, sizeof(float) * 500);
	be->copy(be, y + 700, y + 700, sizeof(float) * 10);	/* onto itself */
	dev_get(&d, copied, y, sizeof(float) * n);
	dev_done(&d, "fill and copy");
}

/* fill writes exactly its range (an empty fill included); copy moves exactly its bytes. */
static void
check_fill_copy(SaeBackend *gpu, SaeBackend *cpu)
{
	size_t		n = 1001;
	float	   *src = normals(n, 50, 1.0f, 0.0f),
			   *fw = host_floats(n),
			   *fg = host_floats(n),
			   *cw = host_floats(n),
			   *cg = host_floats(n);

	run_fill_copy(cpu, src, fw, cw, n);
	run_fill_copy(gpu, src, fg, cg, n);
	equal_f("fill", fg, fw, n);
	equal_f("copy", cg, cw, n);
}

/* C = alpha op(A) op(B) + beta C; c holds C's start (M rows of ldc) and gets the result. */
static void
run_gemm(SaeBackend *be, bool ta, bool tb, int M, int N, int K, float alpha,
		 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
	Dev			d = {.be = be};
	size_t		na = (size_t) (ta ? K : M) * lda,
				nb = (size_t) (tb ? N : K) * ldb,
				nc = (size_t) M * ldc;
	float	   *A = dev_put(&d, a, sizeof(float) * na),
			   *B = dev_put(&d, b, sizeof(float) * nb),
			   *C = dev_put(&d, c, sizeof(float) * nc);

	be->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	dev_get(&d, c, C, sizeof(float) * nc);
	dev_done(&d, "gemm");
}

/* One gemm on both backends from the same operands; C's padding columns must survive. */
static void
compare_gemm(SaeBackend *gpu, SaeBackend *cpu, bool ta, bool tb, int M, int N, int K,
			 float alpha, int lda, int ldb, float beta, int ldc, uint64_t stream)
{
	size_t		na = (size_t) (ta ? K : M) * lda,
				nb = (size_t) (tb ? N : K) * ldb,
				nc = (size_t) M * ldc;
	float	   *a = normals(na, stream, 1.0f, 0.0f),
			   *b = normals(nb, stream + 1, 1.0f, 0.0f),
			   *c0 = normals(nc, stream + 2, 1.0f, 0.0f),
			   *want = host_copy(c0, nc),
			   *got = host_copy(c0, nc);
	char		what[128];

	run_gemm(cpu, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, want, ldc);
	run_gemm(gpu, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, got, ldc);
	snprintf(what, sizeof(what), "gemm(trans_a %d, trans_b %d, %dx%dx%d, ld %d/%d/%d, beta %g)",
			 ta, tb, M, N, K, lda, ldb, ldc, beta);
	close_f(what, got, want, nc, TOL);
}

/* All four transpose combinations with padded leading dimensions, then the trainer's shapes. */
static void
check_gemm(SaeBackend *gpu, SaeBackend *cpu)
{
	/* extra columns of A, B and C beyond the width each op reads */
	static const int pads[4][3] = {{0, 0, 0}, {3, 0, 1}, {0, 5, 0}, {2, 4, 3}};
	const int	M = OB,
				N = 53,
				K = OD;

	for (int k = 0; k < 4; k++)
	{
		bool		ta = (k & 1) != 0,
					tb = (k & 2) != 0;

		compare_gemm(gpu, cpu, ta, tb, M, N, K, 1.25f, (ta ? M : K) + pads[k][0],
					 (tb ? K : N) + pads[k][1], 0.5f, N + pads[k][2], 100 + 10 * k);
	}
	/* the encoder's h = x_c W_enc^T (beta 0, long K) and the decoder's x_hat = f W_dec */
	compare_gemm(gpu, cpu, false, true, OB, OM, OD, 1.0f, OD, OD, 0.0f, OM, 150);
	compare_gemm(gpu, cpu, false, false, OB, OD, OM, 1.0f, OM, OD, 0.0f, OD, 160);
	/* W_dec's gradient f^T d_xhat, beta 1 as the ghost grads add into it */
	compare_gemm(gpu, cpu, true, false, OM, OD, OB, 1.0f, OM, OD, 1.0f, OD, 170);
	/* b_dec's gradient: N = 1 with ld 1, alpha -1, beta 1 */
	compare_gemm(gpu, cpu, true, false, OD, 1, OM, -1.0f, OD, 1, 1.0f, 1, 180);
}

/* gather_rows of OB rows by a device index list. */
static void
run_gather(SaeBackend *be, const float *src, int src_rows, const int32_t *idx, float *out)
{
	Dev			d = {.be = be};
	float	   *S = dev_put(&d, src, sizeof(float) * src_rows * OD),
			   *D = dev_put(&d, NULL, sizeof(float) * OB * OD);
	int32_t    *I = dev_put(&d, idx, sizeof(int32_t) * OB);

	be->gather_rows(be, D, S, I, OB, OD);
	dev_get(&d, out, D, sizeof(float) * OB * OD);
	dev_done(&d, "gather_rows");
}

/* A copy: must be exact. */
static void
check_gather(SaeBackend *gpu, SaeBackend *cpu)
{
	int32_t		idx[OB];
	float	   *src = normals(50 * OD, 200, 1.0f, 0.0f),
			   *want = host_floats(OB * OD),
			   *got = host_floats(OB * OD);

	for (int r = 0; r < OB; r++)
		idx[r] = (r * 7 + 3) % 50;	/* repeats and jumps */
	run_gather(cpu, src, 50, idx, want);
	run_gather(gpu, src, 50, idx, got);
	equal_f("gather_rows", got, want, OB * OD);
}

/* add_row_vector into a second buffer, then in place. */
static void
run_add_row_vector(SaeBackend *be, const float *src, const float *vec, float *out1, float *out2)
{
	Dev			d = {.be = be};
	float	   *S = dev_put(&d, src, sizeof(float) * OB * OD),
			   *V = dev_put(&d, vec, sizeof(float) * OD),
			   *D = dev_put(&d, NULL, sizeof(float) * OB * OD);

	be->add_row_vector(be, D, S, V, OB, OD, -1.0f);
	dev_get(&d, out1, D, sizeof(float) * OB * OD);
	be->add_row_vector(be, S, S, V, OB, OD, 0.75f);
	dev_get(&d, out2, S, sizeof(float) * OB * OD);
	dev_done(&d, "add_row_vector");
}

/* Both uses of add_row_vector: x_c = x - b_dec and x_hat += b_dec in place. */
static void
check_add_row_vector(SaeBackend *gpu, SaeBackend *cpu)
{
	float	   *src = normals(OB * OD, 210, 1.0f, 0.0f),
			   *vec = normals(OD, 211, 1.0f, 0.5f),
			   *w1 = host_floats(OB * OD),
			   *w2 = host_floats(OB * OD),
			   *g1 = host_floats(OB * OD),
			   *g2 = host_floats(OB * OD);

	run_add_row_vector(cpu, src, vec, w1, w2);
	run_add_row_vector(gpu, src, vec, g1, g2);
	close_f("add_row_vector (alpha -1)", g1, w1, OB * OD, TOL);
	close_f("add_row_vector (in place, alpha 0.75)", g2, w2, OB * OD, TOL);
}

/* col_sum of rows x cols. */
static void
run_col_sum(SaeBackend *be, const float *src, int rows, int cols, float *out)
{
	Dev			d = {.be = be};
	float	   *S = dev_put(&d, src, sizeof(float) * rows * cols),
			   *D = dev_put(&d, NULL, sizeof(float) * cols);

	be->col_sum(be, D, S, rows, cols);
	dev_get(&d, out, D, sizeof(float) * cols);
	dev_done(&d, "col_sum");
}

/* Column sums over several blocks of rows, and over B x m (b_enc's gradient). */
static void
check_col_sum(SaeBackend *gpu, SaeBackend *cpu)
{
	/* 601 rows: three blocks of 256 rows, the last partial */
	static const int shapes[2][2] = {{601, OD}, {OB, OM}};

	for (int s = 0; s < 2; s++)
	{
		int			rows = shapes[s][0],
					cols = shapes[s][1];
		float	   *src = normals((size_t) rows * cols, 220 + s, 1.0f, 0.25f),
				   *want = host_floats(cols),
				   *got = host_floats(cols);
		char		what[64];

		run_col_sum(cpu, src, rows, cols, want);
		run_col_sum(gpu, src, rows, cols, got);
		snprintf(what, sizeof(what), "col_sum %dx%d", rows, cols);
		close_f(what, got, want, cols, TOL);
	}
}

/* normalize_rows of an OM x OD matrix. */
static void
run_normalize_rows(SaeBackend *be, const float *w, float *out)
{
	Dev			d = {.be = be};
	float	   *W = dev_put(&d, w, sizeof(float) * OM * OD);

	be->normalize_rows(be, W, OM, OD);
	dev_get(&d, out, W, sizeof(float) * OM * OD);
	dev_done(&d, "normalize_rows");
}

/* project_rows of g against the unit rows w. */
static void
run_project_rows(SaeBackend *be, const float *g, const float *w, float *out)
{
	Dev			d = {.be = be};
	float	   *G = dev_put(&d, g, sizeof(float) * OM * OD),
			   *W = dev_put(&d, w, sizeof(float) * OM * OD);

	be->project_rows(be, G, W, OM, OD);
	dev_get(&d, out, G, sizeof(float) * OM * OD);
	dev_done(&d, "project_rows");
}

/* The decoder's row normalisation (a zero row included) and gradient projection. */
static void
check_rows(SaeBackend *gpu, SaeBackend *cpu)
{
	float	   *w = normals(OM * OD, 230, 0.3f, 0.0f),
			   *g = normals(OM * OD, 231, 0.01f, 0.0f),
			   *unit = host_floats(OM * OD),
			   *want = host_floats(OM * OD),
			   *got = host_floats(OM * OD);

	memset(w + 5 * OD, 0, sizeof(float) * OD);	/* a zero row stays zero */
	run_normalize_rows(cpu, w, want);
	run_normalize_rows(gpu, w, got);
	close_f("normalize_rows", got, want, OM * OD, TOL);

	/* unit rows, normalised on the host in double */
	for (int r = 0; r < OM; r++)
	{
		double		ss = 0;

		for (int j = 0; j < OD; j++)
			ss += (double) w[r * OD + j] * w[r * OD + j];
		for (int j = 0; j < OD; j++)
			unit[r * OD + j] = ss > 0 ? (float) (w[r * OD + j] / sqrt(ss)) : 0.0f;
	}
	run_project_rows(cpu, g, unit, want);
	run_project_rows(gpu, g, unit, got);
	close_f("project_rows", got, want, OM * OD, TOL);
}

/* One encode_activate call's parameters. */
typedef struct EncodeCase
{
	SaeActivation act;
	float		noise;
	double		lp;
	bool		fire_count;
} EncodeCase;

typedef struct EncodeOut
{
	float	   *h,
			   *f,
			   *norm,
			   *fire;
	double		l0;
} EncodeOut;

/* encode_activate on be: h, f, row norms, fire counts and L0 into out. */
static void
run_encode(SaeBackend *be, const EncodeCase *ec, const float *h0, const float *b_enc,
		   const float *fire0, EncodeOut *out)
{
	Dev			d = {.be = be};
	float	   *H = dev_put(&d, h0, sizeof(float) * OB * OM),
			   *Be = dev_put(&d, b_enc, sizeof(float) * OM),
			   *F = dev_put(&d, NULL, sizeof(float) * OB * OM),
			   *N = dev_put(&d, NULL, sizeof(float) * OB),
			   *C = dev_put(&d, fire0, sizeof(float) * OM);

	out->l0 = be->encode_activate(be, H, Be, F, OB, OM, ec->act, ec->noise, 42,
								  SAE_STREAM_NOISE + 5, ec->lp, N, ec->fire_count ? C : NULL);
	dev_get(&d, out->h, H, sizeof(float) * OB * OM);
	dev_get(&d, out->f, F, sizeof(float) * OB * OM);
	dev_get(&d, out->norm, N, sizeof(float) * OB);
	dev_get(&d, out->fire, C, sizeof(float) * OM);
	dev_done(&d, "encode_activate");
}

/* Both nonlinearities, with and without noise, lp 1, 2 and 1.5, with and without fire counts. */
static void
check_encode(SaeBackend *gpu, SaeBackend *cpu)
{
	static const EncodeCase cases[] = {
		{SAE_ACT_RELU, 0.0f, 1.0, true},
		{SAE_ACT_TANH_RELU, 0.3f, 2.0, true},
		{SAE_ACT_RELU, 0.0f, 2.0, false},
		{SAE_ACT_TANH_RELU, 0.0f, 1.5, true},
	};
	/* pre-activations N(-0.5, 1.1): about a third positive */
	float	   *h0 = normals(OB * OM, 300, 1.0f, 0.0f),
			   *b_enc = normals(OM, 301, 0.5f, -0.5f),
			   *fire0 = host_floats(OM);

	for (int i = 0; i < OM; i++)
		fire0[i] = (float) (i % 3);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
	{
		const EncodeCase *ec = &cases[k];
		EncodeOut	want = {host_floats(OB * OM), host_floats(OB * OM), host_floats(OB), host_floats(OM), 0},
					got = {host_floats(OB * OM), host_floats(OB * OM), host_floats(OB), host_floats(OM), 0};
		char		what[128];
		double		fire_diff = 0,
					allowed;

		run_encode(cpu, ec, h0, b_enc, fire0, &want);
		run_encode(gpu, ec, h0, b_enc, fire0, &got);
		snprintf(what, sizeof(what), "encode_activate(%s, noise %g, lp %g)",
				 ec->act == SAE_ACT_RELU ? "relu" : "tanh_relu", ec->noise, ec->lp);
		/* the test itself: f must mix zeros and positives */
		CHECK_MSG(want.l0 > 0.1 * OB * OM && want.l0 < 0.9 * OB * OM, "%s: L0 %g of %d entries",
				  what, want.l0, OB * OM);
		{
			char		w2[160];

			snprintf(w2, sizeof(w2), "%s h", what);
			close_f(w2, got.h, want.h, OB * OM, TOL);
			snprintf(w2, sizeof(w2), "%s f", what);
			close_f(w2, got.f, want.f, OB * OM, TOL);
			snprintf(w2, sizeof(w2), "%s row_norm", what);
			close_f(w2, got.norm, want.norm, OB, TOL);
		}

		/*
		 * Counts are exact.  With noise, the GPU's logf/cosf may round the
		 * noise an ulp apart, which could flip an entry within ~1e-7 of zero.
		 */
		allowed = ec->noise > 0 ? 2 : 0;
		for (int i = 0; i < OM; i++)
			fire_diff += fabs((double) got.fire[i] - want.fire[i]);
		CHECK_MSG(fire_diff <= allowed, "%s fire_count: differs by %g in all (allowed %g)",
				  what, fire_diff, allowed);
		CHECK_MSG(fabs(got.l0 - want.l0) <= allowed, "%s L0: got %.17g, want %.17g", what,
				  got.l0, want.l0);
	}
}

typedef struct MseOut
{
	float	   *d_xhat,
			   *row_w,
			   *x_sq;
	SaeMseStats st;
} MseOut;

/* mse_forward_backward on be, its outputs first filled with junk (all must be written). */
static void
run_mse(SaeBackend *be, const float *x, const float *xhat, bool dense, const float *junk, MseOut *out)
{
	Dev			d = {.be = be};
	float	   *X = dev_put(&d, x, sizeof(float) * OB * OD),
			   *Y = dev_put(&d, xhat, sizeof(float) * OB * OD),
			   *G = dev_put(&d, junk, sizeof(float) * OB * OD),
			   *W = dev_put(&d, junk, sizeof(float) * OB),
			   *Q = dev_put(&d, junk, sizeof(float) * OB);

	memset(&out->st, 0, sizeof(out->st));
	be->mse_forward_backward(be, X, Y, OB, OD, dense, G, W, Q, &out->st);
	dev_get(&d, out->d_xhat, G, sizeof(float) * OB * OD);
	dev_get(&d, out->row_w, W, sizeof(float) * OB);
	dev_get(&d, out->x_sq, Q, sizeof(float) * OB);
	dev_done(&d, "mse_forward_backward");
}

/* The MSE op with and without dense_batch: gradient, row weights, norms and the seven sums. */
static void
check_mse(SaeBackend *gpu, SaeBackend *cpu)
{
	float	   *x = normals(OB * OD, 400, 1.0f, 0.0f),
			   *noise = normals(OB * OD, 401, 0.3f, 0.0f),
			   *junk = normals(OB * OD, 402, 5.0f, 0.0f),
			   *xhat = host_floats(OB * OD);

	for (int b = 0; b < OB; b++)
		for (int j = 0; j < OD; j++)
		{
			size_t		k = (size_t) b * OD + j;

			x[k] += 0.05f * j;	/* a mean that centring must remove */
			if (b == 3)
				x[k] = 0;		/* a zero row: the l2_ratio guard */
			xhat[k] = x[k] + noise[k];
		}
	for (int dense = 0; dense < 2; dense++)
	{
		MseOut		want = {.d_xhat = host_floats(OB * OD), .row_w = host_floats(OB), .x_sq = host_floats(OB)},
					got = {.d_xhat = host_floats(OB * OD), .row_w = host_floats(OB), .x_sq = host_floats(OB)};
		const char *tag = dense ? "mse (dense_batch)" : "mse";
		char		what[128];
		static const char *const fields[7] = {"mse_sum", "sse", "sst", "ev_legacy_sum",
		"ev_legacy_sumsq", "l2_norm_out", "l2_ratio"};

		run_mse(cpu, x, xhat, dense, junk, &want);
		run_mse(gpu, x, xhat, dense, junk, &got);
		snprintf(what, sizeof(what), "%s d_xhat", tag);
		close_f(what, got.d_xhat, want.d_xhat, OB * OD, TOL);
		snprintf(what, sizeof(what), "%s row_w", tag);
		close_f(what, got.row_w, want.row_w, OB, TOL);
		snprintf(what, sizeof(what), "%s x_sq", tag);
		close_f(what, got.x_sq, want.x_sq, OB, TOL);
		{
			const SaeMseStats *g = &got.st,
					   *w = &want.st;
			double		gs[7] = {g->mse_sum, g->sse, g->sst, g->ev_legacy_sum, g->ev_legacy_sumsq,
			g->l2_norm_out, g->l2_ratio},
						ws[7] = {w->mse_sum, w->sse, w->sst, w->ev_legacy_sum, w->ev_legacy_sumsq,
			w->l2_norm_out, w->l2_ratio};

			for (int q = 0; q < 7; q++)
			{
				snprintf(what, sizeof(what), "%s %s", tag, fields[q]);
				close_d(what, gs[q], ws[q], TOL_SUM, 1e-9);
			}
		}
	}
}

/* One activation_backward call's parameters. */
typedef struct BackCase
{
	SaeActivation act;
	double		lp;
	bool		row_scale;
} BackCase;

/* activation_backward on be from dh0. */
static void
run_act_backward(SaeBackend *be, const BackCase *bc, const float *dh0, const float *f,
				 const float *norm, const float *scale, float *out)
{
	Dev			d = {.be = be};
	float	   *DH = dev_put(&d, dh0, sizeof(float) * OB * OM),
			   *F = dev_put(&d, f, sizeof(float) * OB * OM),
			   *N = dev_put(&d, norm, sizeof(float) * OB),
			   *S = dev_put(&d, scale, sizeof(float) * OB);

	be->activation_backward(be, DH, F, N, bc->row_scale ? S : NULL, 0.02f, bc->lp, OB, OM, bc->act);
	dev_get(&d, out, DH, sizeof(float) * OB * OM);
	dev_done(&d, "activation_backward");
}

/* The sparsity penalty's backward for each nonlinearity, lp and row_scale choice. */
static void
check_act_backward(SaeBackend *gpu, SaeBackend *cpu)
{
	static const BackCase cases[] = {
		{SAE_ACT_RELU, 1.0, false},
		{SAE_ACT_TANH_RELU, 2.0, true},
		{SAE_ACT_RELU, 1.5, true},
		{SAE_ACT_TANH_RELU, 1.0, false},
	};
	float	   *dh0 = normals(OB * OM, 500, 1e-3f, 0.0f),
			   *pre = normals(OB * OM, 501, 1.0f, -0.5f),
			   *scale = uniforms(OB, 502, 0.5f, 1.5f),
			   *f = host_floats(OB * OM),
			   *norm = host_floats(OB),
			   *want = host_floats(OB * OM),
			   *got = host_floats(OB * OM);

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
	{
		const BackCase *bc = &cases[k];
		char		what[128];

		/* f = act(pre), row 2 all zero (norm 0); norms on the host */
		for (int b = 0; b < OB; b++)
		{
			double		s = 0;

			for (int i = 0; i < OM; i++)
			{
				float		v = b == 2 ? 0.0f : fmaxf(pre[b * OM + i], 0.0f);

				if (bc->act == SAE_ACT_TANH_RELU)
					v = tanhf(v);
				f[b * OM + i] = v;
				s += pow(v, bc->lp);
			}
			norm[b] = (float) pow(s, 1.0 / bc->lp);
		}
		run_act_backward(cpu, bc, dh0, f, norm, scale, want);
		run_act_backward(gpu, bc, dh0, f, norm, scale, got);
		snprintf(what, sizeof(what), "activation_backward(%s, lp %g, row_scale %s)",
				 bc->act == SAE_ACT_RELU ? "relu" : "tanh_relu", bc->lp, bc->row_scale ? "set" : "NULL");
		close_f(what, got, want, OB * OM, TOL);
	}
}

/* update_fire_stats: its four arrays and the dead count. */
static int64_t
run_fire_stats(SaeBackend *be, const float *const in[4], float *const out[4])
{
	Dev			d = {.be = be};
	float	   *A[4];
	int64_t		dead;

	for (int k = 0; k < 4; k++)
		A[k] = dev_put(&d, in[k], sizeof(float) * OM);
	dead = be->update_fire_stats(be, A[0], A[1], A[2], A[3], OM, 5.0f);
	for (int k = 0; k < 4; k++)
		dev_get(&d, out[k], A[k], sizeof(float) * OM);
	dev_done(&d, "update_fire_stats");
	return dead;
}

/* Dead-feature bookkeeping: small integers and one add, so exact. */
static void
check_fire_stats(SaeBackend *gpu, SaeBackend *cpu)
{
	static const char *const names[4] = {"fire_count", "steps_since_fired", "act_freq", "dead_mask"};
	float	   *in[4],
			   *want[4],
			   *got[4];
	int64_t		dead_want,
				dead_got;

	for (int k = 0; k < 4; k++)
	{
		in[k] = host_floats(OM);
		want[k] = host_floats(OM);
		got[k] = host_floats(OM);
	}
	for (int i = 0; i < OM; i++)
	{
		in[0][i] = i % 3 == 0 ? (float) (i % 5) : 0.0f;
		in[1][i] = (float) (i % 9);
		in[2][i] = fabsf(sae_normal(SEED, 600, i)) * 10;
		in[3][i] = 0.5f;		/* overwritten */
	}
	dead_want = run_fire_stats(cpu, (const float *const *) in, want);
	dead_got = run_fire_stats(gpu, (const float *const *) in, got);
	CHECK_MSG(dead_want > 0 && dead_want < OM, "update_fire_stats: %lld dead", (long long) dead_want);
	CHECK_INT_EQ(dead_got, dead_want);
	for (int k = 0; k < 4; k++)
	{
		char		what[64];

		snprintf(what, sizeof(what), "update_fire_stats %s", names[k]);
		equal_f(what, got[k], want[k], OM);
	}
}

/* exp_masked on be into a buffer of junk. */
static void
run_exp_masked(SaeBackend *be, const float *h, const float *mask, const float *junk, float *out)
{
	Dev			d = {.be = be};
	float	   *G = dev_put(&d, junk, sizeof(float) * OB * OM),
			   *H = dev_put(&d, h, sizeof(float) * OB * OM),
			   *M = dev_put(&d, mask, sizeof(float) * OM);

	be->exp_masked(be, G, H, M, OB, OM);
	dev_get(&d, out, G, sizeof(float) * OB * OM);
	dev_done(&d, "exp_masked");
}

/* ghost_backward on be from dh0. */
static void
run_ghost_backward(SaeBackend *be, const float *dh0, const float *dg, const float *h,
				   const float *mask, float *out)
{
	Dev			d = {.be = be};
	float	   *DH = dev_put(&d, dh0, sizeof(float) * OB * OM),
			   *DG = dev_put(&d, dg, sizeof(float) * OB * OM),
			   *H = dev_put(&d, h, sizeof(float) * OB * OM),
			   *M = dev_put(&d, mask, sizeof(float) * OM);

	be->ghost_backward(be, DH, DG, H, M, OB, OM);
	dev_get(&d, out, DH, sizeof(float) * OB * OM);
	dev_done(&d, "ghost_backward");
}

/* ghost_loss: y's gradient into y_out, the loss returned. */
static double
run_ghost_loss(SaeBackend *be, const float *x, const float *xhat, const float *y,
			   const float *row_w, bool dense, float *y_out)
{
	Dev			d = {.be = be};
	float	   *X = dev_put(&d, x, sizeof(float) * OB * OD),
			   *XH = dev_put(&d, xhat, sizeof(float) * OB * OD),
			   *Y = dev_put(&d, y, sizeof(float) * OB * OD),
			   *W = dev_put(&d, row_w, sizeof(float) * OB);
	double		loss = be->ghost_loss(be, X, XH, Y, W, dense, OB, OD);

	dev_get(&d, y_out, Y, sizeof(float) * OB * OD);
	dev_done(&d, "ghost_loss");
	return loss;
}

/* The ghost-grad ops: exp_masked, ghost_backward, ghost_loss with and without dense_batch. */
static void
check_ghost(SaeBackend *gpu, SaeBackend *cpu)
{
	float	   *h = normals(OB * OM, 700, 1.0f, -1.0f),
			   *mask = host_floats(OM),
			   *junk = normals(OB * OM, 701, 3.0f, 0.0f),
			   *dg = normals(OB * OM, 702, 0.01f, 0.0f),
			   *x = normals(OB * OD, 703, 1.0f, 0.2f),
			   *noise = normals(OB * OD, 704, 0.5f, 0.0f),
			   *k = uniforms(OB * OD, 705, 0.2f, 1.2f),
			   *row_w = uniforms(OB, 706, 0.5f, 1.5f),
			   *xhat = host_floats(OB * OD),
			   *y = host_floats(OB * OD),
			   *want = host_floats(OB * OM),
			   *got = host_floats(OB * OM);

	for (int i = 0; i < OM; i++)
		mask[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.0f : -1.0f;
	run_exp_masked(cpu, h, mask, junk, want);
	run_exp_masked(gpu, h, mask, junk, got);
	close_f("exp_masked", got, want, OB * OM, TOL);

	run_ghost_backward(cpu, junk, dg, h, mask, want);
	run_ghost_backward(gpu, junk, dg, h, mask, got);
	close_f("ghost_backward", got, want, OB * OM, TOL);

	/*
	 * y points against the residual r = x - xhat, so that y c - r never
	 * cancels: where it nearly does, the ghost gradient r^2/(y c - r) is
	 * ill-conditioned and an FMA on the GPU alone moves it by 1e-4.
	 */
	for (size_t i = 0; i < OB * OD; i++)
	{
		xhat[i] = x[i] + noise[i];
		y[i] = -k[i] * (x[i] - xhat[i]);
	}
	for (int dense = 0; dense < 2; dense++)
	{
		float	   *yw = host_floats(OB * OD),
				   *yg = host_floats(OB * OD);
		double		lw = run_ghost_loss(cpu, x, xhat, y, row_w, dense, yw),
					lg = run_ghost_loss(gpu, x, xhat, y, row_w, dense, yg);

		close_f(dense ? "ghost_loss gradient (dense_batch)" : "ghost_loss gradient", yg, yw, OB * OD, TOL);
		close_d(dense ? "ghost_loss (dense_batch)" : "ghost_loss", lg, lw, TOL_SUM, 1e-12);
	}
}

/* A CSR/CSC listing as sparsify writes it. */
typedef struct Lists
{
	int64_t		nnz;
	int32_t    *row_ptr,
			   *col_idx,
			   *col_ptr,
			   *row_idx;
} Lists;

/* f with ~8% positives, some negatives, an empty row and column, a full row. */
static float *
sparse_f(void)
{
	float	   *f = host_floats(OB * OM);

	for (int b = 0; b < OB; b++)
		for (int i = 0; i < OM; i++)
		{
			size_t		k = (size_t) b * OM + i;
			double		u = sae_uniform(SEED, 800, k);

			f[k] = u < 0.08 ? (float) sae_uniform(SEED, 801, k) + 0.05f : u < 0.1 ? -0.5f : 0.0f;
			if (b == 4 || i == 17)
				f[k] = 0;
			if (b == 9 && i != 17)
				f[k] = 0.01f + 0.001f * i;
		}
	return f;
}

/* sparsify with capacity; the lists (capacity entries allocated) into out. */
static int64_t
run_sparsify(SaeBackend *be, const float *f, int64_t capacity, Lists *out)
{
	Dev			d = {.be = be};
	float	   *F = dev_put(&d, f, sizeof(float) * OB * OM);
	int32_t    *RP = dev_put(&d, NULL, sizeof(int32_t) * (OB + 1)),
			   *CI = dev_put(&d, NULL, sizeof(int32_t) * (capacity + 1)),
			   *CP = dev_put(&d, NULL, sizeof(int32_t) * (OM + 1)),
			   *RI = dev_put(&d, NULL, sizeof(int32_t) * (capacity + 1));
	int64_t		nnz = be->sparsify(be, F, OB, OM, RP, CI, CP, RI, capacity);

	out->nnz = nnz;
	if (nnz >= 0 && nnz <= capacity)
	{
		dev_get(&d, out->row_ptr, RP, sizeof(int32_t) * (OB + 1));
		dev_get(&d, out->col_idx, CI, sizeof(int32_t) * nnz);
		dev_get(&d, out->col_ptr, CP, sizeof(int32_t) * (OM + 1));
		dev_get(&d, out->row_idx, RI, sizeof(int32_t) * nnz);
	}
	dev_done(&d, "sparsify");
	return nnz;
}

/* Host lists for up to capacity entries. */
static Lists
new_lists(int64_t capacity)
{
	Lists		l = {0, host_bytes(sizeof(int32_t) * (OB + 1)), host_bytes(sizeof(int32_t) * (capacity + 1)),
	host_bytes(sizeof(int32_t) * (OM + 1)), host_bytes(sizeof(int32_t) * (capacity + 1))};

	return l;
}

/* The outputs of run_sparse_ops. */
typedef struct SparseOut
{
	float	   *x_hat,
			   *dh,
			   *grad_f,
			   *grad_v;
} SparseOut;

/* sparse_decode, sparse_backprop and sparse_weight_grad (vals f, then vals) on the lists l. */
static void
run_sparse_ops(SaeBackend *be, const Lists *l, const float *f, const float *w_dec,
			   const float *d_xhat, const float *vals, const float *junk, SparseOut *out)
{
	Dev			d = {.be = be};
	int32_t    *RP = dev_put(&d, l->row_ptr, sizeof(int32_t) * (OB + 1)),
			   *CI = dev_put(&d, l->col_idx, sizeof(int32_t) * (l->nnz + 1)),
			   *CP = dev_put(&d, l->col_ptr, sizeof(int32_t) * (OM + 1)),
			   *RI = dev_put(&d, l->row_idx, sizeof(int32_t) * (l->nnz + 1));
	float	   *F = dev_put(&d, f, sizeof(float) * OB * OM),
			   *W = dev_put(&d, w_dec, sizeof(float) * OM * OD),
			   *G = dev_put(&d, d_xhat, sizeof(float) * OB * OD),
			   *V = dev_put(&d, vals, sizeof(float) * OB * OM),
			   *XH = dev_put(&d, junk, sizeof(float) * OB * OD),
			   *DH = dev_put(&d, junk, sizeof(float) * OB * OM),
			   *GR = dev_put(&d, junk, sizeof(float) * OM * OD);

	be->sparse_decode(be, RP, CI, F, W, XH, OB, OM, OD);
	dev_get(&d, out->x_hat, XH, sizeof(float) * OB * OD);
	be->sparse_backprop(be, RP, CI, G, W, DH, OB, OM, OD);
	dev_get(&d, out->dh, DH, sizeof(float) * OB * OM);
	be->sparse_weight_grad(be, CP, RI, F, G, GR, OB, OM, OD);
	dev_get(&d, out->grad_f, GR, sizeof(float) * OM * OD);
	be->sparse_weight_grad(be, CP, RI, V, G, GR, OB, OM, OD);
	dev_get(&d, out->grad_v, GR, sizeof(float) * OM * OD);
	dev_done(&d, "sparse ops");
}

/* sparsify's lists exactly (and its capacity check), then the sparse products on those lists. */
static void
check_sparse(SaeBackend *gpu, SaeBackend *cpu)
{
	float	   *f = sparse_f();
	int64_t		nnz = 0;
	Lists		want,
				got,
				small;

	for (size_t k = 0; k < OB * OM; k++)
		nnz += f[k] > 0;
	want = new_lists(nnz);
	got = new_lists(nnz);
	small = new_lists(nnz);

	/* one entry too few: -1 on both */
	CHECK_INT_EQ(run_sparsify(cpu, f, nnz - 1, &small), -1);
	CHECK_INT_EQ(run_sparsify(gpu, f, nnz - 1, &small), -1);
	/* exactly enough: the same lists */
	CHECK_INT_EQ(run_sparsify(cpu, f, nnz, &want), nnz);
	CHECK_INT_EQ(run_sparsify(gpu, f, nnz, &got), nnz);
	if (want.nnz != nnz || got.nnz != nnz)
		return;
	equal_i32("sparsify row_ptr", got.row_ptr, want.row_ptr, OB + 1);
	equal_i32("sparsify col_idx", got.col_idx, want.col_idx, nnz);
	equal_i32("sparsify col_ptr", got.col_ptr, want.col_ptr, OM + 1);
	equal_i32("sparsify row_idx", got.row_idx, want.row_idx, nnz);

	/* the sparse products, on the CPU's lists (checked equal above) */
	{
		float	   *w_dec = normals(OM * OD, 810, 0.2f, 0.0f),
				   *d_xhat = normals(OB * OD, 811, 1e-2f, 0.0f),
				   *vals = normals(OB * OM, 812, 1e-3f, 0.0f),
				   *junk = normals(OB * OM > OM * OD ? OB * OM : OM * OD, 813, 7.0f, 0.0f),
				   *lw = host_floats(nnz),
				   *lg = host_floats(nnz);
		SparseOut	sw = {host_floats(OB * OD), host_floats(OB * OM), host_floats(OM * OD), host_floats(OM * OD)},
					sg = {host_floats(OB * OD), host_floats(OB * OM), host_floats(OM * OD), host_floats(OM * OD)};

		run_sparse_ops(cpu, &want, f, w_dec, d_xhat, vals, junk, &sw);
		run_sparse_ops(gpu, &want, f, w_dec, d_xhat, vals, junk, &sg);
		close_f("sparse_decode", sg.x_hat, sw.x_hat, OB * OD, TOL);
		/* dh is defined at the listed entries only */
		for (int b = 0; b < OB; b++)
			for (int32_t k = want.row_ptr[b]; k < want.row_ptr[b + 1]; k++)
			{
				size_t		at = (size_t) b * OM + want.col_idx[k];

				lw[k] = sw.dh[at];
				lg[k] = sg.dh[at];
			}
		close_f("sparse_backprop (listed entries)", lg, lw, nnz, TOL);
		close_f("sparse_weight_grad (vals f)", sg.grad_f, sw.grad_f, OM * OD, TOL);
		close_f("sparse_weight_grad (vals dh)", sg.grad_v, sw.grad_v, OM * OD, TOL);
	}
}

/* Three Adam steps (t = 1, 2, 3) from zero moments. */
static void
run_adam(SaeBackend *be, size_t n, const float *p0, float *const grads[3], double lr,
		 double beta1, double beta2, float *p, float *m1, float *m2)
{
	Dev			d = {.be = be};
	float	   *P = dev_put(&d, p0, sizeof(float) * n),
			   *G = dev_put(&d, NULL, sizeof(float) * n),
			   *M1 = dev_put(&d, NULL, sizeof(float) * n),
			   *M2 = dev_put(&d, NULL, sizeof(float) * n);

	for (int t = 1; t <= 3; t++)
	{
		be->to_device(be, G, grads[t - 1], sizeof(float) * n);
		be->adam(be, P, G, M1, M2, n, lr, beta1, beta2, 1e-8, t);
	}
	dev_get(&d, p, P, sizeof(float) * n);
	dev_get(&d, m1, M1, sizeof(float) * n);
	dev_get(&d, m2, M2, sizeof(float) * n);
	dev_done(&d, "adam");
}

/* Three Adam steps for two sets of hyperparameters: parameters, moments and the updates. */
static void
check_adam(SaeBackend *gpu, SaeBackend *cpu)
{
	/* beta1 0.9 (m += w (g - m)) and 0 (SAELens v1's default, the other branch) */
	static const double hyper[2][3] = {{1e-2, 0.9, 0.999}, {3e-3, 0.0, 0.99}};
	const size_t n = 2053;
	float	   *p0 = normals(n, 900, 1.0f, 0.0f),
			   *grads[3];

	for (int t = 0; t < 3; t++)
		grads[t] = normals(n, 901 + t, 0.1f, 0.0f);
	for (int c = 0; c < 2; c++)
	{
		float	   *pw = host_floats(n),
				   *m1w = host_floats(n),
				   *m2w = host_floats(n),
				   *pg = host_floats(n),
				   *m1g = host_floats(n),
				   *m2g = host_floats(n);
		char		what[64];

		run_adam(cpu, n, p0, grads, hyper[c][0], hyper[c][1], hyper[c][2], pw, m1w, m2w);
		run_adam(gpu, n, p0, grads, hyper[c][0], hyper[c][1], hyper[c][2], pg, m1g, m2g);
		snprintf(what, sizeof(what), "adam (beta1 %g) param", hyper[c][1]);
		close_f(what, pg, pw, n, TOL);
		snprintf(what, sizeof(what), "adam (beta1 %g) m1", hyper[c][1]);
		close_f(what, m1g, m1w, n, TOL);
		snprintf(what, sizeof(what), "adam (beta1 %g) m2", hyper[c][1]);
		close_f(what, m2g, m2w, n, TOL);
		/* the updates themselves, not only the parameters they move */
		for (size_t i = 0; i < n; i++)
		{
			pw[i] -= p0[i];
			pg[i] -= p0[i];
		}
		snprintf(what, sizeof(what), "adam (beta1 %g) param - start", hyper[c][1]);
		close_f(what, pg, pw, n, TOL);
	}
}

/* One Weiszfeld step from mu: new_mu into out, the objective returned. */
static double
run_weiszfeld(SaeBackend *be, const float *x, int64_t n, const float *mu, float *out)
{
	Dev			d = {.be = be};
	float	   *X = dev_put(&d, x, sizeof(float) * n * OD),
			   *MU = dev_put(&d, mu, sizeof(float) * OD),
			   *NEW = dev_put(&d, NULL, sizeof(float) * OD);
	double		obj = be->weiszfeld_step(be, X, n, OD, MU, NEW, 1e-6);

	dev_get(&d, out, NEW, sizeof(float) * OD);
	dev_done(&d, "weiszfeld_step");
	return obj;
}

/* A Weiszfeld step from a data point (the eps guard) and from near the mean. */
static void
check_weiszfeld(SaeBackend *gpu, SaeBackend *cpu)
{
	const int64_t n = 601;
	float	   *x = normals(n * OD, 950, 1.0f, 0.0f),
			   *mu = host_floats(OD),
			   *want = host_floats(OD),
			   *got = host_floats(OD);

	for (int64_t t = 0; t < n; t++)
		for (int j = 0; j < OD; j++)
			x[t * OD + j] += 0.03f * j;
	for (int c = 0; c < 2; c++)
	{
		double		ow,
					og;

		/* mu on a data point (its weight is 1/eps), then near the mean */
		for (int j = 0; j < OD; j++)
		{
			double		s = 0;

			for (int64_t t = 0; t < n; t++)
				s += x[t * OD + j];
			mu[j] = c == 0 ? x[7 * OD + j] : (float) (s / n) + 0.01f;
		}
		ow = run_weiszfeld(cpu, x, n, mu, want);
		og = run_weiszfeld(gpu, x, n, mu, got);
		close_f(c == 0 ? "weiszfeld_step new_mu (mu on a point)" : "weiszfeld_step new_mu",
				got, want, OD, TOL);
		close_d(c == 0 ? "weiszfeld_step objective (mu on a point)" : "weiszfeld_step objective",
				og, ow, TOL_SUM, 1e-12);
	}
}

/* Every op of the SAE training step, CPU vs CUDA on the same inputs. */
UNIT_TEST(ops_match_cpu)
{
	SaeBackend *gpu = cuda_or_skip(false),
			   *cpu;

	if (!gpu)
		return;
	cpu = test_backend();
	worst_reset();
	check_fill_copy(gpu, cpu);
	check_gemm(gpu, cpu);
	check_gather(gpu, cpu);
	check_add_row_vector(gpu, cpu);
	check_col_sum(gpu, cpu);
	check_rows(gpu, cpu);
	check_encode(gpu, cpu);
	check_mse(gpu, cpu);
	check_act_backward(gpu, cpu);
	check_fire_stats(gpu, cpu);
	check_ghost(gpu, cpu);
	check_sparse(gpu, cpu);
	check_adam(gpu, cpu);
	check_weiszfeld(gpu, cpu);
	backend_ok(gpu, "the op tests");
	worst_note("ops");
	host_free_all();
	gpu->destroy(gpu);
	cpu->destroy(cpu);
}

/* ---------------------------------------------------------------------- */
/* The language-model ops                                                   */
/* ---------------------------------------------------------------------- */

/* layernorm on be: y, and hook_scale (zeros if not asked for). */
static void
run_layernorm(SaeBackend *be, const float *x, int rows, int cols, bool with_scale, float *y, float *scale)
{
	Dev			d = {.be = be};
	float	   *X = dev_put(&d, x, sizeof(float) * rows * cols),
			   *Y = dev_put(&d, NULL, sizeof(float) * rows * cols),
			   *S = dev_put(&d, NULL, sizeof(float) * rows);

	be->layernorm(be, Y, with_scale ? S : NULL, X, rows, cols, 1e-5f);
	dev_get(&d, y, Y, sizeof(float) * rows * cols);
	dev_get(&d, scale, S, sizeof(float) * rows);
	dev_done(&d, "layernorm");
}

/* LayerNorm with and without hook_scale, rows narrower and wider than a block of threads. */
static void
check_layernorm(SaeBackend *gpu, SaeBackend *cpu)
{
	/* 300 columns: more than one block of threads per row */
	static const int shapes[3][3] = {{OB, OD, 1}, {5, OM, 1}, {OB, OD, 0}};

	for (int s = 0; s < 3; s++)
	{
		int			rows = shapes[s][0],
					cols = shapes[s][1];
		bool		with_scale = shapes[s][2] != 0;
		float	   *x = normals((size_t) rows * cols, 1000 + s, 2.0f, 3.0f),
				   *yw = host_floats((size_t) rows * cols),
				   *yg = host_floats((size_t) rows * cols),
				   *sw = host_floats(rows),
				   *sg = host_floats(rows);
		char		what[96];

		run_layernorm(cpu, x, rows, cols, with_scale, yw, sw);
		run_layernorm(gpu, x, rows, cols, with_scale, yg, sg);
		snprintf(what, sizeof(what), "layernorm %dx%d%s", rows, cols, with_scale ? "" : " (no scale)");
		close_f(what, yg, yw, (size_t) rows * cols, TOL);
		snprintf(what, sizeof(what), "layernorm %dx%d scale", rows, cols);
		if (with_scale)
			close_f(what, sg, sw, rows, TOL);
		else
			equal_f(what, sg, sw, rows);	/* untouched zeros */
	}
}

/* scale_shift of an OB x OD matrix. */
static void
run_scale_shift(SaeBackend *be, const float *y0, const float *w, const float *b, float *out)
{
	Dev			d = {.be = be};
	float	   *Y = dev_put(&d, y0, sizeof(float) * OB * OD),
			   *W = dev_put(&d, w, sizeof(float) * OD),
			   *Bv = dev_put(&d, b, sizeof(float) * OD);

	be->scale_shift(be, Y, W, Bv, OB, OD);
	dev_get(&d, out, Y, sizeof(float) * OB * OD);
	dev_done(&d, "scale_shift");
}

/* lm_activation out of place, then in place (y = x). */
static void
run_lm_activation(SaeBackend *be, const float *x, size_t n, SaeLmAct act, float *out, float *in_place)
{
	Dev			d = {.be = be};
	float	   *X = dev_put(&d, x, sizeof(float) * n),
			   *Y = dev_put(&d, NULL, sizeof(float) * n);

	be->lm_activation(be, Y, X, n, act);
	dev_get(&d, out, Y, sizeof(float) * n);
	be->lm_activation(be, X, X, n, act);
	dev_get(&d, in_place, X, sizeof(float) * n);
	dev_done(&d, "lm_activation");
}

/* add into a third buffer, then in place (dst = a). */
static void
run_add(SaeBackend *be, const float *a, const float *b, size_t n, float *out, float *in_place)
{
	Dev			d = {.be = be};
	float	   *A = dev_put(&d, a, sizeof(float) * n),
			   *Bv = dev_put(&d, b, sizeof(float) * n),
			   *D = dev_put(&d, NULL, sizeof(float) * n);

	be->add(be, D, A, Bv, n);
	dev_get(&d, out, D, sizeof(float) * n);
	be->add(be, A, A, Bv, n);
	dev_get(&d, in_place, A, sizeof(float) * n);
	dev_done(&d, "add");
}

/* scale_shift, the three MLP nonlinearities (tails included) and add, in place and not. */
static void
check_elementwise_lm(SaeBackend *gpu, SaeBackend *cpu)
{
	static const SaeLmAct acts[3] = {SAE_LM_GELU_NEW, SAE_LM_GELU, SAE_LM_RELU};
	static const char *const act_names[3] = {"gelu_new", "gelu", "relu"};
	const size_t n = 5003;
	float	   *y0 = normals(OB * OD, 1100, 1.0f, 0.0f),
			   *w = normals(OD, 1101, 0.5f, 1.0f),
			   *b = normals(OD, 1102, 0.5f, 0.0f),
			   *x = normals(n, 1103, 3.0f, 0.0f),
			   *a2 = normals(n, 1104, 1.0f, 0.0f),
			   *want = host_floats(n),
			   *got = host_floats(n),
			   *want2 = host_floats(n),
			   *got2 = host_floats(n);

	run_scale_shift(cpu, y0, w, b, want);
	run_scale_shift(gpu, y0, w, b, got);
	close_f("scale_shift", got, want, OB * OD, TOL);

	for (size_t i = 0; i < n; i += 97)
		x[i] = i % 2 ? 12.0f : -12.0f;	/* the tails */
	for (int k = 0; k < 3; k++)
	{
		char		what[64];

		run_lm_activation(cpu, x, n, acts[k], want, want2);
		run_lm_activation(gpu, x, n, acts[k], got, got2);
		snprintf(what, sizeof(what), "lm_activation %s", act_names[k]);
		close_f(what, got, want, n, TOL);
		snprintf(what, sizeof(what), "lm_activation %s (in place)", act_names[k]);
		close_f(what, got2, want2, n, TOL);
	}

	run_add(cpu, x, a2, n, want, want2);
	run_add(gpu, x, a2, n, got, got2);
	close_f("add", got, want, n, TOL);
	close_f("add (in place)", got2, want2, n, TOL);
}

/* attn_mask, then softmax_rows of the masked scores into a second buffer. */
static void
run_mask_softmax(SaeBackend *be, const float *s0, int Tq, int H, int Tk, int q_offset,
				 float divisor, int window, float *masked, float *pattern)
{
	Dev			d = {.be = be};
	size_t		n = (size_t) Tq * H * Tk;
	float	   *S = dev_put(&d, s0, sizeof(float) * n),
			   *P = dev_put(&d, NULL, sizeof(float) * n);

	be->attn_mask(be, S, Tq, H, Tk, q_offset, divisor, window);
	dev_get(&d, masked, S, sizeof(float) * n);
	be->softmax_rows(be, P, S, Tq * H, Tk);
	dev_get(&d, pattern, P, sizeof(float) * n);
	dev_done(&d, "attn_mask + softmax_rows");
}

/* softmax_rows alone, of rows that attn_mask cannot make (all -inf, huge values). */
static void
run_softmax(SaeBackend *be, const float *s, int rows, int cols, float *out)
{
	Dev			d = {.be = be};
	float	   *S = dev_put(&d, s, sizeof(float) * rows * cols),
			   *P = dev_put(&d, NULL, sizeof(float) * rows * cols);

	be->softmax_rows(be, P, S, rows, cols);
	dev_get(&d, out, P, sizeof(float) * rows * cols);
	dev_done(&d, "softmax_rows");
}

/* The unfused attention path: causal, offset and windowed masks, and softmax edge rows. */
static void
check_mask_softmax(SaeBackend *gpu, SaeBackend *cpu)
{
	/* Tq, H, Tk, q_offset, window */
	static const int cases[][5] = {
		{19, 3, 19, 0, 0},		/* causal */
		{5, 3, 24, 19, 0},		/* a later chunk: q_offset > 0 */
		{19, 3, 19, 0, 5},		/* GPT-Neo's local window */
		{1, 3, 24, 23, 8},		/* one cached step, windowed */
		{3, 2, OM, OM - 3, 0},	/* rows longer than a block of threads */
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		int			Tq = cases[c][0],
					H = cases[c][1],
					Tk = cases[c][2],
					off = cases[c][3],
					win = cases[c][4];
		size_t		n = (size_t) Tq * H * Tk;
		float	   *s0 = normals(n, 1200 + c, 3.0f, 0.0f),
				   *mw = host_floats(n),
				   *mg = host_floats(n),
				   *pw = host_floats(n),
				   *pg = host_floats(n);
		char		what[128];

		run_mask_softmax(cpu, s0, Tq, H, Tk, off, sqrtf(8.0f), win, mw, pw);
		run_mask_softmax(gpu, s0, Tq, H, Tk, off, sqrtf(8.0f), win, mg, pg);
		snprintf(what, sizeof(what), "attn_mask (Tq %d, H %d, Tk %d, q_offset %d, window %d)",
				 Tq, H, Tk, off, win);
		close_f(what, mg, mw, n, TOL);
		snprintf(what, sizeof(what), "softmax_rows (Tq %d, H %d, Tk %d, q_offset %d, window %d)",
				 Tq, H, Tk, off, win);
		close_f(what, pg, pw, n, TOL);
	}

	{
		const int	rows = 7,
					cols = OM;
		float	   *s = normals((size_t) rows * cols, 1250, 2.0f, 0.0f),
				   *want = host_floats((size_t) rows * cols),
				   *got = host_floats((size_t) rows * cols);

		for (int j = 0; j < cols; j++)
		{
			s[2 * cols + j] = -INFINITY;	/* all masked: zeros */
			if (j % 2)
				s[4 * cols + j] = -INFINITY;
			s[5 * cols + j] *= 40.0f;	/* exp overflows without the max */
		}
		run_softmax(cpu, s, rows, cols, want);
		run_softmax(gpu, s, rows, cols, got);
		close_f("softmax_rows (masked and large rows)", got, want, (size_t) rows * cols, TOL);
	}
}

/* One attention call: z for B sequences. */
static bool
run_attention(SaeBackend *be, const float *q, const float *k, const float *v, const float *junk,
			  int B, int Tq, int Tk, int H, int D, int q_offset, int window, float *z)
{
	Dev			d = {.be = be};
	size_t		C = (size_t) H * D;
	float	   *Q = dev_put(&d, q, sizeof(float) * B * Tq * C),
			   *K = dev_put(&d, k, sizeof(float) * B * Tk * C),
			   *V = dev_put(&d, v, sizeof(float) * B * Tk * C),
			   *Z = dev_put(&d, junk, sizeof(float) * B * Tq * C);
	bool		ok = be->attention(be, Z, Q, K, V, B, Tq, Tk, H, D, q_offset, sqrtf((float) D), window);

	dev_get(&d, z, Z, sizeof(float) * B * Tq * C);
	dev_done(&d, "attention");
	return ok;
}

/* The fused attention: full, windowed, KV-cache steps and a chunk after cached positions. */
static void
check_attention(SaeBackend *gpu, SaeBackend *cpu)
{
	/* B, Tq, Tk, H, D, q_offset, window */
	static const int cases[][7] = {
		{2, 19, 19, 3, 8, 0, 0},	/* causal */
		{2, 19, 19, 3, 8, 0, 5},	/* local window */
		{1, 1, 19, 3, 8, 18, 0},	/* a KV-cache step */
		{1, 1, 19, 3, 8, 18, 5},
		{2, 5, 24, 3, 8, 19, 0},	/* a chunk after 19 cached positions */
		{1, 70, 70, 2, 16, 0, 8},	/* more than one block of 64 queries on the CPU */
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		int			B = cases[c][0],
					Tq = cases[c][1],
					Tk = cases[c][2],
					H = cases[c][3],
					D = cases[c][4],
					off = cases[c][5],
					win = cases[c][6];
		size_t		nq = (size_t) B * Tq * H * D,
					nk = (size_t) B * Tk * H * D;
		float	   *q = normals(nq, 1300 + 4 * c, 1.0f, 0.0f),
				   *k = normals(nk, 1301 + 4 * c, 1.0f, 0.0f),
				   *v = normals(nk, 1302 + 4 * c, 1.0f, 0.0f),
				   *junk = normals(nq, 1303 + 4 * c, 9.0f, 0.0f),
				   *zw = host_floats(nq),
				   *zg = host_floats(nq);
		char		what[128];
		bool		okw,
					okg;

		okw = run_attention(cpu, q, k, v, junk, B, Tq, Tk, H, D, off, win, zw);
		okg = run_attention(gpu, q, k, v, junk, B, Tq, Tk, H, D, off, win, zg);
		snprintf(what, sizeof(what), "attention (B %d, Tq %d, Tk %d, H %d, D %d, q_offset %d, window %d)",
				 B, Tq, Tk, H, D, off, win);
		CHECK_MSG(okw && okg, "%s returned false (cpu %d, cuda %d)", what, okw, okg);
		close_f(what, zg, zw, nq, TOL);
	}
}

/* LayerNorm, the MLP nonlinearities, adds, the attention mask, softmax and attention. */
UNIT_TEST(lm_ops_match_cpu)
{
	SaeBackend *gpu = cuda_or_skip(false),
			   *cpu;

	if (!gpu)
		return;
	cpu = test_backend();
	worst_reset();
	check_layernorm(gpu, cpu);
	check_elementwise_lm(gpu, cpu);
	check_mask_softmax(gpu, cpu);
	check_attention(gpu, cpu);
	backend_ok(gpu, "the LM op tests");
	worst_note("LM ops");
	host_free_all();
	gpu->destroy(gpu);
	cpu->destroy(cpu);
}

/* ---------------------------------------------------------------------- */
/* Training                                                                 */
/* ---------------------------------------------------------------------- */

#define TR_D 64
#define TR_M 256
#define TR_B 128
#define TR_STEPS 30
#define TR_MEDIAN_ROWS 512

/*
 * The recipes: unit_norm_sae with b_dec on the input and plain L1 (the
 * dense path); the same with dense_batch MSE and ghost grads, a quarter of
 * the features dead from the start (b_enc -5) and no b_dec on the input;
 * tanh_sae with noise, lp 2 and l2_squared on the sparse path.
 */
typedef enum Recipe
{
	RECIPE_RELU,
	RECIPE_GHOST,
	RECIPE_TANH
} Recipe;

typedef struct TrainCase
{
	const char *name;
	Recipe		recipe;
	double		sparse_density; /* < 0: the trainer's own choice */
} TrainCase;

/*
 * What one run leaves: per-step metrics, the b_dec init's objective, the
 * final parameters, and the gradients of the first step with ghost grads.
 */
typedef struct TrainOut
{
	float	   *p[4];
	float	   *g[4];
	int			ghost_step;		/* -1: none */
	SaeStepStats st[TR_STEPS];
	double		median_objective;
	int			sparse_steps;
} TrainOut;

static const char *const param_names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};

/* Floats in parameter k (W_enc, b_enc, W_dec, b_dec). */
static size_t
param_size(int k)
{
	static const size_t sizes[4] = {(size_t) TR_D * TR_M, TR_M, (size_t) TR_M * TR_D, TR_D};

	return sizes[k];
}

/* The ghost recipe's features that start dead (and stay dead: b_enc -5 barely moves in 30 steps). */
static bool
starts_dead(const TrainCase *tc, int i)
{
	return tc->recipe == RECIPE_GHOST && i % 4 == 0;
}

/* The case's config: TR_STEPS steps of TR_B rows. */
static bool
train_config(const TrainCase *tc, SaeConfig *c)
{
	bool		ok = true;

	cfg_base(c);
	ok &= cfg_num(c, "d_in", TR_D);
	ok &= cfg_num(c, "d_sae", TR_M);
	ok &= cfg_num(c, "train_batch_size", TR_B);
	ok &= cfg_num(c, "total_training_tokens", (double) TR_B * TR_STEPS);
	ok &= cfg_num(c, "lr", 1e-3);
	ok &= cfg_num(c, "lr_warm_up_steps", 3);
	ok &= cfg_num(c, "l1_coefficient", 1e-3);
	ok &= cfg_num(c, "seed", 7);
	switch (tc->recipe)
	{
		case RECIPE_RELU:
			ok &= cfg_str(c, "sae_type", "unit_norm_sae");
			ok &= cfg_bool(c, "apply_b_dec_to_input", true);
			ok &= cfg_str(c, "b_dec_init_method", "geometric_median");
			break;
		case RECIPE_GHOST:
			ok &= cfg_str(c, "sae_type", "unit_norm_sae");
			/* with b_dec on the input, the ghost gradient of b_enc reaches b_dec and every feature */
			ok &= cfg_bool(c, "apply_b_dec_to_input", false);
			ok &= cfg_str(c, "mse_loss_normalization", "dense_batch");
			ok &= cfg_bool(c, "use_ghost_grads", true);
			ok &= cfg_num(c, "dead_feature_window", 3);
			ok &= cfg_num(c, "adam_beta1", 0.9);
			ok &= cfg_str(c, "b_dec_init_method", "geometric_median");
			break;
		case RECIPE_TANH:
			ok &= cfg_str(c, "sae_type", "tanh_sae");
			ok &= cfg_num(c, "noise_scale", 0.3);
			ok &= cfg_num(c, "lp_norm", 2);
			ok &= cfg_str(c, "l1_loss_normalization", "l2_squared");
			ok &= cfg_str(c, "b_dec_init_method", "mean");
			break;
	}
	return ok && cfg_finish(c);
}

/* The starting point: the CPU trainer's seeded init, with the case's b_enc. */
static bool
initial_params(const SaeConfig *c, const TrainCase *tc, SaeBackend *cpu, float *p[4])
{
	SaeTrainer *t = NULL;
	SaeError	err = {0};

	if (sae_trainer_create(c, cpu, TR_B, &t, &err) != SAE_OK ||
		sae_trainer_init_params(t, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "%s: initial parameters: %s", tc->name, err.message);
		if (t)
			sae_trainer_destroy(t);
		return false;
	}
	sae_trainer_get_params(t, p[0], p[1], p[2], p[3]);
	sae_trainer_destroy(t);
	for (int i = 0; i < TR_M; i++)
		p[1][i] = tc->recipe == RECIPE_TANH ? -0.3f : starts_dead(tc, i) ? -5.0f : 0.0f;
	return true;
}

/* b_dec from the first rows, then TR_STEPS steps; the final parameters into out. */
static bool
train_on(SaeBackend *be, const SaeConfig *c, const TrainCase *tc, float *const init[4],
		 const float *x_all, TrainOut *out)
{
	SaeTrainer *t = NULL;
	SaeError	err = {0};
	float	   *xd = NULL;
	bool		ok = false;

	for (int k = 0; k < 4; k++)
	{
		out->p[k] = host_floats(param_size(k));
		out->g[k] = host_floats(param_size(k));
	}
	out->sparse_steps = 0;
	out->ghost_step = -1;
	if (sae_trainer_create(c, be, TR_B, &t, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "%s on %s: sae_trainer_create: %s", tc->name, be->name, err.message);
		return false;
	}
	if (tc->sparse_density >= 0 && sae_trainer_set_sparse_density(t, tc->sparse_density, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "%s on %s: set_sparse_density: %s", tc->name, be->name, err.message);
		goto done;
	}
	xd = be->alloc(be, sizeof(float) * TR_MEDIAN_ROWS * TR_D);
	if (xd == NULL)
	{
		unit_fail(__FILE__, __LINE__, "%s on %s: no memory for the batch", tc->name, be->name);
		goto done;
	}
	sae_trainer_set_params(t, init[0], init[1], init[2], init[3]);
	be->to_device(be, xd, x_all, sizeof(float) * TR_MEDIAN_ROWS * TR_D);
	if (sae_trainer_init_b_dec(t, xd, TR_MEDIAN_ROWS, &out->median_objective, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "%s on %s: init_b_dec: %s", tc->name, be->name, err.message);
		goto done;
	}
	if (!backend_ok(be, "b_dec initialisation"))
		goto done;
	for (int k = 0; k < TR_STEPS; k++)
	{
		be->to_device(be, xd, x_all + (size_t) k * TR_B * TR_D, sizeof(float) * TR_B * TR_D);
		sae_trainer_step(t, xd, TR_B, &out->st[k]);
		out->sparse_steps += out->st[k].sparse_path;
		if (out->ghost_step < 0 && out->st[k].ghost_grad_loss != 0)
		{
			out->ghost_step = k;
			sae_trainer_get_grads(t, out->g[0], out->g[1], out->g[2], out->g[3]);
		}
		if (!backend_ok(be, "a training step"))
			goto done;
	}
	sae_trainer_get_params(t, out->p[0], out->p[1], out->p[2], out->p[3]);
	ok = backend_ok(be, "reading the parameters");
done:
	if (xd)
		be->free(be, xd);
	sae_trainer_destroy(t);
	return ok;
}

/*
 * ||a - b|| / ||b|| over the entries of parameter k that belong to
 * features with starts_dead() == dead (b_dec belongs to no feature: it
 * counts as alive).
 */
static double
rel_err_features(const TrainCase *tc, int k, const float *a, const float *b, bool dead)
{
	double		num = 0,
				den = 0;

	for (size_t e = 0; e < param_size(k); e++)
	{
		/* W_enc is d x m (feature = column), b_enc m, W_dec m x d (feature = row) */
		int			i = k == 0 ? (int) (e % TR_M) : k == 1 ? (int) e : k == 2 ? (int) (e / TR_D) : -1;
		bool		is_dead = i >= 0 && starts_dead(tc, i);
		double		diff = (double) a[e] - b[e];

		if (is_dead != dead)
			continue;
		num += diff * diff;
		den += (double) b[e] * b[e];
	}
	return sqrt(num) / fmax(sqrt(den), 1e-30);
}

#define N_METRICS 6

/* A step's metrics compared relatively, in the order of compare_runs' names. */
static void
step_metrics(const SaeStepStats *st, double *v)
{
	v[0] = st->mse_loss;
	v[1] = st->l1_loss;
	v[2] = st->explained_variance;
	v[3] = st->l2_norm;
	v[4] = st->ghost_grad_loss;
	v[5] = st->overall_loss;
}

/*
 * How close a GPU run must be.  The ghost recipe gets more room where the
 * ghost grads reach: SAELens's ghost loss has a gradient of r^2 / (y c - r)
 * per element, so wherever y c is close to r an ulp (an FMA on the GPU)
 * moves it by 1e-3, and Adam then turns such differences into whole steps.
 * With simulated rounding noise on every GEMM output (2e-7 for float32,
 * 1e-3 for TF32) the dead features' gradients at the first ghost step
 * differed by up to 1.4e-4 (float32) and 0.2 (TF32), their final W_enc by
 * 2.5e-2 and 5e-2; a missing ghost gradient gives 1 and 0.1.  Alive
 * features never see the ghost gradient: they stay within strict.
 */
typedef struct TrainTol
{
	double		strict;			/* metrics, parameters and gradients of everything else */
	double		ghost_loss;		/* per-step ghost_grad_loss and overall_loss */
	double		ghost_grad;		/* dead features' gradients at the first ghost step */
	double		dead_params;	/* dead features' final parameters (a gross check) */
} TrainTol;

/* A GPU run against the CPU run: per-step metrics, gradients at the first ghost step, final parameters. */
static void
compare_runs(const char *label, const TrainCase *tc, const TrainOut *got, const TrainOut *want,
			 const TrainTol *tt)
{
	static const char *const names[N_METRICS] = {"mse_loss", "l1_loss", "explained_variance",
	"l2_norm", "ghost_grad_loss", "overall_loss"};
	/* relative errors floored here: the ghost loss is 0 before any feature is dead, EV is O(1) */
	static const double floors[N_METRICS] = {1e-3, 1e-3, 1, 1e-3, 1e-3, 1e-3};
	bool		ghost = tc->recipe == RECIPE_GHOST;
	double		worst[N_METRICS] = {0},
				worst_l0 = 0;
	int			worst_step[N_METRICS] = {0},
				worst_l0_step = 0;
	char		params[512] = "";
	size_t		used = 0;

	for (int k = 0; k < TR_STEPS; k++)
	{
		double		gv[N_METRICS],
					wv[N_METRICS];

		step_metrics(&got->st[k], gv);
		step_metrics(&want->st[k], wv);
		for (int q = 0; q < N_METRICS; q++)
		{
			double		err = fabs(gv[q] - wv[q]) / fmax(fabs(wv[q]), floors[q]);

			if (!(err <= worst[q]))
			{
				worst[q] = isnan(err) ? INFINITY : err;
				worst_step[q] = k;
			}
		}
		/* l0 in entries of the batch: a pre-activation within rounding of 0 may fire on one side only */
		if (!(fabs(got->st[k].l0 - want->st[k].l0) * TR_B <= worst_l0))
		{
			worst_l0 = fabs(got->st[k].l0 - want->st[k].l0) * TR_B;
			worst_l0_step = k;
			if (isnan(worst_l0))
				worst_l0 = INFINITY;
		}
	}
	for (int q = 0; q < N_METRICS; q++)
	{
		double		gv[N_METRICS],
					wv[N_METRICS],
					t = ghost && q >= 4 ? tt->ghost_loss : tt->strict;

		step_metrics(&got->st[worst_step[q]], gv);
		step_metrics(&want->st[worst_step[q]], wv);
		CHECK_MSG(worst[q] <= t, "%s %s at step %d: got %.9g, want %.9g (relative error %.3g > %g)",
				  label, names[q], worst_step[q], gv[q], wv[q], worst[q], t);
	}
	CHECK_MSG(worst_l0 <= fmax(3, tt->strict * want->st[worst_l0_step].l0 * TR_B),
			  "%s l0 at step %d: got %.9g, want %.9g (%g entries of the batch)", label, worst_l0_step,
			  got->st[worst_l0_step].l0, want->st[worst_l0_step].l0, worst_l0);
	CHECK_MSG(fabs(got->median_objective - want->median_objective) <= 1e-5 * fabs(want->median_objective),
			  "%s b_dec init objective: got %.17g, want %.17g", label, got->median_objective,
			  want->median_objective);
	/* the first ghost step's gradients: one step from (nearly) equal parameters, no Adam in between */
	CHECK_MSG(got->ghost_step == want->ghost_step, "%s: first ghost step %d, want %d", label,
			  got->ghost_step, want->ghost_step);
	if (ghost && got->ghost_step == want->ghost_step && want->ghost_step >= 0)
	{
		for (int k = 0; k < 3; k++)
			for (int dead = 0; dead <= 1; dead++)
			{
				double		rel = rel_err_features(tc, k, got->g[k], want->g[k], dead),
							t = dead ? tt->ghost_grad : tt->strict;
				int			n = snprintf(params + used, sizeof(params) - used, " grad %s%s %.1e",
										 param_names[k], dead ? " (dead)" : " (alive)", rel);

				if (n > 0 && (size_t) n < sizeof(params) - used)
					used += n;
				CHECK_MSG(rel <= t, "%s gradient of %s%s at step %d: ||gpu - cpu|| / ||cpu|| = %.3g > %g",
						  label, param_names[k], dead ? " of the dead features" : "", want->ghost_step, rel, t);
			}
	}
	for (int k = 0; k < 4; k++)
	{
		for (int dead = 0; dead <= (ghost && k < 3); dead++)
		{
			double		rel = rel_err_features(tc, k, got->p[k], want->p[k], dead),
						t = dead ? tt->dead_params : tt->strict;
			int			n = snprintf(params + used, sizeof(params) - used, " %s%s %.1e", param_names[k],
									 dead ? " (dead)" : ghost && k < 3 ? " (alive)" : "", rel);

			if (n > 0 && (size_t) n < sizeof(params) - used)
				used += n;
			CHECK_MSG(rel <= t, "%s final %s%s: ||gpu - cpu|| / ||cpu|| = %.3g > %g", label,
					  param_names[k], dead ? " of the dead features" : "", rel, t);
		}
	}
	unit_note("%s: per-step rel err mse %.1e l1 %.1e ev %.1e l2 %.1e ghost %.1e overall %.1e, l0 %g entries; tensors:%s",
			  label, worst[0], worst[1], worst[2], worst[3], worst[4], worst[5], worst_l0, params);
}

/*
 * TR_STEPS steps of each recipe on the CPU, on CUDA in float32 and on CUDA
 * with TF32 GEMMs; the runs must agree to 1e-4 (float32) and 1e-2 (TF32),
 * except where ghost grads make them ill-conditioned (see compare_runs).
 */
UNIT_TEST(training_matches_cpu)
{
	static const TrainCase cases[3] = {
		{"unit_norm relu, b_dec on input", RECIPE_RELU, -1},
		{"unit_norm relu, dense_batch, ghost grads", RECIPE_GHOST, -1},
		{"tanh_sae, noise, lp 2, l2_squared, sparse path", RECIPE_TANH, 1.0},
	};
	static const TrainTol fp32_tol = {1e-4, 1e-2, 1e-2, 1e-1},
				tf32_tol = {1e-2, 1e-2, 0.5, 0.2};
	SaeBackend *gpu = cuda_or_skip(false),
			   *tf32 = NULL,
			   *cpu;
	SaeError	err = {0};
	const char *path = getenv("SAE_CUDA_MODULE");
	float	   *x_all;

	if (!gpu)
		return;
	cpu = test_backend();
	tf32 = sae_backend_cuda_create(path && path[0] ? path : "../../kernels/sae_cuda.so", 0, true, &err);
	CHECK_MSG(tf32 != NULL, "a TF32 CUDA backend: %s", err.message);

	/* N(0, 1) rows around a mean that b_dec must learn */
	x_all = host_floats((size_t) TR_STEPS * TR_B * TR_D);
	for (size_t r = 0; r < (size_t) TR_STEPS * TR_B; r++)
		for (int j = 0; j < TR_D; j++)
			x_all[r * TR_D + j] = sae_normal(SEED, 1500, r * TR_D + j) + 0.5f * sae_normal(SEED, 1501, j);

	for (int c = 0; c < 3; c++)
	{
		const TrainCase *tc = &cases[c];
		SaeConfig	cfg;
		float	   *init[4];
		TrainOut   *want = host_bytes(sizeof(TrainOut)),
				   *got = host_bytes(sizeof(TrainOut));
		char		label[160];
		bool		ghost_seen = false;

		for (int k = 0; k < 4; k++)
			init[k] = host_floats(param_size(k));
		if (!train_config(tc, &cfg) || !initial_params(&cfg, tc, cpu, init) ||
			!train_on(cpu, &cfg, tc, init, x_all, want))
			continue;

		/* the CPU run itself: it learned, and took the paths this case is about */
		for (int k = 0; k < 4; k += 2)
			CHECK_MSG(rel_err_norm_f(init[k], want->p[k], param_size(k)) > 1e-3,
					  "%s: %s barely moved", tc->name, param_names[k]);
		for (int k = 0; k < TR_STEPS; k++)
			ghost_seen |= want->st[k].ghost_grad_loss != 0;
		CHECK_MSG(ghost_seen == (tc->recipe == RECIPE_GHOST), "%s: ghost grads %s", tc->name,
				  ghost_seen ? "ran" : "never ran");
		CHECK_MSG(want->sparse_steps == (tc->recipe == RECIPE_TANH ? TR_STEPS : 0),
				  "%s: %d sparse-path steps", tc->name, want->sparse_steps);

		if (train_on(gpu, &cfg, tc, init, x_all, got))
		{
			snprintf(label, sizeof(label), "%s, float32", tc->name);
			compare_runs(label, tc, got, want, &fp32_tol);
		}
		if (tf32 && train_on(tf32, &cfg, tc, init, x_all, got))
		{
			snprintf(label, sizeof(label), "%s, TF32", tc->name);
			compare_runs(label, tc, got, want, &tf32_tol);
		}
	}
	host_free_all();
	if (tf32)
		tf32->destroy(tf32);
	gpu->destroy(gpu);
	cpu->destroy(cpu);
}

/* ---------------------------------------------------------------------- */
/* The language models                                                      */
/* ---------------------------------------------------------------------- */

#define LM_B 2
#define LM_T 20

/* Hooks captured in the second pass (hooking scores or pattern unfuses that layer's attention). */
static const char *const lm_hooks[] = {
	"blocks.0.hook_resid_pre",
	"blocks.0.attn.hook_pattern",
	"blocks.0.hook_mlp_out",
	"blocks.1.attn.hook_attn_scores",
	"ln_final.hook_normalized",
};

#define N_LM_HOOKS ((int) (sizeof(lm_hooks) / sizeof(lm_hooks[0])))

/* A fixture model on be, or NULL (a failure naming folder and backend). */
static SaeLm *
load_lm(const char *folder, const SaeLmOptions *opt, SaeBackend *be)
{
	char		path[512];
	SaeError	err = {0};
	SaeLm	   *lm = NULL;

	if (sae_lm_load(lm_path(folder, path, sizeof(path)), opt, be, &lm, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "loading %s on the %s backend: %s (%s)", folder, be->name,
				  err.message, err.detail);
		return NULL;
	}
	return lm;
}

/*
 * One forward pass of B sequences of T tokens: logits (if not NULL) and,
 * with hooks, each of lm_hooks into out[i] (host).
 */
static bool
lm_pass(SaeLm *lm, const int32_t *tokens, int B, int T, float *logits, bool hooks, float **out)
{
	SaeLmCapture caps[N_LM_HOOKS];
	SaeLmRequest req = {.tokens = tokens, .B = B, .T = T, .logits = logits};
	SaeError	err = {0};

	if (hooks)
	{
		for (int i = 0; i < N_LM_HOOKS; i++)
		{
			if (sae_hook_parse(lm, lm_hooks[i], &caps[i].hook, &err) != SAE_OK)
			{
				unit_fail(__FILE__, __LINE__, "%s: %s", lm_hooks[i], err.message);
				return false;
			}
			caps[i].dst = out[i];
			caps[i].dst_on_device = false;
		}
		req.captures = caps;
		req.n_captures = N_LM_HOOKS;
	}
	if (sae_lm_forward(lm, &req, &err) != SAE_OK)
	{
		unit_fail(__FILE__, __LINE__, "forward on the %s backend: %s", sae_lm_backend(lm)->name, err.message);
		return false;
	}
	return backend_ok(sae_lm_backend(lm), "the forward pass");
}

/*
 * The model in folder on both backends: logits with fused attention; the
 * hooks and logits with unfused attention; and (full) incremental decoding
 * through the key/value cache, one token at a time.
 */
static void
compare_model(const char *folder, const SaeLmOptions *opt, bool full, SaeBackend *gpu,
			  SaeBackend *cpu, const int32_t *tokens)
{
	SaeLm	   *lc = load_lm(folder, opt, cpu),
			   *lg = load_lm(folder, opt, gpu);
	size_t		V,
				n_logits;
	float	   *lw,
			   *lgot,
			   *hw[N_LM_HOOKS],
			   *hg[N_LM_HOOKS];
	char		what[256];

	if (lc == NULL || lg == NULL)
		goto done;
	V = (size_t) sae_lm_config(lc)->d_vocab;
	n_logits = (size_t) LM_B * LM_T * V;
	lw = host_floats(n_logits);
	lgot = host_floats(n_logits);

	if (lm_pass(lc, tokens, LM_B, LM_T, lw, false, NULL) &&
		lm_pass(lg, tokens, LM_B, LM_T, lgot, false, NULL))
	{
		snprintf(what, sizeof(what), "%s%s logits (fused attention)", folder, opt ? " (processed)" : "");
		close_f(what, lgot, lw, n_logits, TOL);
	}
	if (!full)
		goto done;

	for (int i = 0; i < N_LM_HOOKS; i++)
	{
		SaeHook		h;
		SaeError	err = {0};
		size_t		n;

		if (sae_hook_parse(lc, lm_hooks[i], &h, &err) != SAE_OK)
		{
			unit_fail(__FILE__, __LINE__, "%s: %s", lm_hooks[i], err.message);
			goto done;
		}
		n = (size_t) LM_B * LM_T * sae_hook_width(lc, h, LM_T);
		hw[i] = host_floats(n);
		hg[i] = host_floats(n);
	}
	if (lm_pass(lc, tokens, LM_B, LM_T, lw, true, hw) &&
		lm_pass(lg, tokens, LM_B, LM_T, lgot, true, hg))
	{
		snprintf(what, sizeof(what), "%s logits (attention through the hooks)", folder);
		close_f(what, lgot, lw, n_logits, TOL);
		for (int i = 0; i < N_LM_HOOKS; i++)
		{
			SaeHook		h;
			SaeError	err = {0};

			sae_hook_parse(lc, lm_hooks[i], &h, &err);
			snprintf(what, sizeof(what), "%s %s", folder, lm_hooks[i]);
			close_f(what, hg[i], hw[i], (size_t) LM_B * LM_T * sae_hook_width(lc, h, LM_T), TOL);
		}
	}

	/* sequence 0: 6 tokens, then 4 more one at a time through the cache */
	for (int len = 6, pos0 = 0; len <= 10; pos0 = len, len++)
	{
		SaeLmRequest req = {.tokens = tokens + pos0, .B = 1, .T = len - pos0};
		SaeError	err = {0};

		req.logits_last_only = true;
		req.use_cache = true;
		req.pos0 = pos0;
		req.logits = lw;
		if (sae_lm_forward(lc, &req, &err) != SAE_OK)
		{
			unit_fail(__FILE__, __LINE__, "%s cached step %d on the CPU: %s", folder, len, err.message);
			break;
		}
		req.logits = lgot;
		if (sae_lm_forward(lg, &req, &err) != SAE_OK || !backend_ok(gpu, "a cached step"))
		{
			unit_fail(__FILE__, __LINE__, "%s cached step %d on CUDA: %s", folder, len, err.message);
			break;
		}
		snprintf(what, sizeof(what), "%s logits of cached step %d (pos0 %d)", folder, len, pos0);
		close_f(what, lgot, lw, V, TOL);
	}
done:
	sae_lm_free(lc);
	sae_lm_free(lg);
}

/* GPT-2 (raw and with TransformerLens's processing) and GPT-Neo (local attention) on both backends. */
UNIT_TEST(model_matches_cpu)
{
	SaeBackend *gpu = cuda_or_skip(false),
			   *cpu;
	int32_t		tokens[LM_B * LM_T];
	SaeLmOptions processed = {true, true, true, true, 0};
	char		path[512];

	if (!gpu)
		return;
	if (!lm_ref_tokens(tokens, LM_B * LM_T) ||
		access(lm_path("gpt2/config.json", path, sizeof(path)), R_OK) != 0 ||
		access(lm_path("neo/config.json", path, sizeof(path)), R_OK) != 0)
	{
		unit_skip("the language-model fixtures (test/fixtures/lm) are missing");
		gpu->destroy(gpu);
		return;
	}
	cpu = test_backend();
	worst_reset();
	compare_model("gpt2", NULL, true, gpu, cpu, tokens);
	compare_model("gpt2", &processed, false, gpu, cpu, tokens);
	compare_model("neo", NULL, true, gpu, cpu, tokens);
	backend_ok(gpu, "the model tests");
	worst_note("models");
	host_free_all();
	gpu->destroy(gpu);
	cpu->destroy(cpu);
}
