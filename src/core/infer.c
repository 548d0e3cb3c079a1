/*
 * infer.c — encode and reconstruct with trained weights (see infer.h).
 */
#include "infer.h"

#include <stdlib.h>

struct SaeWeights
{
	SaeBackend *be;
	int			d,
				m;
	SaeActivation act;
	float		a;				/* 1 if b_dec is subtracted from the input */
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec;
};

/* Allocate n floats on the backend and copy host data there. */
static float *
upload(SaeBackend *be, const float *src, size_t n)
{
	float	   *p = be->alloc(be, n * sizeof(float));

	if (p != NULL)
		be->to_device(be, p, src, n * sizeof(float));
	return p;
}

int
sae_weights_create(SaeBackend *be, int d, int m, int sae_type, bool apply_b_dec,
				   const float *w_enc, const float *b_enc, const float *w_dec,
				   const float *b_dec, SaeWeights **out, SaeError *err)
{
	SaeWeights *w = calloc(1, sizeof(SaeWeights));

	*out = NULL;
	if (w == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
	w->be = be;
	w->d = d;
	w->m = m;
	w->act = sae_type == SAE_TYPE_TANH ? SAE_ACT_TANH_RELU : SAE_ACT_RELU;
	w->a = apply_b_dec ? 1.0f : 0.0f;
	w->w_enc = upload(be, w_enc, (size_t) d * m);
	w->b_enc = upload(be, b_enc, m);
	w->w_dec = upload(be, w_dec, (size_t) m * d);
	w->b_dec = upload(be, b_dec, d);
	if (!w->w_enc || !w->b_enc || !w->w_dec || !w->b_dec)
	{
		sae_weights_destroy(w);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading SAE weights");
	}
	*out = w;
	return SAE_OK;
}

void
sae_weights_destroy(SaeWeights *w)
{
	float	   *bufs[4];

	if (w == NULL)
		return;
	bufs[0] = w->w_enc;
	bufs[1] = w->b_enc;
	bufs[2] = w->w_dec;
	bufs[3] = w->b_dec;
	for (int i = 0; i < 4; i++)
		if (bufs[i])
			w->be->free(w->be, bufs[i]);
	free(w);
}

int
sae_weights_apply(SaeWeights *w, const float *x, int n, float *features,
				  float *recon, SaeError *err)
{
	SaeBackend *be = w->be;
	size_t		d = w->d,
				m = w->m;
	float	   *xd = be->alloc(be, sizeof(float) * n * d);
	float	   *h = be->alloc(be, sizeof(float) * n * m);
	float	   *f = be->alloc(be, sizeof(float) * n * m);
	float	   *norm = be->alloc(be, sizeof(float) * n);
	float	   *xh = recon ? be->alloc(be, sizeof(float) * n * d) : NULL;
	int			rc = SAE_OK;

	if (!xd || !h || !f || !norm || (recon && !xh))
		rc = sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding %d rows", n);
	else
	{
		be->to_device(be, xd, x, sizeof(float) * n * d);
		be->add_row_vector(be, xd, xd, w->b_dec, n, (int) d, -w->a);
		be->gemm(be, false, false, n, (int) m, (int) d, 1.0f, xd, (int) d, w->w_enc, (int) m, 0.0f, h, (int) m);
		be->encode_activate(be, h, w->b_enc, f, n, (int) m, w->act, 0.0f, 0, 0, 1.0, norm, NULL);
		be->to_host(be, features, f, sizeof(float) * n * m);
		if (recon)
		{
			be->gemm(be, false, false, n, (int) d, (int) m, 1.0f, f, (int) m, w->w_dec, (int) d, 0.0f, xh, (int) d);
			be->add_row_vector(be, xh, xh, w->b_dec, n, (int) d, 1.0f);
			be->to_host(be, recon, xh, sizeof(float) * n * d);
		}
	}
	if (xd)
		be->free(be, xd);
	if (h)
		be->free(be, h);
	if (f)
		be->free(be, f);
	if (norm)
		be->free(be, norm);
	if (xh)
		be->free(be, xh);
	return rc;
}
