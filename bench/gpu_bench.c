/*
 * gpu_bench.c — the seed's TinyStories training job on the CUDA backend,
 * outside PostgreSQL: tokens per second and the share of the GPU's
 * arithmetic limits they reach.
 *
 * Links the engine sources (built by bench/gpu_check.sh into a temporary
 * folder), opens kernels/sae_cuda.so, loads a model folder (a random-weight
 * GPT-Neo shaped like tiny-stories-1L-21M, made by bench/lm_forward.py
 * make), and times, each after warm-up steps:
 *
 *   e2e-fp32, e2e-tf32   whole training steps as sae_train runs them: the
 *                        model's forward passes over random token contexts
 *                        (activations stay on the GPU), the shuffle buffer,
 *                        the SAE step; the seed's config (d_in 1024,
 *                        expansion 16, batch 4096, context 512, store batch
 *                        16, 64 batches in the buffer, geometric-median b_dec)
 *   e2e-tf32-sparse      the same with the sparse path allowed below 4% density
 *   lm                   the model's forward pass alone, 4096 tokens a pass
 *   sae-fp32, sae-tf32   the SAE step alone on random rows on the GPU
 *
 *   gpu_bench MODEL_DIR [--steps N] [--warmup N] [--modes a,b,...]
 *             [--context T] [--buffer N] [--batch B] [--device cpu]
 *
 * --context, --buffer (n_batches_in_buffer) and --batch (train_batch_size)
 * change the seed's 512, 64 and 4096; d_in is the model's d_model.
 * --device cpu runs the same on the CPU backend, to check the plumbing on a
 * machine without a GPU (with a small model, context and buffer).  Output: a line per mode,
 * "RESULT mode tokens_per_s seconds_for_50M fp32_share tf32_share".  The
 * shares divide the FLOPs done per second (the SAE step's five products,
 * 10 d m per token, and the model up to the hooked block, 8 C^2 + 4 C
 * d_mlp + 4 T C per token) by the H100 SXM's 60 TFLOP/s FP32 and 400 TFLOP/s
 * TF32 (the project's reference, peers.md §3: sustained figures, below the
 * data sheet's 67 and 495).
 */
#define _GNU_SOURCE
#include "backend.h"
#include "config.h"
#include "device.h"
#include "lm.h"
#include "lm_source.h"
#include "rng.h"
#include "run.h"
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FP32_LIMIT 60e12
#define TF32_LIMIT 400e12
#define TOKENS_50M 50e6

typedef struct Bench
{
	const char *model_dir;
	const char *module;
	bool		cpu;
	int			steps;
	int			warmup;
	int			context;
	int			buffer;
	int			batch;
	int			d;				/* d_in: the model's d_model */
	SaeLm	   *lm;				/* on its own FP32 backend, as sae_train's model cache has it */
	double		flops_lm;		/* per token */
	double		flops_sae;
} Bench;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
die(const char *what, const SaeError *err)
{
	fprintf(stderr, "gpu_bench: %s: %s%s%s\n", what, err->message, err->hint[0] ? " HINT: " : "", err->hint);
	exit(1);
}

static SaeBackend *
backend(const Bench *b, bool tf32)
{
	SaeError	err;
	SaeBackend *be = b->cpu ? sae_backend_cpu_create(0) : sae_backend_cuda_create(b->module, 0, tf32, &err);

	if (be == NULL)
		die("backend", &err);
	return be;
}

/* Wait for the device, failing on a CUDA error: the timer reads after this. */
static void
sync_or_die(SaeBackend *be)
{
	SaeError	err;

	if (sae_backend_check(be, &err) != SAE_OK)
		die("device", &err);
}

/* The seed's config (reference/seed-tutorial.txt), with a budget no run here reaches. */
static void
seed_config(const Bench *b, SaeConfig *cfg, bool tf32)
{
	SaeError	err;
	struct
	{
		const char *key;
		double		v;
	}			nums[] = {
		{"d_in", b->d}, {"expansion_factor", 16}, {"lr", 0.0008}, {"lr_warm_up_steps", 10000},
		{"l1_coefficient", 0.001}, {"train_batch_size", b->batch}, {"context_size", b->context},
		{"n_batches_in_buffer", b->buffer}, {"store_batch_size", 16}, {"total_training_tokens", 1e12},
		{"feature_sampling_window", 1000}, {"dead_feature_window", 1000}, {"seed", 42},
	};

	sae_config_defaults(cfg);
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		if (sae_config_set(cfg, nums[i].key, 'n', nums[i].v, false, NULL, &err) != SAE_OK)
			die(nums[i].key, &err);
	if (sae_config_set(cfg, "model_name", 's', 0, false, "bench", &err) != SAE_OK ||
		sae_config_set(cfg, "dataset_path", 's', 0, false, "random tokens", &err) != SAE_OK ||
		sae_config_set(cfg, "hook_point", 's', 0, false, "blocks.0.hook_mlp_out", &err) != SAE_OK ||
		sae_config_set(cfg, "b_dec_init_method", 's', 0, false, "geometric_median", &err) != SAE_OK ||
		sae_config_set(cfg, "allow_tf32", 'b', 0, tf32, NULL, &err) != SAE_OK ||
		sae_config_set(cfg, "verbose", 'b', 0, false, NULL, &err) != SAE_OK ||
		sae_config_finish(cfg, &err) != SAE_OK)
		die("config", &err);
}

/* Random token contexts, forever: the bench measures speed, not what is learned. */
typedef struct Tokens
{
	int			context;
	int			vocab;
	uint64_t	counter;
} Tokens;

static int64_t
random_contexts(void *ctx, int32_t *dst, int64_t max, SaeError *err)
{
	Tokens	   *t = ctx;

	for (int64_t i = 0; i < max * t->context; i++)
		dst[i] = (int32_t) (sae_hash3(7, 0, t->counter++) % (uint64_t) t->vocab);
	return max;
}

static int
no_rewind(void *ctx, SaeError *err)
{
	return SAE_OK;
}

static void
report(const Bench *b, const char *mode, double tokens, double seconds, bool with_lm, bool with_sae)
{
	double		tps = tokens / seconds;
	double		flops = (with_lm ? b->flops_lm : 0) + (with_sae ? b->flops_sae : 0);

	printf("RESULT %-16s %12.0f %10.1f %8.3f %8.3f\n", mode, tps, TOKENS_50M / tps,
		   tps * flops / FP32_LIMIT, tps * flops / TF32_LIMIT);
	fflush(stdout);
}

/* Whole training steps: model, buffer and SAE, as sae_train runs them. */
static void
bench_e2e(Bench *b, const char *mode, bool tf32, double sparse)
{
	SaeConfig	cfg;
	SaeBackend *be = backend(b, tf32);
	SaeHook		hook;
	SaeLmSource *ls;
	SaeLmSourceOptions o = {0};
	SaeRun	   *run;
	SaeRunCallbacks cb = {0};
	SaeSource	src;
	SaeError	err;
	Tokens		tok = {b->context, sae_lm_config(b->lm)->d_vocab, 0};
	bool		done;
	double		t0;

	seed_config(b, &cfg, tf32);
	if (sae_hook_parse(b->lm, cfg.hook_point, &hook, &err) != SAE_OK)
		die("hook", &err);
	o.lm = b->lm;
	o.tokens = (SaeTokenSource) {&tok, random_contexts, no_rewind};
	o.context_size = (int) cfg.context_size;
	o.batch_contexts = (int) cfg.store_batch_size;
	o.hooks = &hook;
	o.n_hooks = 1;
	o.head_index = -1;
	if (sae_lm_source_create(&o, &ls, &err) != SAE_OK)
		die("source", &err);
	src = sae_lm_source_hook(ls, 0);
	if (sae_run_create(&cfg, be, &src, &cb, &run, &err) != SAE_OK ||
		(sparse > 0 && sae_trainer_set_sparse_density(sae_run_trainer(run), sparse, &err) != SAE_OK) ||
		sae_run_begin(run, &err) != SAE_OK)
		die(mode, &err);
	for (int i = 0; i < b->warmup; i++)
		if (sae_run_step(run, &done, &err) != SAE_OK)
			die(mode, &err);
	sync_or_die(be);
	t0 = now();
	for (int i = 0; i < b->steps; i++)
		if (sae_run_step(run, &done, &err) != SAE_OK)
			die(mode, &err);
	sync_or_die(be);
	report(b, mode, (double) b->steps * cfg.train_batch_size, now() - t0, true, true);
	sae_run_finish(run);
	fprintf(stderr, "gpu_bench: %s: last step L0 %.1f, MSE %.4g, %lld sparse steps\n", mode,
			sae_run_result(run)->last.l0, sae_run_result(run)->last.mse_loss,
			(long long) sae_run_result(run)->sparse_steps);
	sae_run_destroy(run);
	sae_lm_source_destroy(ls);
	be->destroy(be);
}

/* The model's forward pass alone: batch tokens a pass, captured on the device. */
static void
bench_lm(Bench *b)
{
	SaeBackend *be = sae_lm_backend(b->lm);
	int			T = b->context,
				B = b->batch / T > 0 ? b->batch / T : 1;
	int32_t    *tokens = malloc(sizeof(int32_t) * B * T);
	float	   *dst = be->alloc(be, sizeof(float) * B * T * b->d);
	SaeLmCapture cap = {.dst = dst, .dst_on_device = true};
	SaeLmRequest req = {.tokens = tokens, .B = B, .T = T, .captures = &cap, .n_captures = 1};
	SaeError	err;
	Tokens		tok = {T, sae_lm_config(b->lm)->d_vocab, 0};
	double		t0 = 0;

	if (dst == NULL || sae_hook_parse(b->lm, "blocks.0.hook_mlp_out", &cap.hook, &err) != SAE_OK)
		die("lm", &err);
	random_contexts(&tok, tokens, B, &err);
	for (int i = 0; i < b->warmup + b->steps; i++)
	{
		if (i == b->warmup)
		{
			sync_or_die(be);
			t0 = now();
		}
		if (sae_lm_forward(b->lm, &req, &err) != SAE_OK)
			die("lm", &err);
	}
	sync_or_die(be);
	report(b, "lm", (double) b->steps * B * T, now() - t0, true, false);
	be->free(be, dst);
	free(tokens);
}

/* The SAE step alone, on a batch of random rows already on the device. */
static void
bench_sae(Bench *b, const char *mode, bool tf32)
{
	SaeConfig	cfg;
	SaeBackend *be = backend(b, tf32);
	SaeTrainer *t;
	SaeStepStats st;
	SaeError	err;
	int			B = b->batch,
				d = b->d;
	float	   *host = malloc(sizeof(float) * B * d);
	float	   *x = be->alloc(be, sizeof(float) * B * d);
	double		t0 = 0;

	seed_config(b, &cfg, tf32);
	for (size_t i = 0; i < (size_t) B * d; i++)
		host[i] = sae_normal(1, 2, i);
	if (x == NULL || sae_trainer_create(&cfg, be, B, &t, &err) != SAE_OK ||
		sae_trainer_init_params(t, &err) != SAE_OK)
		die(mode, &err);
	be->to_device(be, x, host, sizeof(float) * B * d);
	for (int i = 0; i < b->warmup + b->steps; i++)
	{
		if (i == b->warmup)
		{
			sync_or_die(be);
			t0 = now();
		}
		sae_trainer_step(t, x, B, &st);
	}
	sync_or_die(be);
	report(b, mode, (double) b->steps * B, now() - t0, false, true);
	sae_trainer_destroy(t);
	be->free(be, x);
	be->destroy(be);
	free(host);
}

int
main(int argc, char **argv)
{
	Bench		b = {.steps = 128, .warmup = 8, .context = 512, .buffer = 64, .batch = 4096};
	SaeBackend *model_be;
	const char *modes = "lm,sae-fp32,sae-tf32,e2e-fp32,e2e-tf32,e2e-tf32-sparse";
	SaeLmOptions lo = {0};
	SaeError	err;
	char	   *list,
			   *mode;
	const SaeLmConfig *c;

	if (argc < 2)
	{
		fprintf(stderr, "usage: gpu_bench MODEL_DIR [--steps N] [--warmup N] [--modes a,b] [--context T] "
				"[--buffer N] [--batch B] [--device cpu]\n");
		return 2;
	}
	b.model_dir = argv[1];
	b.module = getenv("SAE_CUDA_MODULE") ? getenv("SAE_CUDA_MODULE") : "kernels/sae_cuda.so";
	for (int i = 2; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--steps") == 0)
			b.steps = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--warmup") == 0)
			b.warmup = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--modes") == 0)
			modes = argv[i + 1];
		else if (strcmp(argv[i], "--context") == 0)
			b.context = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--buffer") == 0)
			b.buffer = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--batch") == 0)
			b.batch = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--device") == 0)
			b.cpu = strcmp(argv[i + 1], "cpu") == 0;
	}
	model_be = backend(&b, false);
	if (sae_lm_load(b.model_dir, &lo, model_be, &b.lm, &err) != SAE_OK)
		die("model", &err);
	c = sae_lm_config(b.lm);
	b.d = c->d_model;
	b.flops_lm = 8.0 * c->d_model * c->d_model + 4.0 * c->d_model * c->d_mlp + 4.0 * b.context * c->d_model;
	b.flops_sae = 10.0 * b.d * b.d * 16;
	printf("RESULT %-16s %12s %10s %8s %8s\n", "mode", "tokens/s", "s/50M", "fp32", "tf32");
	list = strdup(modes);
	for (mode = strtok(list, ","); mode; mode = strtok(NULL, ","))
	{
		if (strcmp(mode, "lm") == 0)
			bench_lm(&b);
		else if (strncmp(mode, "sae-", 4) == 0)
			bench_sae(&b, mode, strcmp(mode, "sae-tf32") == 0);
		else if (strncmp(mode, "e2e-", 4) == 0)
			bench_e2e(&b, mode, strstr(mode, "tf32") != NULL, strstr(mode, "sparse") ? 0.04 : 0);
		else
			fprintf(stderr, "gpu_bench: unknown mode \"%s\"\n", mode);
	}
	free(list);
	sae_lm_free(b.lm);
	model_be->destroy(model_be);
	return 0;
}
