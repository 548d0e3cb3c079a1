/*
 * lm.h — GPT-2 and GPT-Neo language models: loading a Hugging Face model
 * folder, and a forward pass that reads and replaces activations at
 * TransformerLens's hook points (reference/models.md §3–5).
 *
 * The forward pass follows HF transformers' math and runs on the backend
 * interface.  It computes only what is asked for: the layers up to the
 * highest hook wanted, and the unembedding only when logits are wanted.
 * Activations are those of the unprocessed model (TransformerLens's
 * from_pretrained_no_processing, what SAELens >= 3.19 trains on) unless
 * the model was loaded with TransformerLens's weight processing options.
 */
#ifndef SAE_LM_H
#define SAE_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "tokenizer.h"

typedef enum SaeLmArch
{
	SAE_LM_ARCH_GPT2,
	SAE_LM_ARCH_GPT_NEO
} SaeLmArch;

/* What config.json says, with HF's defaults filled in. */
typedef struct SaeLmConfig
{
	SaeLmArch	arch;
	int			n_layers;
	int			d_model;
	int			n_heads;
	int			d_head;			/* d_model / n_heads */
	int			d_mlp;
	int			d_vocab;
	int			n_positions;	/* rows of the position embedding */
	int			n_ctx;			/* longest sequence accepted (<= n_positions) */
	float		eps;
	SaeLmAct	act;
	bool		scale_attn;		/* divide scores by sqrt(d_head) (GPT-2; never GPT-Neo) */
	bool		scale_by_layer;	/* GPT-2 scale_attn_by_inverse_layer_idx */
	int			window_size;	/* GPT-Neo local attention */
	bool	   *local;			/* per layer: local attention (GPT-Neo) */
	bool		tied;			/* unembedding = token embedding transposed */
	int			bos_id;
	int			eos_id;
} SaeLmConfig;

/* TransformerLens's weight processing (HookedTransformer.from_pretrained's options). */
typedef struct SaeLmOptions
{
	bool		fold_ln;
	bool		center_writing_weights;
	bool		center_unembed;
	bool		fold_value_biases;
	int			n_ctx;			/* > 0: accept at most this many positions */
} SaeLmOptions;

/*
 * The hook points of models.md §3.4, as TransformerLens 3 has them: a
 * LayerNorm's hook_normalized is (x - mean) / scale, before its weight and
 * bias (TransformerLens 2.x hooked the output after them), and
 * unembed.hook_in is the final LayerNorm's output.
 */
typedef enum SaeHookKind
{
	SAE_HOOK_EMBED,
	SAE_HOOK_POS_EMBED,
	SAE_HOOK_RESID_PRE,
	SAE_HOOK_LN1_SCALE,
	SAE_HOOK_LN1_NORMALIZED,
	SAE_HOOK_Q,
	SAE_HOOK_K,
	SAE_HOOK_V,
	SAE_HOOK_ATTN_SCORES,
	SAE_HOOK_PATTERN,
	SAE_HOOK_Z,
	SAE_HOOK_ATTN_OUT,
	SAE_HOOK_RESID_MID,
	SAE_HOOK_LN2_SCALE,
	SAE_HOOK_LN2_NORMALIZED,
	SAE_HOOK_MLP_PRE,
	SAE_HOOK_MLP_POST,
	SAE_HOOK_MLP_OUT,
	SAE_HOOK_RESID_POST,
	SAE_HOOK_LNF_SCALE,
	SAE_HOOK_LNF_NORMALIZED,
	SAE_HOOK_UNEMBED_IN,
	SAE_HOOK_COUNT
} SaeHookKind;

typedef struct SaeHook
{
	SaeHookKind kind;
	int			layer;			/* -1 for the hooks outside the blocks */
} SaeHook;

typedef struct SaeLm SaeLm;

/* Read dir/config.json (cfg->local is malloc'd: free it, or let sae_lm_free do so). */
int			sae_lm_read_config(const char *dir, SaeLmConfig *cfg, SaeError *err);

/* The same from len bytes of config.json's text. */
int			sae_lm_parse_config(const char *text, size_t len, SaeLmConfig *cfg, SaeError *err);

/*
 * Load the model in folder dir: config.json, the weights (model.safetensors,
 * model.safetensors.index.json + shards, or pytorch_model.bin) and the
 * tokenizer (tokenizer.json, or vocab.json + merges.txt).  Float32 weights
 * are used from the file mapping in place where the backend works in host
 * memory and no processing is asked for; others are converted.
 */
int			sae_lm_load(const char *dir, const SaeLmOptions *opt, SaeBackend *be,
						SaeLm **out, SaeError *err);
void		sae_lm_free(SaeLm *lm);

const SaeLmConfig *sae_lm_config(const SaeLm *lm);
SaeBackend *sae_lm_backend(const SaeLm *lm);
SaeTokenizer *sae_lm_tokenizer(SaeLm *lm);
const char *sae_lm_arch_name(SaeLmArch arch);

/* Which weights file the model came from (for the catalogue). */
const char *sae_lm_weights_file(const SaeLm *lm);

/*
 * Parse a TransformerLens hook name ("blocks.0.hook_mlp_out",
 * "blocks.3.attn.hook_z", "ln_final.hook_normalized", ...).  An unknown
 * name or a layer past the model's is an error with a hint.
 */
int			sae_hook_parse(const SaeLm *lm, const char *name, SaeHook *hook, SaeError *err);

/* The canonical name of a hook (buf of at least 64 bytes). */
const char *sae_hook_name(SaeHook hook, char *buf, size_t size);

/*
 * Floats per position at a hook for sequences of T tokens: d_model, d_mlp,
 * 1 for the LayerNorm scales, and n_heads * T for the attention scores and
 * pattern (row i holds [head][key], TransformerLens's [head, i, key]).
 */
int			sae_hook_width(const SaeLm *lm, SaeHook hook, int T);

/* Copy the activation at a hook out of the forward pass. */
typedef struct SaeLmCapture
{
	SaeHook		hook;
	float	   *dst;			/* B*T rows of sae_hook_width floats */
	bool		dst_on_device;	/* dst is backend memory (else host memory) */
} SaeLmCapture;

/*
 * Replace the activation at a hook: called with the backend pointer to rows
 * row0 .. row0 + rows - 1 of the activation (rows of width floats), which
 * it may change in place.  A non-zero return stops the pass with that error.
 */
typedef int (*SaeLmEditFn) (void *arg, float *act, int64_t row0, int rows, int width,
							SaeError *err);

typedef struct SaeLmRequest
{
	const int32_t *tokens;		/* host, B x T */
	int			B;
	int			T;
	const SaeLmCapture *captures;
	int			n_captures;
	bool		edit_on;
	SaeHook		edit_hook;
	SaeLmEditFn edit;
	void	   *edit_arg;
	float	   *logits;			/* host: B*T x d_vocab, or NULL for none */
	bool		logits_last_only;	/* only each sequence's last position: B x d_vocab */
	bool		use_cache;		/* B == 1: keys and values kept for incremental decoding */
	int			pos0;			/* with use_cache: positions already in the cache */
	bool		(*should_stop) (void *arg);	/* polled between layers */
	void	   *stop_arg;
} SaeLmRequest;

int			sae_lm_forward(SaeLm *lm, const SaeLmRequest *req, SaeError *err);

/* out = x W_U for rows host rows of d_model floats (no b_U): rows x d_vocab host floats. */
int			sae_lm_unembed_rows(SaeLm *lm, const float *x, int rows, float *out, SaeError *err);

/* Bytes the model's weights take (mapped or allocated), for budgets and the catalogue. */
size_t		sae_lm_weight_bytes(const SaeLm *lm);

#endif
