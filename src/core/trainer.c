/*
 * trainer.c — one SAE, its gradients and its Adam state.
 *
 * The training step is SAELens v1.0's _train_step (reference/saelens.md
 * §2.2–2.5) written out by hand: forward, loss, backward, decoder gradient
 * projection, Adam.  The backward pass computes only what the parameters
 * need: the gradient of b_dec through the encoder input is
 * -W_enc (sum_b dh_b), a matrix-vector product, where autograd would form
 * the full B x d input gradient with a sixth GEMM.
 *
 * When few features fire (density below SAE_SPARSE_DENSITY, the usual
 * state once the L1 penalty has done its work) the decoder, the gradient
 * into h and both weight gradients touch only the active entries: four of
 * the five matrix products become sparse, and only x_c W_enc stays dense.
 *
 * Parameters, gradients and both Adam moments are each one contiguous
 * block laid out [W_enc^T | b_enc | W_dec | b_dec], so Adam is one call.
 * W_enc is kept transposed (m x d, one row per feature) so that a
 * feature's encoder gradient is a contiguous row, like its decoder's; the
 * get/set functions speak SAELens's d x m.
 */
#include "trainer.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * Use the sparse path when at most this fraction of f is positive.  Measured
 * with bench/profile_step.c (d_in 1024, 16384 features, batch 4096, 2 cores):
 * sparse steps cost about 0.95 s + 5.5 ms per unit of L0, dense ones 5.1 s,
 * so the sparse path wins up to L0 ~ 700 (4.3%).
 */
#define SAE_SPARSE_DENSITY 0.04

struct SaeTrainer
{
	SaeConfig	cfg;
	SaeBackend *be;
	int			d,
				m,
				max_rows;
	size_t		n_params;
	int64_t		total_steps;
	int64_t		step;
	int64_t		n_tokens;

	/* [W_enc^T | b_enc | W_dec | b_dec] for params, grads and Adam moments */
	float	   *params,
			   *grads,
			   *adam_m,
			   *adam_v;
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec;
	float	   *g_w_enc,
			   *g_b_enc,
			   *g_w_dec,
			   *g_b_dec;

	/* per-batch work buffers */
	float	   *x_c,
			   *h,
			   *f,
			   *dh,
			   *x_hat,
			   *d_x_hat,
			   *ghost_y,
			   *row_norm,
			   *row_w,
			   *x_sq;
	float	   *host_rows;		/* B floats on the host, for row reductions */

	/* the active entries of f, for the sparse path */
	double		sparse_density;
	int64_t		sparse_capacity;
	int32_t    *row_ptr,
			   *col_idx,
			   *col_ptr,
			   *row_idx;

	/* the geometric median's iterate, and who may cancel it */
	float	   *median_mu,
			   *median_next;
	bool		(*should_stop) (void *);
	void	   *stop_ctx;

	/* dead-feature and sparsity tracking */
	float	   *fire_count,
			   *steps_since_fired,
			   *act_freq,
			   *dead_mask;
	int64_t		n_dead;			/* dead features for the next step's ghost grads */
	int64_t		window_tokens;
};

#define PARAM_OFFSETS(d, m) \
	size_t off_b_enc = (size_t) (d) * (m), off_w_dec = off_b_enc + (m), \
		off_b_dec = off_w_dec + (size_t) (m) * (d)

size_t
sae_trainer_memory_bytes(int64_t d, int64_t m, int64_t rows)
{
	size_t		params = (size_t) (2 * d * m + m + d);
	size_t		work = (size_t) rows * (3 * m + 4 * d + 3) + 4 * (size_t) m + 2 * (size_t) d;
	size_t		sparse = 2 * (size_t) (rows * m * SAE_SPARSE_DENSITY) + rows + m + 2;

	return sizeof(float) * (4 * params + work) + sizeof(int32_t) * sparse;
}

/* Allocate n floats on the backend, remembering failure. */
static float *
alloc_floats(SaeTrainer *t, size_t n, bool *failed)
{
	float	   *p = t->be->alloc(t->be, n * sizeof(float));

	if (p == NULL)
		*failed = true;
	return p;
}

int
sae_trainer_create(const SaeConfig *cfg, SaeBackend *be, int max_rows,
				   SaeTrainer **out, SaeError *err)
{
	SaeTrainer *t = calloc(1, sizeof(SaeTrainer));
	bool		failed = false;
	size_t		d = cfg->d_in,
				m = cfg->d_sae,
				B = max_rows;

	*out = NULL;
	if (t == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	t->cfg = *cfg;
	t->be = be;
	t->d = (int) d;
	t->m = (int) m;
	t->max_rows = max_rows;
	t->total_steps = sae_config_total_steps(cfg);
	t->n_params = 2 * d * m + m + d;
	t->params = alloc_floats(t, t->n_params, &failed);
	t->grads = alloc_floats(t, t->n_params, &failed);
	t->adam_m = alloc_floats(t, t->n_params, &failed);
	t->adam_v = alloc_floats(t, t->n_params, &failed);
	t->x_c = alloc_floats(t, B * d, &failed);
	t->h = alloc_floats(t, B * m, &failed);
	t->f = alloc_floats(t, B * m, &failed);
	t->dh = alloc_floats(t, B * m, &failed);
	t->x_hat = alloc_floats(t, B * d, &failed);
	t->d_x_hat = alloc_floats(t, B * d, &failed);
	t->ghost_y = alloc_floats(t, B * d, &failed);
	t->row_norm = alloc_floats(t, B, &failed);
	t->row_w = alloc_floats(t, B, &failed);
	t->x_sq = alloc_floats(t, B, &failed);
	t->fire_count = alloc_floats(t, m, &failed);
	t->steps_since_fired = alloc_floats(t, m, &failed);
	t->act_freq = alloc_floats(t, m, &failed);
	t->dead_mask = alloc_floats(t, m, &failed);
	t->median_mu = alloc_floats(t, d, &failed);
	t->median_next = alloc_floats(t, d, &failed);
	t->host_rows = calloc(2 * B, sizeof(float));
	/*
	 * On a GPU cuBLAS makes the dense products cheap and the sparse path has
	 * not been measured to win there: off unless asked for
	 * (sae_trainer_set_sparse_density; bench/gpu_bench.c measures both).
	 */
	t->sparse_density = B * m > INT32_MAX || !be->host_memory ? 0 : SAE_SPARSE_DENSITY;
	t->sparse_capacity = (int64_t) (B * m * t->sparse_density);
	t->row_ptr = be->alloc(be, sizeof(int32_t) * (B + 1));
	t->col_ptr = be->alloc(be, sizeof(int32_t) * (m + 1));
	t->col_idx = be->alloc(be, sizeof(int32_t) * (t->sparse_capacity + 1));
	t->row_idx = be->alloc(be, sizeof(int32_t) * (t->sparse_capacity + 1));
	failed |= !t->row_ptr || !t->col_ptr || !t->col_idx || !t->row_idx;
	if (failed || t->host_rows == NULL)
	{
		sae_trainer_destroy(t);
		sae_error(err, SAE_ERR_OUT_OF_MEMORY, "could not allocate %zu bytes for the SAE on the %s backend",
				  sae_trainer_memory_bytes(d, m, B), be->name);
		return sae_error_hint(err, "Use a smaller d_sae or train_batch_size.");
	}
	{
		PARAM_OFFSETS(d, m);

		t->w_enc = t->params;
		t->b_enc = t->params + off_b_enc;
		t->w_dec = t->params + off_w_dec;
		t->b_dec = t->params + off_b_dec;
		t->g_w_enc = t->grads;
		t->g_b_enc = t->grads + off_b_enc;
		t->g_w_dec = t->grads + off_w_dec;
		t->g_b_dec = t->grads + off_b_dec;
	}
	*out = t;
	return SAE_OK;
}

/* Free one backend buffer if it was allocated. */
static void
free_buffer(SaeBackend *be, void *p)
{
	if (p != NULL)
		be->free(be, p);
}

void
sae_trainer_destroy(SaeTrainer *t)
{
	void	   *bufs[24];
	size_t		n = 0;

	if (t == NULL)
		return;
	bufs[n++] = t->params;
	bufs[n++] = t->grads;
	bufs[n++] = t->adam_m;
	bufs[n++] = t->adam_v;
	bufs[n++] = t->x_c;
	bufs[n++] = t->h;
	bufs[n++] = t->f;
	bufs[n++] = t->dh;
	bufs[n++] = t->x_hat;
	bufs[n++] = t->d_x_hat;
	bufs[n++] = t->ghost_y;
	bufs[n++] = t->row_norm;
	bufs[n++] = t->row_w;
	bufs[n++] = t->x_sq;
	bufs[n++] = t->fire_count;
	bufs[n++] = t->steps_since_fired;
	bufs[n++] = t->act_freq;
	bufs[n++] = t->dead_mask;
	bufs[n++] = t->row_ptr;
	bufs[n++] = t->col_idx;
	bufs[n++] = t->col_ptr;
	bufs[n++] = t->row_idx;
	bufs[n++] = t->median_mu;
	bufs[n++] = t->median_next;
	for (size_t i = 0; i < n; i++)
		free_buffer(t->be, bufs[i]);
	free(t->host_rows);
	free(t);
}

/* LAPACK (from OpenBLAS): Householder QR and the explicit Q. */
extern void dgeqrf_(const int *m, const int *n, double *a, const int *lda,
					double *tau, double *work, const int *lwork, int *info);
extern void dorgqr_(const int *m, const int *n, const int *k, double *a,
					const int *lda, const double *tau, double *work,
					const int *lwork, int *info);

/*
 * torch.nn.init.orthogonal_(W_dec.T).T: the Q of a Gaussian matrix's QR,
 * signs fixed by diag(R), so W_dec has orthonormal columns (m >= d) or
 * orthonormal rows (m < d).
 */
static int
orthogonal_init(const SaeConfig *cfg, float *w_dec, int m, int d, SaeError *err)
{
	int			rows = m >= d ? m : d,
				cols = m >= d ? d : m;
	int			lwork = -1,
				info = 0;
	double	   *a = malloc(sizeof(double) * (size_t) rows * cols);
	double	   *tau = malloc(sizeof(double) * cols);
	double	   *sign = malloc(sizeof(double) * cols);
	double		query;
	double	   *work = NULL;

	if (a == NULL || tau == NULL || sign == NULL)
		goto oom;
	for (size_t i = 0; i < (size_t) rows * cols; i++)
		a[i] = sae_normal(cfg->seed, SAE_STREAM_INIT_W_DEC, i);
	dgeqrf_(&rows, &cols, a, &rows, tau, &query, &lwork, &info);
	lwork = (int) query;
	work = malloc(sizeof(double) * (lwork > 0 ? lwork : 1));
	if (work == NULL)
		goto oom;
	dgeqrf_(&rows, &cols, a, &rows, tau, work, &lwork, &info);
	for (int j = 0; j < cols; j++)
		sign[j] = a[j + (size_t) j * rows] < 0 ? -1.0 : 1.0;
	dorgqr_(&rows, &cols, &cols, a, &rows, tau, work, &lwork, &info);
	/* a is column-major rows x cols: element (i, j) at a[i + j*rows] */
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < cols; j++)
		{
			float		q = (float) (a[i + (size_t) j * rows] * sign[j]);

			if (m >= d)
				w_dec[(size_t) i * d + j] = q;
			else
				w_dec[(size_t) j * d + i] = q;
		}
	free(a);
	free(tau);
	free(sign);
	free(work);
	return info == 0 ? SAE_OK : sae_error(err, SAE_ERR_INTERNAL, "QR factorisation failed (info %d)", info);
oom:
	free(a);
	free(tau);
	free(sign);
	free(work);
	return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for the orthogonal decoder init");
}

/* kaiming_uniform_ with torch's fan_in = size(1): U(-sqrt(6/fan_in), +sqrt(6/fan_in)). */
static void
kaiming_uniform(float *w, size_t n, int fan_in, int64_t seed, uint64_t stream)
{
	double		bound = sqrt(6.0 / fan_in);

	for (size_t i = 0; i < n; i++)
		w[i] = (float) ((2 * sae_uniform(seed, stream, i) - 1) * bound);
}

int
sae_trainer_init_params(SaeTrainer *t, SaeError *err)
{
	size_t		d = t->d,
				m = t->m;
	float	   *host = calloc(t->n_params, sizeof(float));
	int			rc = SAE_OK;

	if (host == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory initialising the SAE");
	{
		PARAM_OFFSETS(d, m);

		kaiming_uniform(host, d * m, (int) m, t->cfg.seed, SAE_STREAM_INIT_W_ENC);
		if (t->cfg.decoder_orthogonal_init)
			rc = orthogonal_init(&t->cfg, host + off_w_dec, (int) m, (int) d, err);
		else
			kaiming_uniform(host + off_w_dec, m * d, (int) d, t->cfg.seed, SAE_STREAM_INIT_W_DEC);
		(void) off_b_dec;
	}
	if (rc == SAE_OK)
	{
		t->be->to_device(t->be, t->params, host, t->n_params * sizeof(float));
		if (t->cfg.sae_type == SAE_TYPE_UNIT_NORM)
			t->be->normalize_rows(t->be, t->w_dec, (int) m, (int) d);
	}
	free(host);
	return rc;
}

/* out (cols x rows) = in (rows x cols) transposed, on the host. */
static void
transpose(const float *in, float *out, size_t rows, size_t cols)
{
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			out[c * rows + r] = in[r * cols + c];
}

void
sae_trainer_set_params(SaeTrainer *t, const float *w_enc, const float *b_enc,
					   const float *w_dec, const float *b_dec)
{
	size_t		d = t->d,
				m = t->m;
	SaeBackend *be = t->be;

	float	   *w_enc_t = malloc(sizeof(float) * d * m);

	transpose(w_enc, w_enc_t, d, m);
	be->to_device(be, t->w_enc, w_enc_t, sizeof(float) * d * m);
	free(w_enc_t);
	be->to_device(be, t->b_enc, b_enc, sizeof(float) * m);
	be->to_device(be, t->w_dec, w_dec, sizeof(float) * m * d);
	be->to_device(be, t->b_dec, b_dec, sizeof(float) * d);
}

/* Copy the four parts of a [W_enc^T | b_enc | W_dec | b_dec] block to the host. */
static void
download_block(SaeTrainer *t, const float *block, float *w_enc, float *b_enc,
			   float *w_dec, float *b_dec)
{
	size_t		d = t->d,
				m = t->m;
	SaeBackend *be = t->be;

	PARAM_OFFSETS(d, m);
	if (w_enc)
	{
		float	   *w_enc_t = malloc(sizeof(float) * d * m);

		be->to_host(be, w_enc_t, block, sizeof(float) * d * m);
		transpose(w_enc_t, w_enc, m, d);
		free(w_enc_t);
	}
	if (b_enc)
		be->to_host(be, b_enc, block + off_b_enc, sizeof(float) * m);
	if (w_dec)
		be->to_host(be, w_dec, block + off_w_dec, sizeof(float) * m * d);
	if (b_dec)
		be->to_host(be, b_dec, block + off_b_dec, sizeof(float) * d);
}

void
sae_trainer_get_params(SaeTrainer *t, float *w_enc, float *b_enc,
					   float *w_dec, float *b_dec)
{
	download_block(t, t->params, w_enc, b_enc, w_dec, b_dec);
}

void
sae_trainer_get_grads(SaeTrainer *t, float *w_enc, float *b_enc,
					  float *w_dec, float *b_dec)
{
	download_block(t, t->grads, w_enc, b_enc, w_dec, b_dec);
}

int
sae_trainer_set_sparse_density(SaeTrainer *t, double max_density, SaeError *err)
{
	SaeBackend *be = t->be;
	int64_t		capacity = (int64_t) ((double) t->max_rows * t->m * max_density);

	if ((int64_t) t->max_rows * t->m > INT32_MAX)
		return sae_error(err, SAE_ERR_LIMIT, "the sparse path needs train_batch_size * d_sae < 2^31");
	if (capacity > t->sparse_capacity)
	{
		be->free(be, t->col_idx);
		be->free(be, t->row_idx);
		t->col_idx = be->alloc(be, sizeof(int32_t) * (capacity + 1));
		t->row_idx = be->alloc(be, sizeof(int32_t) * (capacity + 1));
		t->sparse_capacity = capacity;
		if (t->col_idx == NULL || t->row_idx == NULL)
		{
			t->sparse_density = 0;
			t->sparse_capacity = 0;
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for the sparse path");
		}
	}
	t->sparse_density = max_density;
	return SAE_OK;
}

int64_t
sae_trainer_dead_features(const SaeTrainer *t)
{
	return t->n_dead;
}

/*
 * Weiszfeld from the mean, in the two device vectors mu and next (so a
 * cancel that unwinds from should_stop leaks nothing).  Returns
 * SAE_ERR_CANCELLED if should_stop says so between iterations.
 */
static int
weiszfeld(SaeBackend *be, const float *x, int64_t n, int d, int maxiter, float *mu,
		  float *next, float *median, double *objective, bool (*should_stop) (void *),
		  void *stop_ctx, SaeError *err)
{
	double		prev = 0,
				obj = 0;

	be->col_sum(be, mu, x, (int) n, d);
	be->to_host(be, median, mu, sizeof(float) * d);
	for (int j = 0; j < d; j++)
		median[j] = (float) (median[j] / (double) n);
	be->to_device(be, mu, median, sizeof(float) * d);
	for (int it = 0; it < maxiter; it++)
	{
		float	   *tmp;

		if (should_stop && should_stop(stop_ctx))
			return sae_error(err, SAE_ERR_CANCELLED, "training cancelled");
		obj = be->weiszfeld_step(be, x, n, d, mu, next, 1e-6);
		/* SAELens's ftol test (1e-20 relative) practically never stops early */
		if (it > 0 && fabs(prev - obj) <= 1e-20 * obj)
			break;
		prev = obj;
		tmp = mu;
		mu = next;
		next = tmp;
	}
	be->to_host(be, median, mu, sizeof(float) * d);
	if (objective)
		*objective = obj;
	return SAE_OK;
}

int
sae_geometric_median(SaeBackend *be, const float *x, int64_t n, int d, int maxiter,
					 float *median, double *objective, SaeError *err)
{
	float	   *mu = be->alloc(be, sizeof(float) * d);
	float	   *next = be->alloc(be, sizeof(float) * d);
	int			rc;

	if (mu == NULL || next == NULL)
		rc = sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory for the geometric median");
	else
		rc = weiszfeld(be, x, n, d, maxiter, mu, next, median, objective, NULL, NULL, err);
	free_buffer(be, mu);
	free_buffer(be, next);
	return rc;
}

void
sae_trainer_set_stop(SaeTrainer *t, bool (*should_stop) (void *), void *ctx)
{
	t->should_stop = should_stop;
	t->stop_ctx = ctx;
}

int
sae_trainer_init_b_dec(SaeTrainer *t, const float *x, int64_t n, double *objective,
					   SaeError *err)
{
	float	   *host = calloc(t->d, sizeof(float));
	int			rc = SAE_OK;

	if (host == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	if (objective)
		*objective = 0;
	switch (t->cfg.b_dec_init_method)
	{
		case SAE_BDEC_GEOMETRIC_MEDIAN:
			rc = weiszfeld(t->be, x, n, t->d, 100, t->median_mu, t->median_next, host, objective,
						   t->should_stop, t->stop_ctx, err);
			break;
		case SAE_BDEC_MEAN:
			t->be->col_sum(t->be, t->b_dec, x, (int) n, t->d);
			t->be->to_host(t->be, host, t->b_dec, sizeof(float) * t->d);
			for (int j = 0; j < t->d; j++)
				host[j] = (float) (host[j] / (double) n);
			break;
		case SAE_BDEC_ZEROS:
			break;
	}
	if (rc == SAE_OK)
		t->be->to_device(t->be, t->b_dec, host, sizeof(float) * t->d);
	free(host);
	return rc;
}

/* Sum of a device vector of B floats, on the host (B is small). */
static double
host_sum(SaeTrainer *t, const float *v, const float *scale, int B)
{
	double		s = 0;

	t->be->to_host(t->be, t->host_rows, v, sizeof(float) * B);
	if (scale)
		t->be->to_host(t->be, t->host_rows + B, scale, sizeof(float) * B);
	for (int b = 0; b < B; b++)
		s += (double) t->host_rows[b] * (scale ? t->host_rows[B + b] : 1.0f);
	return s;
}

/*
 * Ghost grads (saelens.md §1.5): an exp-activated copy of the dead features
 * is trained to explain half of the residual.  Adds its gradients into
 * g_w_dec and dh; returns the ghost loss.  Uses f as scratch (f is no
 * longer needed once g_w_dec has its main term).
 */
static double
ghost_grads(SaeTrainer *t, const float *x, int B)
{
	SaeBackend *be = t->be;
	int			d = t->d,
				m = t->m;
	double		loss;

	be->exp_masked(be, t->f, t->h, t->dead_mask, B, m);
	be->gemm(be, false, false, B, d, m, 1.0f, t->f, m, t->w_dec, d, 0.0f, t->ghost_y, d);
	loss = be->ghost_loss(be, x, t->x_hat, t->ghost_y, t->row_w, t->cfg.mse_dense_batch, B, d);
	be->gemm(be, true, false, m, d, B, 1.0f, t->f, m, t->ghost_y, d, 1.0f, t->g_w_dec, d);
	be->gemm(be, false, true, B, m, d, 1.0f, t->ghost_y, d, t->w_dec, d, 0.0f, t->f, m);
	be->ghost_backward(be, t->dh, t->f, t->h, t->dead_mask, B, m);
	return loss;
}

/*
 * Forward pass: x_c, h, f, x_hat.  Returns the batch's total L0 and
 * whether the sparse path was taken (then the CSR/CSC lists of f are set).
 */
static double
forward(SaeTrainer *t, const float *x, int B, SaeActivation act, bool *sparse)
{
	SaeBackend *be = t->be;
	const SaeConfig *cfg = &t->cfg;
	int			d = t->d,
				m = t->m;
	double		l0;

	be->add_row_vector(be, t->x_c, x, t->b_dec, B, d, cfg->apply_b_dec_to_input ? -1.0f : 0.0f);
	be->gemm(be, false, true, B, m, d, 1.0f, t->x_c, d, t->w_enc, d, 0.0f, t->h, m);
	l0 = be->encode_activate(be, t->h, t->b_enc, t->f, B, m, act, (float) cfg->noise_scale,
							 (uint64_t) cfg->seed, SAE_STREAM_NOISE + (uint64_t) t->step,
							 cfg->lp_norm, t->row_norm, t->fire_count);
	*sparse = l0 <= t->sparse_density * B * m &&
		be->sparsify(be, t->f, B, m, t->row_ptr, t->col_idx, t->col_ptr, t->row_idx,
					 t->sparse_capacity) >= 0;
	if (*sparse)
		be->sparse_decode(be, t->row_ptr, t->col_idx, t->f, t->w_dec, t->x_hat, B, m, d);
	else
		be->gemm(be, false, false, B, d, m, 1.0f, t->f, m, t->w_dec, d, 0.0f, t->x_hat, d);
	be->add_row_vector(be, t->x_hat, t->x_hat, t->b_dec, B, d, 1.0f);
	return l0;
}

/*
 * Backward pass from d_x_hat (set by the MSE op) to every parameter's
 * gradient, ghost grads included.  Returns the ghost loss.
 */
static double
backward(SaeTrainer *t, const float *x, int B, SaeActivation act, bool sparse)
{
	SaeBackend *be = t->be;
	const SaeConfig *cfg = &t->cfg;
	int			d = t->d,
				m = t->m;
	double		ghost = 0;

	if (sparse)
		be->sparse_backprop(be, t->row_ptr, t->col_idx, t->d_x_hat, t->w_dec, t->dh, B, m, d);
	else
		be->gemm(be, false, true, B, m, d, 1.0f, t->d_x_hat, d, t->w_dec, d, 0.0f, t->dh, m);
	be->activation_backward(be, t->dh, t->f, t->row_norm,
							cfg->l1_l2_squared ? t->x_sq : NULL,
							(float) (cfg->l1_coefficient / B), cfg->lp_norm, B, m, act);
	if (sparse)
		be->sparse_weight_grad(be, t->col_ptr, t->row_idx, t->f, t->d_x_hat, t->g_w_dec, B, m, d);
	else
		be->gemm(be, true, false, m, d, B, 1.0f, t->f, m, t->d_x_hat, d, 0.0f, t->g_w_dec, d);
	if (cfg->use_ghost_grads && t->n_dead > 0)
	{
		ghost = ghost_grads(t, x, B);
		sparse = false;			/* ghost gradients reach the dead columns of dh */
	}
	if (sparse)
		be->sparse_weight_grad(be, t->col_ptr, t->row_idx, t->dh, t->x_c, t->g_w_enc, B, m, d);
	else
		be->gemm(be, true, false, m, d, B, 1.0f, t->dh, m, t->x_c, d, 0.0f, t->g_w_enc, d);
	be->col_sum(be, t->g_b_enc, t->dh, B, m);
	be->col_sum(be, t->g_b_dec, t->d_x_hat, B, d);
	if (cfg->apply_b_dec_to_input)
		be->gemm(be, true, false, d, 1, m, -1.0f, t->w_enc, d, t->g_b_enc, 1, 1.0f, t->g_b_dec, 1);
	return ghost;
}

/* SAELens's logged metrics of a step from the ops' sums. */
static void
step_stats(const SaeTrainer *t, int B, const SaeMseStats *ms, double l0, double s_sum,
		   double ghost, SaeStepStats *st)
{
	double		ev;

	st->batch_rows = B;
	st->mse_loss = ms->mse_sum / ((double) B * t->d);
	st->l1_loss = s_sum / B;
	st->ghost_grad_loss = ghost;
	st->overall_loss = st->mse_loss + t->cfg.l1_coefficient * st->l1_loss + ghost;
	st->l0 = l0 / B;
	st->explained_variance = ms->sst > 0 ? 1 - ms->sse / ms->sst : 0;
	ev = ms->ev_legacy_sum / B;
	st->explained_variance_legacy = ev;
	st->explained_variance_std = B > 1 ? sqrt(fmax(0, (ms->ev_legacy_sumsq - B * ev * ev) / (B - 1))) : 0;
	st->l2_norm = ms->l2_norm_out / B;
	st->l2_ratio = ms->l2_ratio / B;
}

void
sae_trainer_step(SaeTrainer *t, const float *x, int B, SaeStepStats *st)
{
	SaeBackend *be = t->be;
	const SaeConfig *cfg = &t->cfg;
	bool		unit_norm = cfg->sae_type == SAE_TYPE_UNIT_NORM;
	SaeActivation act = unit_norm ? SAE_ACT_RELU : SAE_ACT_TANH_RELU;
	SaeMseStats ms;
	double		lr = sae_lr_at(cfg, t->total_steps, t->step);
	double		l0,
				s_sum,
				ghost;
	bool		sparse;

	memset(st, 0, sizeof(*st));
	st->dead_features = t->n_dead;
	if (unit_norm)
		be->normalize_rows(be, t->w_dec, t->m, t->d);
	l0 = forward(t, x, B, act, &sparse);
	be->mse_forward_backward(be, x, t->x_hat, B, t->d, cfg->mse_dense_batch, t->d_x_hat,
							 t->row_w, t->x_sq, &ms);
	s_sum = host_sum(t, t->row_norm, cfg->l1_l2_squared ? t->x_sq : NULL, B);
	ghost = backward(t, x, B, act, sparse);
	if (unit_norm)
		be->project_rows(be, t->g_w_dec, t->w_dec, t->m, t->d);
	be->adam(be, t->params, t->grads, t->adam_m, t->adam_v, t->n_params, lr,
			 cfg->adam_beta1, cfg->adam_beta2, 1e-8, t->step + 1);
	t->n_dead = be->update_fire_stats(be, t->fire_count, t->steps_since_fired, t->act_freq,
									  t->dead_mask, t->m, (float) cfg->dead_feature_window);
	t->window_tokens += B;
	t->n_tokens += cfg->train_batch_size;

	step_stats(t, B, &ms, l0, s_sum, ghost, st);
	st->step = t->step;
	st->n_tokens = t->n_tokens;
	/* with ghost grads active, the encoder gradient was dense */
	st->sparse_path = sparse && !(cfg->use_ghost_grads && st->dead_features > 0);
	st->lr = lr;
	t->step++;
}

void
sae_trainer_feature_density(SaeTrainer *t, float *rate)
{
	t->be->to_host(t->be, rate, t->act_freq, sizeof(float) * t->m);
	for (int i = 0; i < t->m; i++)
		rate[i] = t->window_tokens > 0 ? (float) (rate[i] / (double) t->window_tokens) : 0;
}

void
sae_trainer_sparsity(SaeTrainer *t, SaeSparsityStats *st, bool reset)
{
	float	   *rate = malloc(sizeof(float) * t->m);
	double		sum = 0;

	memset(st, 0, sizeof(*st));
	if (rate != NULL)
	{
		sae_trainer_feature_density(t, rate);
		for (int i = 0; i < t->m; i++)
		{
			sum += log10(rate[i] + 1e-10);
			st->below_1e5 += rate[i] < 1e-5;
			st->below_1e6 += rate[i] < 1e-6;
		}
		st->mean_log10_feature_sparsity = sum / t->m;
		free(rate);
	}
	if (reset)
	{
		t->be->fill(t->be, t->act_freq, t->m, 0.0f);
		t->window_tokens = 0;
	}
}

void
sae_trainer_finalize(SaeTrainer *t)
{
	if (t->cfg.sae_type == SAE_TYPE_UNIT_NORM)
		t->be->normalize_rows(t->be, t->w_dec, t->m, t->d);
}
