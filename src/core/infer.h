/*
 * infer.h — a trained SAE applied to new activations (no training state).
 *
 * Encoding is the training forward pass without noise: f = act((x - a b_dec)
 * W_enc + b_enc); reconstruction adds f W_dec + b_dec.  Weights live on the
 * backend, loaded once and reused for many rows.
 */
#ifndef SAE_INFER_H
#define SAE_INFER_H

#include "backend.h"
#include "config.h"

typedef struct SaeWeights SaeWeights;

/* Upload host weights (W_enc d x m, b_enc m, W_dec m x d, b_dec d). */
int			sae_weights_create(SaeBackend *be, int d, int m, int sae_type,
							   bool apply_b_dec_to_input, const float *w_enc,
							   const float *b_enc, const float *w_dec,
							   const float *b_dec, SaeWeights **out, SaeError *err);
void		sae_weights_destroy(SaeWeights *w);

/* n host rows of x -> host feature activations (n x m) and, if recon is not NULL, x_hat (n x d). */
int			sae_weights_apply(SaeWeights *w, const float *x, int n, float *features,
							  float *recon, SaeError *err);

#endif
