/*
 * backend.h — the one door to tensor arithmetic.
 *
 * The trainer, the activation store and the metrics never read or write
 * tensor memory themselves: they hold opaque pointers returned by alloc()
 * and ask the backend to move data and compute.  The CPU backend
 * (backend_cpu.c, OpenBLAS) is the reference; a CUDA backend implements the
 * same table with device pointers (kernels/, opened through device.h), so
 * nothing above this interface changes.
 *
 * Conventions: matrices are row-major float32; "rows x cols".  B is the
 * number of tokens in a batch, d = d_in, m = d_sae.  Reductions that the
 * trainer needs on the host come back through double pointers (the CUDA
 * backend synchronises there, a few times per step).
 */
#ifndef SAE_BACKEND_H
#define SAE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum SaeActivation
{
	SAE_ACT_RELU,				/* f = relu(h) */
	SAE_ACT_TANH_RELU			/* f = tanh(relu(h)), the tanh_sae of the seed */
} SaeActivation;

/* What the fused MSE op measures on one batch (sums over the batch). */
typedef struct SaeMseStats
{
	double		mse_sum;		/* sum of E_bj (normalised if dense_batch) */
	double		sse;			/* sum ||x_b - xhat_b||^2 (unnormalised) */
	double		sst;			/* sum ||x_b - mean(x)||^2 */
	double		ev_legacy_sum;	/* sum_b (1 - ||x_b-xhat_b||^2/||x_b-mean||^2) */
	double		ev_legacy_sumsq;	/* sum of squares of the same */
	double		l2_norm_out;	/* sum_b ||xhat_b|| */
	double		l2_ratio;		/* sum_b ||xhat_b|| / ||x_b|| */
} SaeMseStats;

/* The MLP nonlinearities of the language models (HF activation_function). */
typedef enum SaeLmAct
{
	SAE_LM_GELU_NEW,			/* "gelu_new": the tanh approximation GPT-2 uses */
	SAE_LM_GELU,				/* "gelu": the exact erf form */
	SAE_LM_RELU
} SaeLmAct;

typedef struct SaeBackend SaeBackend;

struct SaeBackend
{
	const char *name;
	void	   *impl;

	/* memory: alloc returns zeroed memory or NULL */
	void	   *(*alloc) (SaeBackend *be, size_t bytes);
	void		(*free) (SaeBackend *be, void *ptr);
	void		(*to_device) (SaeBackend *be, void *dst, const void *src, size_t bytes);
	void		(*to_host) (SaeBackend *be, void *dst, const void *src, size_t bytes);
	/* dst and src must not overlap (the CUDA backend's copy does not allow it) */
	void		(*copy) (SaeBackend *be, void *dst, const void *src, size_t bytes);
	void		(*fill) (SaeBackend *be, float *x, size_t n, float value);

	/* C = alpha * op(A) op(B) + beta * C, op(A) is M x K, op(B) is K x N */
	void		(*gemm) (SaeBackend *be, bool trans_a, bool trans_b,
						 int M, int N, int K, float alpha,
						 const float *A, int lda, const float *B, int ldb,
						 float beta, float *C, int ldc);

	/* dst[r] = src[idx[r]] for rows of width cols; idx is device int32 */
	void		(*gather_rows) (SaeBackend *be, float *dst, const float *src,
								const int32_t *idx, int rows, int cols);
	/* dst = src + alpha * vec broadcast over rows (dst may be src) */
	void		(*add_row_vector) (SaeBackend *be, float *dst, const float *src,
								   const float *vec, int rows, int cols, float alpha);
	/* dst[c] = sum over rows of src[r][c] */
	void		(*col_sum) (SaeBackend *be, float *dst, const float *src, int rows, int cols);
	/* scale each row to unit L2 norm (rows of norm 0 are left alone) */
	void		(*normalize_rows) (SaeBackend *be, float *w, int rows, int cols);
	/* g_i -= <g_i, w_i> w_i for each row: removes the radial gradient */
	void		(*project_rows) (SaeBackend *be, float *g, const float *w, int rows, int cols);

	/*
	 * Encoder nonlinearity, fused with its reductions.  On entry h holds
	 * x_c W_enc; on exit h = x_c W_enc + b_enc (pre-activation, noiseless)
	 * and f = act(h + noise_scale * N(0,1)) with noise drawn from
	 * (seed, noise_stream, b*m+i).  row_norm[b] = ||f_b||_p.  If fire_count
	 * is not NULL, fire_count[i] += #{b : f_bi > 0}.  Returns sum_b L0_b.
	 */
	double		(*encode_activate) (SaeBackend *be, float *h, const float *b_enc,
									float *f, int B, int m, SaeActivation act,
									float noise_scale, uint64_t seed,
									uint64_t noise_stream, double lp,
									float *row_norm, float *fire_count);

	/*
	 * MSE loss and its gradient.  row_w[b] = 1/(||x_b - mean(x)|| + 1e-6) if
	 * dense_batch else 1; E = (xhat - x)^2 * row_w; d_xhat = 2 E' / (B d) with
	 * E' = (xhat - x) * row_w.  x_sq[b] = ||x_b||^2 (for l2_squared L1).
	 */
	void		(*mse_forward_backward) (SaeBackend *be, const float *x,
										 const float *xhat, int B, int d,
										 bool dense_batch, float *d_xhat,
										 float *row_w, float *x_sq,
										 SaeMseStats *stats);

	/*
	 * Backward through the sparsity penalty and the nonlinearity.  On entry
	 * dh holds dL/df from the reconstruction; adds l1_scale * row_scale[b] *
	 * d||f_b||_p/df (row_scale NULL = 1) and multiplies by act'(.).
	 */
	void		(*activation_backward) (SaeBackend *be, float *dh, const float *f,
										const float *row_norm, const float *row_scale,
										float l1_scale, double lp, int B, int m,
										SaeActivation act);

	/* per-feature dead tracking: since += 1, reset where fired; freq += count; fire_count = 0. Returns #dead */
	int64_t		(*update_fire_stats) (SaeBackend *be, float *fire_count,
									  float *steps_since_fired, float *act_freq,
									  float *dead_mask, int m, float dead_window);

	/* ghost grads (SAELens calculate_ghost_grad_loss); see trainer.c */
	void		(*exp_masked) (SaeBackend *be, float *g, const float *h,
							   const float *mask, int B, int m);
	/*
	 * On entry y = g W_dec; on exit the gradient of the ghost loss w.r.t. y.
	 * The ghost MSE is normalised like the main one: by dense_batch, each
	 * row of its target r = x - xhat divided by ||r_b - mean_b r|| + 1e-6.
	 */
	double		(*ghost_loss) (SaeBackend *be, const float *x, const float *xhat,
							   float *y, const float *row_w, bool dense_batch,
							   int B, int d);
	void		(*ghost_backward) (SaeBackend *be, float *dh, const float *dg,
								   const float *h, const float *mask, int B, int m);

	/*
	 * Sparse path, used when few features fire (the usual state of a
	 * trained SAE).  sparsify lists the positive entries of f (B x m) by
	 * row (row_ptr B+1, col_idx) and by column (col_ptr m+1, row_idx);
	 * it returns nnz, or -1 if nnz would exceed capacity (then only row_ptr
	 * has been written).
	 */
	int64_t		(*sparsify) (SaeBackend *be, const float *f, int B, int m,
							 int32_t *row_ptr, int32_t *col_idx,
							 int32_t *col_ptr, int32_t *row_idx, int64_t capacity);
	/* x_hat = f W_dec over the listed entries (x_hat is overwritten) */
	void		(*sparse_decode) (SaeBackend *be, const int32_t *row_ptr,
								  const int32_t *col_idx, const float *f,
								  const float *w_dec, float *x_hat, int B, int m, int d);
	/* dh[b,i] = <d_xhat_b, W_dec_i> at the listed entries only */
	void		(*sparse_backprop) (SaeBackend *be, const int32_t *row_ptr,
									const int32_t *col_idx, const float *d_xhat,
									const float *w_dec, float *dh, int B, int m, int d);
	/* grad_i = sum over listed b of vals[b,i] * rows_b, for every row i of grad (m x d) */
	void		(*sparse_weight_grad) (SaeBackend *be, const int32_t *col_ptr,
									   const int32_t *row_idx, const float *vals,
									   const float *rows, float *grad, int B, int m, int d);

	/* PyTorch's Adam (no weight decay, no amsgrad), bias corrections by step t >= 1 */
	void		(*adam) (SaeBackend *be, float *param, const float *grad,
						 float *m1, float *m2, size_t n, double lr,
						 double beta1, double beta2, double eps, int64_t t);

	/*
	 * One Weiszfeld iteration on n points: weights w_t = 1/max(||x_t-mu||, eps),
	 * new_mu = sum w_t x_t / sum w_t.  Returns sum_t ||x_t - mu|| (the
	 * objective at mu).  mu and new_mu are device vectors of length d.
	 */
	double		(*weiszfeld_step) (SaeBackend *be, const float *x, int64_t n, int d,
								   const float *mu, float *new_mu, double eps);

	/* --- language-model ops (lm.c; CPU versions in backend_cpu_lm.c) --- */

	/*
	 * y = (x - mean) / sqrt(var + eps) for each row (biased variance);
	 * scale[r] (if not NULL) = sqrt(var + eps), TransformerLens's hook_scale.
	 */
	void		(*layernorm) (SaeBackend *be, float *y, float *scale, const float *x,
							  int rows, int cols, float eps);
	/* y = y * w + b, with w and b broadcast over rows: LayerNorm's affine part */
	void		(*scale_shift) (SaeBackend *be, float *y, const float *w, const float *b,
								int rows, int cols);
	/* y = act(x) elementwise (y may be x) */
	void		(*lm_activation) (SaeBackend *be, float *y, const float *x, size_t n, SaeLmAct act);
	/* dst = a + b elementwise (dst may be a or b) */
	void		(*add) (SaeBackend *be, float *dst, const float *a, const float *b, size_t n);

	/*
	 * Attention scores of one sequence, laid out [Tq][H][Tk]: on entry the
	 * raw products q_i . k_j; on exit q_i . k_j / divisor where query i (at
	 * position q_offset + i) may see key j, and -inf elsewhere.  Query i sees
	 * keys j <= q_offset + i, and with window > 0 only the last window of them
	 * (GPT-Neo's local attention).  (A division, as HF and TransformerLens
	 * do, not a multiplication by 1/divisor, which rounds differently.)
	 */
	void		(*attn_mask) (SaeBackend *be, float *scores, int Tq, int H, int Tk,
							  int q_offset, float divisor, int window);
	/* each row of length cols: dst = softmax(src), -inf entries giving 0 */
	void		(*softmax_rows) (SaeBackend *be, float *dst, const float *src, int rows, int cols);

	/*
	 * z = softmax(mask(q k^T / divisor)) v for B sequences and H heads at
	 * once, masked as attn_mask, with no scores or pattern kept.  Rows of q,
	 * k, v and z hold H heads of D floats; q and z have Tq rows per
	 * sequence, k and v Tk.  Returns false when out of memory.
	 */
	bool		(*attention) (SaeBackend *be, float *z, const float *q, const float *k,
							  const float *v, int B, int Tq, int Tk, int H, int D,
							  int q_offset, float divisor, int window);

	void		(*destroy) (SaeBackend *be);

	/*
	 * The first device error since the backend was made (NULL: none, or a
	 * backend that cannot fail this way).  Waits for queued work first.
	 * After an error every op does nothing, so callers check once per step.
	 */
	const char *(*device_error) (SaeBackend *be);

	/* alloc returns host memory: model weights may be used from a file mapping in place */
	bool		host_memory;
	/* whose memory alloc returns: -1 the host's, else GPU N's (see sae_backends_share_memory) */
	int			device_index;
};

/* The CPU backend (OpenBLAS).  threads <= 0 keeps OpenBLAS's default. */
SaeBackend *sae_backend_cpu_create(int threads);

/* Fill in the CPU backend's language-model ops (backend_cpu_lm.c). */
void		sae_backend_cpu_lm_ops(SaeBackend *be);

#endif
