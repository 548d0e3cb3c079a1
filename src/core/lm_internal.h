/*
 * lm_internal.h — the model's layout in memory, shared by the loader
 * (lm_load.c), the weight processing (lm_process.c) and the forward pass
 * (lm_forward.c).  Nothing outside those files looks inside a SaeLm.
 */
#ifndef SAE_LM_INTERNAL_H
#define SAE_LM_INTERNAL_H

#include "lm.h"
#include "safetensors.h"
#include "torch_pickle.h"

/*
 * A weight matrix used as y = x W, with W in x out.  GPT-2's Conv1D weights
 * are stored that way; GPT-Neo's nn.Linear weights are stored out x in and
 * are used transposed.  ld is the stored row length, so one column block
 * of GPT-2's fused c_attn serves as W_Q, W_K or W_V.
 */
typedef struct LmLinear
{
	const float *w;
	int			ld;
	bool		trans;
} LmLinear;

typedef struct LmLayer
{
	const float *ln1_w,
			   *ln1_b;			/* NULL after fold_ln */
	LmLinear	q,
				k,
				v;				/* d_model -> n_heads * d_head, head-major */
	const float *b_q,
			   *b_k,
			   *b_v;			/* NULL: none (GPT-Neo) */
	LmLinear	o;
	const float *b_o;
	const float *ln2_w,
			   *ln2_b;
	LmLinear	fc_in;
	const float *b_in;
	LmLinear	fc_out;
	const float *b_out;
} LmLayer;

/* Scratch for one forward pass, grown as needed and kept with the model. */
typedef struct LmWorkspace
{
	size_t		rows;			/* B*T the buffers hold */
	size_t		attn_floats;	/* Tq*H*Tk the score buffers hold */
	int32_t    *tokens;			/* device */
	float	   *x,				/* residual stream, rows x C */
			   *ln,				/* LayerNorm output, rows x C */
			   *scale,			/* LayerNorm scales, rows */
			   *q,
			   *k,
			   *v,
			   *z,				/* rows x C each */
			   *out,			/* attention or MLP output, rows x C */
			   *mlp,			/* rows x F */
			   *scores,
			   *pattern,		/* Tq x H x Tk for one sequence */
			   *logits;			/* logit_rows x V */
	size_t		logit_rows;
	float	   *kv_cache;		/* n_layers x 2 x n_ctx x C, for use_cache */
} LmWorkspace;

struct SaeLm
{
	SaeLmConfig cfg;
	SaeBackend *be;
	SaeTokenizer *tok;
	char	   *weights_file;

	/* the open checkpoint, whose mapping some weights point into */
	SaeSafetensors *st;
	SaeSafetensorsIndex *st_index;
	SaeTorchFile *torch;

	const float *wte;			/* V x C */
	const float *wpe;			/* n_positions x C */
	LmLayer    *layers;
	const float *lnf_w,
			   *lnf_b;
	LmLinear	unembed;		/* C -> V */
	const float *b_u;			/* NULL: none */

	/* backend buffers this model allocated (weights), freed with it */
	void	  **owned;
	size_t		n_owned,
				cap_owned;

	LmWorkspace ws;
};

/* Allocate n floats on the model's backend, owned by the model; NULL when out of memory. */
float	   *lm_alloc_floats(SaeLm *lm, size_t n);

/* TransformerLens's weight processing (lm_process.c), applied to a loaded model. */
int			sae_lm_process(SaeLm *lm, const SaeLmOptions *opt, SaeError *err);

#endif
