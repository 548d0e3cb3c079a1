/*
 * lm_forward.c — time the engine's language-model forward pass outside
 * PostgreSQL.
 *
 * Links the engine sources (src/core, all .c files; built by
 * bench/lm_forward.sh into a temporary folder, never into the repository),
 * loads a Hugging Face model folder with sae_lm_load, and runs warm-up plus
 * timed forward passes of B x T random tokens that capture one hook
 * (default blocks.0.hook_mlp_out).  The pass stops at the block of that hook:
 * no later blocks, no ln_final, no unembedding.
 *
 *   lm_forward DIR [--batch B] [--seq T] [--warmup N] [--repeats N]
 *              [--threads N] [--hook NAME] [--seed S]
 *              [--tokens FILE] [--dump FILE] [--profile]
 *
 * --tokens FILE  read the B x T token ids from FILE (raw int32, native
 *                endianness) instead of drawing them
 * --dump FILE    write the captured activation of the last pass to FILE
 *                (raw float32, B*T rows of the hook's width)
 * --profile      wrap each backend op the forward pass calls with a timer
 *                and print, per op (GEMMs split by product), the seconds of
 *                the timed passes; timing overhead is one clock_gettime pair
 *                per call (a few thousand calls per pass)
 *
 * Output: one line per pass, then "RESULT ..." with the median over the
 * timed passes (tokens/s = B*T / median seconds) and "others", the share of
 * the machine's CPUs that other processes (and hypervisor steal) used during
 * the timed passes (from /proc/stat, less this process's CPU time), then the
 * profile if asked.
 */
#define _GNU_SOURCE
#include "backend.h"
#include "error.h"
#include "lm.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* minor page faults of this process so far (first touches of fresh memory) */
static long
minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * All CPUs' busy and total jiffies from /proc/stat (busy counts steal: time
 * the hypervisor gave to other guests); 0 if unreadable.
 */
static void
stat_snap(double *busy, double *total)
{
	unsigned long long v[8] = {0};
	FILE	   *fp = fopen("/proc/stat", "r");

	*busy = *total = 0;
	if (fp == NULL)
		return;
	if (fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			   &v[4], &v[5], &v[6], &v[7]) == 8)
	{
		*busy = (double) (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
		*total = *busy + v[3] + v[4];
	}
	fclose(fp);
}

/* ---- per-op timers (--profile) ---- */

enum
{
	P_GEMM_QKV,					/* x W_Q, x W_K, x W_V  (rows x C x C) */
	P_GEMM_O,					/* z W_O */
	P_GEMM_FC_IN,				/* ln2 W_in  (rows x F x C) */
	P_GEMM_FC_OUT,				/* mlp W_out (rows x C x F) */
	P_GEMM_QK,					/* per sequence and head: Q K^T (T x Tk x D) */
	P_GEMM_PV,					/* per sequence and head: pattern V (T x D x Tk) */
	P_GEMM_OTHER,
	P_ADD_ROW_VECTOR,			/* the biases */
	P_LAYERNORM,
	P_SCALE_SHIFT,
	P_ACTIVATION,
	P_ADD,						/* residual adds, embedding + position */
	P_ATTN_MASK,
	P_SOFTMAX,
	P_ATTENTION,				/* the fused attention (scores and pattern not hooked) */
	P_GATHER,					/* token embedding rows */
	P_COPY,						/* position rows, captures */
	P_N
};

static const char *const p_names[P_N] = {
	"gemm x W_Q/W_K/W_V", "gemm z W_O", "gemm ln2 W_in", "gemm mlp W_out",
	"gemm Q K^T (per seq, head)", "gemm pattern V (per seq, head)", "gemm other",
	"add_row_vector (biases)", "layernorm", "scale_shift (LN affine)", "lm_activation (gelu)",
	"add (residual, pos)", "attn_mask", "softmax_rows", "attention (fused)", "gather_rows (embed)",
	"copy/to_host (pos rows, capture)",
};

static double p_sec[P_N],
			p_flops[P_N];
static long p_calls[P_N];
static int	p_rows,
			p_C,
			p_F;
static SaeBackend real;			/* the backend's own entries */

#define TIMED(slot, call) do { double t0_ = now(); call; p_sec[slot] += now() - t0_; p_calls[slot]++; } while (0)

static void
t_gemm(SaeBackend *be, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
	   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	int			slot;

	if (M == p_rows && N == p_C && K == p_C)
		slot = P_GEMM_QKV;		/* W_O is told apart by the order below */
	else if (M == p_rows && N == p_F && K == p_C)
		slot = P_GEMM_FC_IN;
	else if (M == p_rows && N == p_C && K == p_F)
		slot = P_GEMM_FC_OUT;
	else if (M != p_rows && tb)
		slot = P_GEMM_QK;
	else if (M != p_rows && !tb)
		slot = P_GEMM_PV;
	else
		slot = P_GEMM_OTHER;
	/* rows x C x C products come 4 per block, in lm_forward.c's order: Q, K, V, then O */
	if (slot == P_GEMM_QKV)
	{
		static int	n;

		if (n++ % 4 == 3)
			slot = P_GEMM_O;
	}
	p_flops[slot] += 2.0 * M * N * K;
	TIMED(slot, real.gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
}

static void
t_add_row_vector(SaeBackend *be, float *dst, const float *src, const float *vec, int rows,
				 int cols, float alpha)
{
	TIMED(P_ADD_ROW_VECTOR, real.add_row_vector(be, dst, src, vec, rows, cols, alpha));
}

static void
t_layernorm(SaeBackend *be, float *y, float *scale, const float *x, int rows, int cols, float eps)
{
	TIMED(P_LAYERNORM, real.layernorm(be, y, scale, x, rows, cols, eps));
}

static void
t_scale_shift(SaeBackend *be, float *y, const float *w, const float *b, int rows, int cols)
{
	TIMED(P_SCALE_SHIFT, real.scale_shift(be, y, w, b, rows, cols));
}

static void
t_lm_activation(SaeBackend *be, float *y, const float *x, size_t n, SaeLmAct act)
{
	TIMED(P_ACTIVATION, real.lm_activation(be, y, x, n, act));
}

static void
t_add(SaeBackend *be, float *dst, const float *a, const float *b, size_t n)
{
	TIMED(P_ADD, real.add(be, dst, a, b, n));
}

static void
t_attn_mask(SaeBackend *be, float *scores, int Tq, int H, int Tk, int q_offset, float divisor,
			int window)
{
	TIMED(P_ATTN_MASK, real.attn_mask(be, scores, Tq, H, Tk, q_offset, divisor, window));
}

static void
t_softmax_rows(SaeBackend *be, float *dst, const float *src, int rows, int cols)
{
	TIMED(P_SOFTMAX, real.softmax_rows(be, dst, src, rows, cols));
}

static bool
t_attention(SaeBackend *be, float *z, const float *q, const float *k, const float *v, int B, int Tq,
			int Tk, int H, int D, int q_offset, float divisor, int window)
{
	bool		ok;

	TIMED(P_ATTENTION, ok = real.attention(be, z, q, k, v, B, Tq, Tk, H, D, q_offset, divisor, window));
	return ok;
}

static void
t_gather_rows(SaeBackend *be, float *dst, const float *src, const int32_t *idx, int rows, int cols)
{
	TIMED(P_GATHER, real.gather_rows(be, dst, src, idx, rows, cols));
}

static void
t_copy(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	TIMED(P_COPY, real.copy(be, dst, src, bytes));
}

static void
t_to_host(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	TIMED(P_COPY, real.to_host(be, dst, src, bytes));
}

static void
t_to_device(SaeBackend *be, void *dst, const void *src, size_t bytes)
{
	TIMED(P_COPY, real.to_device(be, dst, src, bytes));
}

static void
wrap_backend(SaeBackend *be)
{
	real = *be;
	be->gemm = t_gemm;
	be->add_row_vector = t_add_row_vector;
	be->layernorm = t_layernorm;
	be->scale_shift = t_scale_shift;
	be->lm_activation = t_lm_activation;
	be->add = t_add;
	be->attn_mask = t_attn_mask;
	be->softmax_rows = t_softmax_rows;
	be->attention = t_attention;
	be->gather_rows = t_gather_rows;
	be->copy = t_copy;
	be->to_host = t_to_host;
	be->to_device = t_to_device;
}

/* ---- helpers ---- */

static void
die(const char *what, const SaeError *err)
{
	fprintf(stderr, "lm_forward: %s%s%s\n", what, err ? ": " : "", err ? err->message : "");
	if (err && err->hint[0])
		fprintf(stderr, "lm_forward: hint: %s\n", err->hint);
	exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* splitmix64: the token ids of a run depend on the seed only */
static uint64_t
splitmix(uint64_t *s)
{
	uint64_t	z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ---- main ---- */

int
main(int argc, char **argv)
{
	const char *dir,
			   *hook_name = "blocks.0.hook_mlp_out",
			   *tokens_file = NULL,
			   *dump_file = NULL;
	int			B = 16,
				T = 512,
				warmup = 1,
				repeats = 3,
				threads = 0;
	bool		profile = false;
	uint64_t	seed = 42;
	SaeError	err;
	SaeBackend *be;
	SaeLm	   *lm;
	SaeLmOptions opt;
	SaeHook		hook;
	SaeLmCapture cap;
	SaeLmRequest req;
	const SaeLmConfig *cfg;
	int32_t    *tokens;
	float	   *acts;
	int			width;
	double	   *secs,
				t_load,
				cpu_timed = 0,
				wall_timed = 0,
				stat_b0 = 0,
				stat_t0 = 0,
				stat_b1,
				stat_t1,
				hz = (double) sysconf(_SC_CLK_TCK);

	if (argc < 2 || argv[1][0] == '-')
	{
		fprintf(stderr, "usage: %s DIR [--batch B] [--seq T] [--warmup N] [--repeats N] [--threads N] "
				"[--hook NAME] [--seed S] [--tokens FILE] [--dump FILE] [--profile]\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	for (int i = 2; i < argc; i++)
	{
		const char *a = argv[i],
				   *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--profile"))
		{
			profile = true;
			continue;
		}
		if (v == NULL)
			die("option needs a value", NULL);
		i++;
		if (!strcmp(a, "--batch"))
			B = atoi(v);
		else if (!strcmp(a, "--seq"))
			T = atoi(v);
		else if (!strcmp(a, "--warmup"))
			warmup = atoi(v);
		else if (!strcmp(a, "--repeats"))
			repeats = atoi(v);
		else if (!strcmp(a, "--threads"))
			threads = atoi(v);
		else if (!strcmp(a, "--hook"))
			hook_name = v;
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--tokens"))
			tokens_file = v;
		else if (!strcmp(a, "--dump"))
			dump_file = v;
		else
		{
			fprintf(stderr, "lm_forward: unknown option %s\n", a);
			return 2;
		}
	}
	if (B < 1 || T < 1 || repeats < 1 || warmup < 0)
		die("bad --batch, --seq, --repeats or --warmup", NULL);

	memset(&err, 0, sizeof(err));
	memset(&opt, 0, sizeof(opt));
	be = sae_backend_cpu_create(threads);
	if (be == NULL)
		die("backend", NULL);
	if (profile)
		wrap_backend(be);
	t_load = now();
	if (sae_lm_load(dir, &opt, be, &lm, &err) != SAE_OK)
		die("sae_lm_load", &err);
	t_load = now() - t_load;
	cfg = sae_lm_config(lm);
	if (sae_hook_parse(lm, hook_name, &hook, &err) != SAE_OK)
		die("hook", &err);
	width = sae_hook_width(lm, hook, T);
	p_rows = B * T;
	p_C = cfg->d_model;
	p_F = cfg->d_mlp;

	tokens = malloc(sizeof(int32_t) * (size_t) B * T);
	acts = malloc(sizeof(float) * (size_t) B * T * width);
	secs = calloc(repeats, sizeof(double));
	if (!tokens || !acts || !secs)
		die("out of memory", NULL);
	if (tokens_file)
	{
		FILE	   *fp = fopen(tokens_file, "rb");

		if (!fp || fread(tokens, sizeof(int32_t), (size_t) B * T, fp) != (size_t) B * T)
			die("cannot read B*T int32 token ids from --tokens", NULL);
		fclose(fp);
	}
	else
	{
		uint64_t	s = seed;

		for (size_t i = 0; i < (size_t) B * T; i++)
			tokens[i] = (int32_t) (splitmix(&s) % (uint64_t) cfg->d_vocab);
	}

	printf("model %s: %s, %d layers, d_model %d, %d heads, d_mlp %d, vocab %d (weights %s, %.1f MB, loaded in %.2f s)\n",
		   dir, sae_lm_arch_name(cfg->arch), cfg->n_layers, cfg->d_model, cfg->n_heads, cfg->d_mlp,
		   cfg->d_vocab, sae_lm_weights_file(lm), sae_lm_weight_bytes(lm) / 1e6, t_load);
	printf("batch %d x %d tokens, capture %s (width %d), threads %d\n", B, T, hook_name, width,
		   threads);
	fflush(stdout);

	memset(&cap, 0, sizeof(cap));
	cap.hook = hook;
	cap.dst = acts;
	cap.dst_on_device = false;
	memset(&req, 0, sizeof(req));
	req.tokens = tokens;
	req.B = B;
	req.T = T;
	req.captures = &cap;
	req.n_captures = 1;

	for (int s = 0; s < warmup + repeats; s++)
	{
		bool		timed = s >= warmup;
		double		t0,
					c0,
					dt,
					dc;
		long		f0 = minor_faults();

		if (s == warmup)
		{
			stat_snap(&stat_b0, &stat_t0);
			memset(p_sec, 0, sizeof(p_sec));
			memset(p_calls, 0, sizeof(p_calls));
			memset(p_flops, 0, sizeof(p_flops));
		}
		t0 = now();
		c0 = cpu_now();
		if (sae_lm_forward(lm, &req, &err) != SAE_OK)
			die("sae_lm_forward", &err);
		dt = now() - t0;
		dc = cpu_now() - c0;
		printf("%s %d: %.3f s, %.1f tokens/s, cpu %.2f cores, %.2f GB of page faults\n",
			   timed ? "pass" : "warmup", timed ? s - warmup : s, dt, B * T / dt, dc / dt,
			   (minor_faults() - f0) * (double) sysconf(_SC_PAGESIZE) / 1e9);
		fflush(stdout);
		if (timed)
		{
			secs[s - warmup] = dt;
			cpu_timed += dc;
			wall_timed += dt;
		}
	}
	stat_snap(&stat_b1, &stat_t1);
	if (dump_file)
	{
		FILE	   *fp = fopen(dump_file, "wb");

		if (!fp || fwrite(acts, sizeof(float), (size_t) B * T * width, fp) != (size_t) B * T * width)
			die("cannot write --dump", NULL);
		fclose(fp);
	}
	{
		double		sorted[repeats];
		double		med;

		memcpy(sorted, secs, sizeof(double) * repeats);
		qsort(sorted, repeats, sizeof(double), cmp_double);
		med = repeats % 2 ? sorted[repeats / 2] : 0.5 * (sorted[repeats / 2 - 1] + sorted[repeats / 2]);
		printf("RESULT tokens_per_s=%.1f median_s=%.4f min_s=%.4f max_s=%.4f repeats=%d batch=%d seq=%d "
			   "threads=%d cpu_cores=%.2f others=%.4f\n",
			   B * T / med, med, sorted[0], sorted[repeats - 1], repeats, B, T, threads,
			   cpu_timed / wall_timed,
			   stat_t1 > stat_t0 ? fmax(0, (stat_b1 - stat_b0) - cpu_timed * hz) / (stat_t1 - stat_t0) : 0.0);
	}
	if (profile)
	{
		double		tot = 0;

		for (int k = 0; k < P_N; k++)
			tot += p_sec[k];
		printf("PROFILE per timed pass (mean of %d): %.4f s in backend ops of %.4f s\n", repeats,
			   tot / repeats, wall_timed / repeats);
		for (int k = 0; k < P_N; k++)
		{
			if (p_calls[k] == 0)
				continue;
			printf("  %-34s %8.4f s  %5.1f%%  %6ld calls", p_names[k], p_sec[k] / repeats,
				   100 * p_sec[k] / wall_timed, p_calls[k] / repeats);
			if (p_flops[k] > 0)
				printf("  %6.1f GFLOP/s  (%.2f GFLOP)", p_flops[k] / p_sec[k] / 1e9,
					   p_flops[k] / repeats / 1e9);
			printf("\n");
		}
		printf("  %-34s %8.4f s  %5.1f%%\n", "(outside the backend ops)",
			   (wall_timed - tot) / repeats, 100 * (wall_timed - tot) / wall_timed);
	}
	sae_lm_free(lm);
	be->destroy(be);
	free(tokens);
	free(acts);
	free(secs);
	return 0;
}
