/*
 * profile_step.c — time the engine's training step outside PostgreSQL.
 *
 * Links the engine sources (src/core, all .c files) (built by bench/train_cpu.sh into a temporary folder,
 * never into the repository) and calls sae_trainer_step in a loop on the
 * same synthetic activations sae_synthetic_activations() makes, with the
 * same config keys the SQL benchmark passes.  The backend's gemm entry is
 * wrapped with a timer, so each step splits into "GEMM" (OpenBLAS sgemm,
 * including its thread start/stop) and "other" (the fused OpenMP passes,
 * Adam, the decoder renorm/projection, the sparse path if taken).  For a
 * per-function breakdown, --perf FILE attaches `perf record` to this
 * process for the timed steps only.
 *
 *   profile_step d_in d_sae batch steps [--warmup N] [--threads N]
 *                [--sparse-l0 L] [--perf FILE] [--features N] [--active A]
 *
 * --sparse-l0 L shifts b_enc so that about L features fire per token: the
 * late phase of a real run, which a short benchmark does not reach.
 *
 * Output: one line per timed step, then a summary line starting "SUMMARY".
 * Build with -DHAVE_SPARSE_PATH when SaeStepStats has sparse_path.
 */
#define _GNU_SOURCE
#include "config.h"
#include "backend.h"
#include "synthetic.h"
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the gemm wrapper ---- */
static void (*real_gemm) (SaeBackend *be, bool trans_a, bool trans_b, int M, int N, int K,
						  float alpha, const float *A, int lda, const float *B, int ldb,
						  float beta, float *C, int ldc);
static double gemm_seconds,
			gemm_flops;
static int	gemm_calls;

/* per-call log of the first timed step, to name each product */
#define MAX_LOG 16
static struct
{
	bool		ta,
				tb;
	int			M,
				N,
				K;
	double		s;
}			gemm_log[MAX_LOG];
static int	gemm_log_n;
static bool gemm_logging;

static void
timed_gemm(SaeBackend *be, bool trans_a, bool trans_b, int M, int N, int K,
		   float alpha, const float *A, int lda, const float *B, int ldb,
		   float beta, float *C, int ldc)
{
	double		t0 = now(),
				dt;

	real_gemm(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	dt = now() - t0;
	gemm_seconds += dt;
	gemm_flops += 2.0 * M * N * K;
	gemm_calls++;
	if (gemm_logging && gemm_log_n < MAX_LOG)
	{
		gemm_log[gemm_log_n].ta = trans_a;
		gemm_log[gemm_log_n].tb = trans_b;
		gemm_log[gemm_log_n].M = M;
		gemm_log[gemm_log_n].N = N;
		gemm_log[gemm_log_n].K = K;
		gemm_log[gemm_log_n].s = dt;
		gemm_log_n++;
	}
}

static void
die(const char *what, const SaeError *err)
{
	fprintf(stderr, "profile_step: %s: %s\n", what, err ? err->message : "");
	exit(1);
}

static void
set_num(SaeConfig *cfg, const char *key, double v)
{
	SaeError	err;

	memset(&err, 0, sizeof(err));
	if (sae_config_set(cfg, key, 'n', v, false, NULL, &err) != 0)
		die(key, &err);
}

static void
set_str(SaeConfig *cfg, const char *key, const char *v)
{
	SaeError	err;

	memset(&err, 0, sizeof(err));
	if (sae_config_set(cfg, key, 's', 0, false, v, &err) != 0)
		die(key, &err);
}

static int
cmp_float(const void *a, const void *b)
{
	float		x = *(const float *) a,
				y = *(const float *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	int			d,
				m,
				B,
				steps,
				warmup = 1,
				threads = 2,
				features = 0;
	double		sparse_l0 = 0,
				active = 16;
	const char *perf_out = NULL;
	SaeConfig	cfg;
	SaeError	err;
	SaeBackend *be;
	SaeTrainer *t;
	int64_t		half = 16384,
				n_rows;
	float	   *dict,
			   *data;
	pid_t		perf_pid = 0;
	double		t_steps = 0,
				cpu_steps = 0,
				gemm_steps = 0,
				flops_steps = 0,
				l0_sum = 0;
	int			sparse_steps = 0;

	if (argc < 5)
	{
		fprintf(stderr, "usage: %s d_in d_sae batch steps [--warmup N] [--threads N] [--sparse-l0 L] [--perf FILE] [--features N] [--active A]\n", argv[0]);
		return 2;
	}
	d = atoi(argv[1]);
	m = atoi(argv[2]);
	B = atoi(argv[3]);
	steps = atoi(argv[4]);
	for (int i = 5; i + 1 < argc; i += 2)
	{
		if (!strcmp(argv[i], "--warmup"))
			warmup = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--threads"))
			threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--sparse-l0"))
			sparse_l0 = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--perf"))
			perf_out = argv[i + 1];
		else if (!strcmp(argv[i], "--features"))
			features = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--active"))
			active = atof(argv[i + 1]);
		else
		{
			fprintf(stderr, "profile_step: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (features <= 0)
		features = m;

	memset(&err, 0, sizeof(err));
	sae_config_defaults(&cfg);
	set_str(&cfg, "activations_table", "acts");
	set_str(&cfg, "activations_column", "activation");
	set_num(&cfg, "d_in", d);
	set_num(&cfg, "expansion_factor", m / d);
	set_num(&cfg, "train_batch_size", B);
	set_num(&cfg, "total_training_tokens", (double) B * (warmup + steps));
	set_str(&cfg, "b_dec_init_method", "mean");
	set_num(&cfg, "lr", 3e-4);
	set_num(&cfg, "l1_coefficient", 1e-3);
	set_num(&cfg, "lr_warm_up_steps", 0);
	set_num(&cfg, "seed", 42);
	if (sae_config_finish(&cfg, &err) != 0)
		die("config", &err);
	if (cfg.d_sae != m)
		die("d_sae must be a multiple of d_in", NULL);

	/* the rows sae_synthetic_activations(n, d, features, active, 0) makes */
	n_rows = half + (int64_t) B;
	dict = malloc(sizeof(float) * (size_t) features * d);
	data = malloc(sizeof(float) * (size_t) n_rows * d);
	if (!dict || !data)
		die("out of memory", NULL);
	sae_synthetic_dictionary(d, features, 0, dict);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < n_rows; r++)
		sae_synthetic_row(dict, d, features, active, 0, r, data + (size_t) r * d);

	be = sae_backend_cpu_create(threads);
	if (be == NULL)
		die("backend", NULL);
	real_gemm = be->gemm;
	be->gemm = timed_gemm;
	if (sae_trainer_create(&cfg, be, B, &t, &err) != 0)
		die("trainer", &err);
	if (sae_trainer_init_params(t, &err) != 0)
		die("init", &err);
	if (sae_trainer_init_b_dec(t, data, half, NULL, &err) != 0)
		die("b_dec", &err);

	if (sparse_l0 > 0)
	{
		/* b_enc = -(1 - L/m) quantile of x_c W_enc over (a sample of) the first batch */
		float	   *w_enc = malloc(sizeof(float) * (size_t) d * m);
		float	   *b_enc = malloc(sizeof(float) * m);
		float	   *w_dec = malloc(sizeof(float) * (size_t) m * d);
		float	   *b_dec = malloc(sizeof(float) * d);
		int			rows = B < 256 ? B : 256;
		size_t		n = (size_t) rows * m;
		float	   *h = malloc(sizeof(float) * n);
		float	   *xc = malloc(sizeof(float) * (size_t) rows * d);

		sae_trainer_get_params(t, w_enc, b_enc, w_dec, b_dec);
		for (int r = 0; r < rows; r++)
			for (int j = 0; j < d; j++)
				xc[(size_t) r * d + j] = data[(size_t) (half + r) * d + j] - b_dec[j];
		real_gemm(be, false, false, rows, m, d, 1.0f, xc, d, w_enc, m, 0.0f, h, m);
		qsort(h, n, sizeof(float), cmp_float);
		{
			size_t		k = (size_t) ((1.0 - sparse_l0 / m) * (n - 1));
			float		q = h[k];

			for (int i = 0; i < m; i++)
				b_enc[i] = -q;
		}
		sae_trainer_set_params(t, w_enc, b_enc, w_dec, b_dec);
		free(w_enc);
		free(b_enc);
		free(w_dec);
		free(b_dec);
		free(h);
		free(xc);
	}

	for (int s = 0; s < warmup + steps; s++)
	{
		SaeStepStats st;
		double		t0,
					c0,
					g0 = gemm_seconds,
					f0 = gemm_flops,
					dt,
					dc;
		bool		timed = s >= warmup;

		if (timed && s == warmup && perf_out)
		{
			char		pid[32];
			char	   *av[] = {"perf", "record", "-q", "-F", "499", "-o", (char *) perf_out, "-p", pid, NULL};

			snprintf(pid, sizeof(pid), "%d", (int) getpid());
			if (posix_spawnp(&perf_pid, "perf", NULL, NULL, av, environ) != 0)
				perf_pid = 0;
			else
				sleep(2);		/* let perf attach */
		}
		gemm_logging = s == warmup;
		t0 = now();
		c0 = cpu_now();
		sae_trainer_step(t, data + (size_t) half * d, B, &st);
		dt = now() - t0;
		dc = cpu_now() - c0;
		gemm_logging = false;
		if (!timed)
		{
			printf("warmup step %d: %.3f s, L0 %.1f\n", s, dt, st.l0);
			continue;
		}
		t_steps += dt;
		cpu_steps += dc;
		gemm_steps += gemm_seconds - g0;
		flops_steps += gemm_flops - f0;
		l0_sum += st.l0;
#ifdef HAVE_SPARSE_PATH
		sparse_steps += st.sparse_path;
#endif
		printf("step %d: %.3f s (GEMM %.3f s, other %.3f s), cpu %.2f cores, L0 %.1f, mse %.4g\n",
			   s, dt, gemm_seconds - g0, dt - (gemm_seconds - g0), dc / dt, st.l0, st.mse_loss);
		fflush(stdout);
	}
	if (perf_pid > 0)
	{
		kill(perf_pid, SIGINT);
		waitpid(perf_pid, NULL, 0);
	}
	for (int i = 0; i < gemm_log_n; i++)
		printf("gemm %d: %c%c M=%d N=%d K=%d  %.3f s  %.1f GFLOP/s\n", i,
			   gemm_log[i].ta ? 'T' : 'N', gemm_log[i].tb ? 'T' : 'N',
			   gemm_log[i].M, gemm_log[i].N, gemm_log[i].K, gemm_log[i].s,
			   2.0 * gemm_log[i].M * gemm_log[i].N * gemm_log[i].K / gemm_log[i].s / 1e9);
	printf("SUMMARY d_in=%d d_sae=%d batch=%d steps=%d threads=%d sparse_l0_target=%g "
		   "step_s=%.3f gemm_s=%.3f other_s=%.3f gemm_frac=%.3f gemm_gflops=%.1f "
		   "tokens_per_s=%.1f cpu_cores=%.2f mean_l0=%.1f sparse_steps=%d\n",
		   d, m, B, steps, threads, sparse_l0, t_steps / steps, gemm_steps / steps,
		   (t_steps - gemm_steps) / steps, gemm_steps / t_steps,
		   gemm_steps > 0 ? flops_steps / gemm_steps / 1e9 : 0,
		   (double) B * steps / t_steps, cpu_steps / t_steps, l0_sum / steps, sparse_steps);
	sae_trainer_destroy(t);
	be->destroy(be);
	free(dict);
	free(data);
	return 0;
}
