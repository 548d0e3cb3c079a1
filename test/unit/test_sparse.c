/*
 * test_sparse.c — the sparse path computes what the dense GEMMs compute.
 *
 * The trainer switches to the sparse ops when few features fire; these
 * tests feed the same random matrices (f mostly zero) to the sparse ops
 * and to dense cblas products, so a wrong index or a missed row shows as
 * a difference.
 */
#include "unit.h"

#include "backend.h"
#include "rng.h"
#include "trainer.h"

#include <stdint.h>
#include <stdlib.h>

#define SB 37
#define SM 53
#define SD 11

/* f with about one positive entry in eight; the rest exactly zero. */
static void
make_sparse_f(float *f)
{
	for (int k = 0; k < SB * SM; k++)
		f[k] = sae_uniform(7, 1, k) < 0.125 ? (float) sae_uniform(7, 2, k) + 0.1f : 0.0f;
}

static void
make_dense(float *x, int n, uint64_t stream)
{
	for (int k = 0; k < n; k++)
		x[k] = sae_normal(7, stream, k);
}

static double
max_abs_diff(const float *a, const float *b, int n)
{
	double		worst = 0;

	for (int k = 0; k < n; k++)
		worst = fmax(worst, fabs((double) a[k] - b[k]));
	return worst;
}

/* Sparse decode, backprop and weight gradients against dense products. */
UNIT_TEST(sparse_ops_match_dense)
{
	SaeBackend *be = sae_backend_cpu_create(0);
	float	   *f = malloc(sizeof(float) * SB * SM),
			   *w = malloc(sizeof(float) * SM * SD),
			   *g = malloc(sizeof(float) * SB * SD),
			   *dense = malloc(sizeof(float) * SB * SM),
			   *sparse = malloc(sizeof(float) * SB * SM);
	int32_t		row_ptr[SB + 1],
				col_ptr[SM + 1],
			   *col_idx = malloc(sizeof(int32_t) * SB * SM),
			   *row_idx = malloc(sizeof(int32_t) * SB * SM);
	int64_t		nnz;

	make_sparse_f(f);
	make_dense(w, SM * SD, 3);
	make_dense(g, SB * SD, 4);
	CHECK_INT_EQ(be->sparsify(be, f, SB, SM, row_ptr, col_idx, col_ptr, row_idx, 3), -1);
	nnz = be->sparsify(be, f, SB, SM, row_ptr, col_idx, col_ptr, row_idx, SB * SM);
	REQUIRE(nnz > 0 && nnz < SB * SM / 4);
	CHECK_INT_EQ(row_ptr[SB], nnz);
	CHECK_INT_EQ(col_ptr[SM], nnz);

	/* x_hat = f W_dec */
	be->gemm(be, false, false, SB, SD, SM, 1.0f, f, SM, w, SD, 0.0f, dense, SD);
	be->sparse_decode(be, row_ptr, col_idx, f, w, sparse, SB, SM, SD);
	CHECK_MSG(max_abs_diff(dense, sparse, SB * SD) < 1e-5, "decode differs by %g",
			  max_abs_diff(dense, sparse, SB * SD));

	/* dh = g W_dec^T at the positive entries of f */
	be->gemm(be, false, true, SB, SM, SD, 1.0f, g, SD, w, SD, 0.0f, dense, SM);
	be->fill(be, sparse, SB * SM, 0.0f);
	be->sparse_backprop(be, row_ptr, col_idx, g, w, sparse, SB, SM, SD);
	for (int k = 0; k < SB * SM; k++)
		if (f[k] <= 0)
			dense[k] = 0;
	CHECK_MSG(max_abs_diff(dense, sparse, SB * SM) < 1e-5, "backprop differs by %g",
			  max_abs_diff(dense, sparse, SB * SM));

	/* grad = f^T g, every row written (rows of silent features are zero) */
	be->gemm(be, true, false, SM, SD, SB, 1.0f, f, SM, g, SD, 0.0f, dense, SD);
	be->fill(be, sparse, SM * SD, 123.0f);
	be->sparse_weight_grad(be, col_ptr, row_idx, f, g, sparse, SB, SM, SD);
	CHECK_MSG(max_abs_diff(dense, sparse, SM * SD) < 1e-5, "weight gradient differs by %g",
			  max_abs_diff(dense, sparse, SM * SD));

	free(f);
	free(w);
	free(g);
	free(dense);
	free(sparse);
	free(col_idx);
	free(row_idx);
	be->destroy(be);
}

/* One trainer step with the sparse path off (0) or forced (1). */
static void
step_with_density(double density, const char *sae_type, float *grads, double *loss)
{
	SaeConfig	cfg;
	SaeError	err;
	SaeTrainer *t;
	SaeBackend *be = sae_backend_cpu_create(0);
	size_t		n = 2 * SD * SM + SM + SD;
	float	   *p = malloc(sizeof(float) * n),
			   *x = malloc(sizeof(float) * SB * SD);
	SaeStepStats st;

	sae_config_defaults(&cfg);
	sae_config_set(&cfg, "activations_table", 's', 0, false, "t", &err);
	sae_config_set(&cfg, "activations_column", 's', 0, false, "c", &err);
	sae_config_set(&cfg, "sae_type", 's', 0, false, sae_type, &err);
	if (strcmp(sae_type, "tanh_sae") == 0)
		cfg.noise_scale = 0.3;
	cfg.d_in = SD;
	cfg.d_sae = SM;
	cfg.train_batch_size = SB;
	cfg.total_training_tokens = SB * 10;
	cfg.lr_warm_up_steps = 0;
	REQUIRE(sae_config_finish(&cfg, &err) == SAE_OK);
	REQUIRE(sae_trainer_create(&cfg, be, SB, &t, &err) == SAE_OK);
	REQUIRE(sae_trainer_set_sparse_density(t, density, &err) == SAE_OK);
	make_dense(p, (int) n, 5);
	for (int i = 0; i < SM; i++)
		p[SD * SM + i] = -1.0f;	/* b_enc: few features fire */
	make_dense(x, SB * SD, 6);
	sae_trainer_set_params(t, p, p + SD * SM, p + SD * SM + SM, p + 2 * SD * SM + SM);
	sae_trainer_step(t, x, SB, &st);
	CHECK_INT_EQ(st.sparse_path, density > 0);
	sae_trainer_get_grads(t, grads, grads + SD * SM, grads + SD * SM + SM, grads + 2 * SD * SM + SM);
	*loss = st.overall_loss;
	sae_trainer_destroy(t);
	be->destroy(be);
	free(p);
	free(x);
}

/* The largest |x_i|. */
static double
max_abs(const float *x, int n)
{
	double		m = 0;

	for (int i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

/* A whole training step gives the same gradients on both paths. */
UNIT_TEST(sparse_step_matches_dense_step)
{
	const char *types[] = {"unit_norm_sae", "tanh_sae"};
	size_t		n = 2 * SD * SM + SM + SD;

	for (int k = 0; k < 2; k++)
	{
		float	   *g_dense = malloc(sizeof(float) * n),
				   *g_sparse = malloc(sizeof(float) * n);
		double		l_dense,
					l_sparse;

		step_with_density(0, types[k], g_dense, &l_dense);
		step_with_density(1, types[k], g_sparse, &l_sparse);
		CHECK_MSG(fabs(l_dense - l_sparse) <= 1e-6 * fabs(l_dense), "%s: loss %g vs %g",
				  types[k], l_dense, l_sparse);
		/* float32 sums in different orders (sgemm's blocks, the SIMD dot products) */
		CHECK_MSG(max_abs_diff(g_dense, g_sparse, (int) n) <= 1e-5 * max_abs(g_dense, (int) n),
				  "%s: gradients differ by %g (largest %g)", types[k],
				  max_abs_diff(g_dense, g_sparse, (int) n), max_abs(g_dense, (int) n));
		free(g_dense);
		free(g_sparse);
	}
}
