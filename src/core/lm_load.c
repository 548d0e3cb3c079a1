/*
 * lm_load.c — loading a GPT-2 or GPT-Neo model folder (see lm.h).
 *
 * The checkpoint is opened once and kept open: on the CPU, float32 tensors
 * are used straight from the file mapping (GPT-2's Conv1D weights as they
 * are, GPT-Neo's nn.Linear weights transposed by the GEMM), so loading
 * GPT-2 costs a page-table walk, not a 500 MB copy.  Every tensor's shape
 * is checked against the config before it is used.
 */
#include "lm_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

float *
lm_alloc_floats(SaeLm *lm, size_t n)
{
	float	   *p;

	if (lm->n_owned == lm->cap_owned)
	{
		size_t		cap = lm->cap_owned ? 2 * lm->cap_owned : 64;
		void	  **grown = realloc(lm->owned, cap * sizeof(void *));

		if (grown == NULL)
			return NULL;
		lm->owned = grown;
		lm->cap_owned = cap;
	}
	p = lm->be->alloc(lm->be, n * sizeof(float));
	if (p != NULL)
		lm->owned[lm->n_owned++] = p;
	return p;
}

static bool
file_exists(const char *dir, const char *name)
{
	char		path[4096];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Open the weights in transformers' order of preference (models.md §2.1). */
static int
open_checkpoint(SaeLm *lm, const char *dir, SaeError *err)
{
	static const char *const files[] = {"model.safetensors", "model.safetensors.index.json",
	"pytorch_model.bin"};
	char		path[4096];
	int			rc = SAE_OK;
	int			i;

	for (i = 0; i < 3 && !file_exists(dir, files[i]); i++)
		;
	if (i == 3)
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "no model weights in \"%.200s\"", dir);
		sae_error_detail(err, "Looked for model.safetensors, model.safetensors.index.json and pytorch_model.bin.");
		return sae_error_hint(err, "Point to a folder saved by transformers' save_pretrained, or a Hugging Face snapshot.");
	}
	snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
	if (i == 0)
		rc = sae_safetensors_open(path, &lm->st, err);
	else if (i == 1)
		rc = sae_safetensors_index_open(path, &lm->st_index, err);
	else
		rc = sae_torch_open(path, &lm->torch, err);
	if (rc == SAE_OK && (lm->weights_file = strdup(path)) == NULL)
		rc = sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading the model");
	return rc;
}

/* A tensor of the checkpoint, whichever format it came from. */
typedef struct TensorRef
{
	SaeDtype	dtype;
	int			ndim;
	const int64_t *shape;
	int64_t		numel;
	const void *data;			/* contiguous data, or NULL for a strided torch view */
	const SaeSafetensors *st;
	const SaeTensorInfo *st_info;
	const SaeTorchTensor *torch_info;
} TensorRef;

/* Look name up as written and with transformers' "transformer." prefix. */
static bool
find_tensor(SaeLm *lm, const char *name, TensorRef *ref)
{
	char		prefixed[256];

	memset(ref, 0, sizeof(*ref));
	for (int attempt = 0; attempt < 2; attempt++)
	{
		const char *n = name;

		if (attempt == 1)
		{
			snprintf(prefixed, sizeof(prefixed), "transformer.%s", name);
			n = prefixed;
		}
		if (lm->torch)
		{
			const SaeTorchTensor *t = sae_torch_find(lm->torch, n);

			if (t)
			{
				ref->dtype = t->dtype;
				ref->ndim = t->ndim;
				ref->shape = t->shape;
				ref->numel = t->numel;
				ref->data = t->contiguous ? t->storage + t->storage_offset * (sae_dtype_bits(t->dtype) / 8) : NULL;
				ref->torch_info = t;
				return true;
			}
			continue;
		}
		if (lm->st)
			ref->st_info = sae_safetensors_find(lm->st, n), ref->st = lm->st;
		else if (!sae_safetensors_index_find(lm->st_index, n, &ref->st, &ref->st_info))
			ref->st_info = NULL;
		if (ref->st_info)
		{
			ref->dtype = ref->st_info->dtype;
			ref->ndim = ref->st_info->ndim;
			ref->shape = ref->st_info->shape;
			ref->numel = ref->st_info->numel;
			ref->data = ref->st_info->data;
			return true;
		}
	}
	return false;
}

/* "[a, b]" for messages */
static void
shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
	size_t		n = snprintf(buf, size, "[");

	for (int i = 0; i < ndim && n < size; i++)
		n += snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long) shape[i]);
	if (n < size)
		snprintf(buf + n, size - n, "]");
}

/*
 * The tensor called name, which must have shape [d0] or [d0, d1] (d1 = 0
 * for a vector), as float32 on the backend: the mapped bytes themselves
 * when they can be, else a converted copy the model owns.
 */
static int
load_tensor(SaeLm *lm, const char *name, int64_t d0, int64_t d1, const float **out, SaeError *err)
{
	TensorRef	t;
	int			ndim = d1 ? 2 : 1;
	int64_t		want[2] = {d0, d1};
	float	   *buf,
			   *host;
	int			rc;

	if (!find_tensor(lm, name, &t))
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "the checkpoint \"%.200s\" has no tensor \"%s\"",
				  lm->weights_file, name);
		return sae_error_hint(err, "The weights do not match config.json (model_type %s, %d layers).",
							  sae_lm_arch_name(lm->cfg.arch), lm->cfg.n_layers);
	}
	if (t.ndim != ndim || t.shape[0] != d0 || (ndim == 2 && t.shape[1] != d1))
	{
		char		got[128],
					exp[128];

		shape_text(got, sizeof(got), t.ndim, t.shape);
		shape_text(exp, sizeof(exp), ndim, want);
		sae_error(err, SAE_ERR_INVALID_DATA, "tensor \"%s\" has shape %s, but config.json implies %s",
				  name, got, exp);
		return sae_error_hint(err, "Check that config.json belongs to these weights.");
	}
	if (t.dtype == SAE_DTYPE_F32 && t.data && ((uintptr_t) t.data % sizeof(float)) == 0 &&
		lm->be->host_memory)
	{
		*out = t.data;
		return SAE_OK;
	}
	host = lm->be->host_memory ? NULL : malloc(sizeof(float) * t.numel);
	buf = lm_alloc_floats(lm, t.numel);
	if (buf == NULL || (!lm->be->host_memory && host == NULL))
	{
		free(host);
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading tensor \"%s\"", name);
	}
	rc = t.torch_info ? sae_torch_read_f32(lm->torch, t.torch_info, host ? host : buf, t.numel, err)
		: sae_safetensors_read_f32(t.st, t.st_info, host ? host : buf, t.numel, err);
	if (rc == SAE_OK && host)
		lm->be->to_device(lm->be, buf, host, sizeof(float) * t.numel);
	free(host);
	*out = buf;
	return rc;
}

/* A name with the layer number filled in. */
static const char *
layer_name(char *buf, size_t size, const char *fmt, int layer)
{
	snprintf(buf, size, fmt, layer);
	return buf;
}

/* GPT-2 block i: fused c_attn [C, 3C] split by column blocks, Conv1D layout. */
static int
load_gpt2_layer(SaeLm *lm, int i, LmLayer *L, SaeError *err)
{
	int64_t		C = lm->cfg.d_model,
				F = lm->cfg.d_mlp;
	const float *c_attn,
			   *c_attn_b;
	char		n[128];

	if (load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_1.weight", i), C, 0, &L->ln1_w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_1.bias", i), C, 0, &L->ln1_b, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.c_attn.weight", i), C, 3 * C, &c_attn, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.c_attn.bias", i), 3 * C, 0, &c_attn_b, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.c_proj.weight", i), C, C, &L->o.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.c_proj.bias", i), C, 0, &L->b_o, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_2.weight", i), C, 0, &L->ln2_w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_2.bias", i), C, 0, &L->ln2_b, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_fc.weight", i), C, F, &L->fc_in.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_fc.bias", i), F, 0, &L->b_in, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_proj.weight", i), F, C, &L->fc_out.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_proj.bias", i), C, 0, &L->b_out, err))
		return err->code;
	L->q = (LmLinear) {c_attn, 3 * C, false};
	L->k = (LmLinear) {c_attn + C, 3 * C, false};
	L->v = (LmLinear) {c_attn + 2 * C, 3 * C, false};
	L->b_q = c_attn_b;
	L->b_k = c_attn_b + C;
	L->b_v = c_attn_b + 2 * C;
	L->o.ld = C;
	L->fc_in.ld = F;
	L->fc_out.ld = C;
	return SAE_OK;
}

/* GPT-Neo block i: separate q/k/v without biases, nn.Linear [out, in] layout. */
static int
load_neo_layer(SaeLm *lm, int i, LmLayer *L, SaeError *err)
{
	int64_t		C = lm->cfg.d_model,
				F = lm->cfg.d_mlp;
	char		n[128];

	if (load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_1.weight", i), C, 0, &L->ln1_w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_1.bias", i), C, 0, &L->ln1_b, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.attention.q_proj.weight", i), C, C, &L->q.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.attention.k_proj.weight", i), C, C, &L->k.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.attention.v_proj.weight", i), C, C, &L->v.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.attention.out_proj.weight", i), C, C, &L->o.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.attn.attention.out_proj.bias", i), C, 0, &L->b_o, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_2.weight", i), C, 0, &L->ln2_w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.ln_2.bias", i), C, 0, &L->ln2_b, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_fc.weight", i), F, C, &L->fc_in.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_fc.bias", i), F, 0, &L->b_in, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_proj.weight", i), C, F, &L->fc_out.w, err) ||
		load_tensor(lm, layer_name(n, sizeof(n), "h.%d.mlp.c_proj.bias", i), C, 0, &L->b_out, err))
		return err->code;
	L->q.ld = L->k.ld = L->v.ld = L->o.ld = (int) C;
	L->q.trans = L->k.trans = L->v.trans = L->o.trans = true;
	L->fc_in.ld = (int) C;
	L->fc_in.trans = true;
	L->fc_out.ld = (int) F;
	L->fc_out.trans = true;
	return SAE_OK;
}

/* Embeddings, blocks, final LayerNorm and the unembedding. */
static int
load_weights(SaeLm *lm, SaeError *err)
{
	const SaeLmConfig *c = &lm->cfg;

	lm->layers = calloc(c->n_layers, sizeof(LmLayer));
	if (lm->layers == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading the model");
	if (load_tensor(lm, "wte.weight", c->d_vocab, c->d_model, &lm->wte, err) ||
		load_tensor(lm, "wpe.weight", c->n_positions, c->d_model, &lm->wpe, err))
		return err->code;
	for (int i = 0; i < c->n_layers; i++)
		if ((c->arch == SAE_LM_ARCH_GPT2 ? load_gpt2_layer(lm, i, &lm->layers[i], err)
			 : load_neo_layer(lm, i, &lm->layers[i], err)) != SAE_OK)
			return err->code;
	if (load_tensor(lm, "ln_f.weight", c->d_model, 0, &lm->lnf_w, err) ||
		load_tensor(lm, "ln_f.bias", c->d_model, 0, &lm->lnf_b, err))
		return err->code;
	/* the unembedding is wte^T unless the config unties it (then lm_head.weight, [V, C]) */
	lm->unembed = (LmLinear) {lm->wte, c->d_model, true};
	if (!c->tied)
		return load_tensor(lm, "lm_head.weight", c->d_vocab, c->d_model, &lm->unembed.w, err);
	return SAE_OK;
}

/* tokenizer.json, else vocab.json + merges.txt; BOS/EOS from the config. */
static int
load_tokenizer(SaeLm *lm, const char *dir, SaeError *err)
{
	char		a[4096],
				b[4096];
	int			rc;

	if (file_exists(dir, "tokenizer.json"))
	{
		snprintf(a, sizeof(a), "%s/tokenizer.json", dir);
		rc = sae_tokenizer_load_json(a, &lm->tok, err);
	}
	else if (file_exists(dir, "vocab.json") && file_exists(dir, "merges.txt"))
	{
		snprintf(a, sizeof(a), "%s/vocab.json", dir);
		snprintf(b, sizeof(b), "%s/merges.txt", dir);
		rc = sae_tokenizer_load_files(a, b, &lm->tok, err);
	}
	else
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "no tokenizer in \"%.200s\"", dir);
		sae_error_detail(err, "Looked for tokenizer.json, and for vocab.json with merges.txt.");
		return sae_error_hint(err, "GPT-2's tokenizer files fit every GPT-2 and GPT-Neo model; copy them into the folder.");
	}
	if (rc != SAE_OK)
		return rc;
	if (sae_tokenizer_vocab_size(lm->tok) > lm->cfg.d_vocab)
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "the tokenizer has %d tokens but the model only %d",
				  sae_tokenizer_vocab_size(lm->tok), lm->cfg.d_vocab);
		return sae_error_hint(err, "Check that the tokenizer files belong to this model.");
	}
	if (lm->cfg.bos_id < sae_tokenizer_vocab_size(lm->tok) &&
		lm->cfg.eos_id < sae_tokenizer_vocab_size(lm->tok))
		return sae_tokenizer_set_bos_eos(lm->tok, lm->cfg.bos_id, lm->cfg.eos_id, err);
	return SAE_OK;
}

int
sae_lm_load(const char *dir, const SaeLmOptions *opt, SaeBackend *be, SaeLm **out, SaeError *err)
{
	SaeLm	   *lm = calloc(1, sizeof(SaeLm));
	int			rc;

	*out = NULL;
	if (lm == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading the model");
	lm->be = be;
	if ((rc = sae_lm_read_config(dir, &lm->cfg, err)) == SAE_OK &&
		(rc = open_checkpoint(lm, dir, err)) == SAE_OK &&
		(rc = load_weights(lm, err)) == SAE_OK &&
		(rc = load_tokenizer(lm, dir, err)) == SAE_OK)
	{
		if (opt && opt->n_ctx > 0 && opt->n_ctx < lm->cfg.n_ctx)
			lm->cfg.n_ctx = opt->n_ctx;
		if (opt)
			rc = sae_lm_process(lm, opt, err);
	}
	if (rc != SAE_OK)
	{
		sae_lm_free(lm);
		return rc;
	}
	*out = lm;
	return SAE_OK;
}

/* The workspace's buffers (lm_forward.c grows them). */
static void
free_workspace(SaeLm *lm)
{
	LmWorkspace *ws = &lm->ws;
	void	   *bufs[] = {ws->tokens, ws->x, ws->ln, ws->scale, ws->q, ws->k, ws->v, ws->z,
		ws->out, ws->mlp, ws->scores, ws->pattern, ws->logits, ws->kv_cache};

	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		if (bufs[i])
			lm->be->free(lm->be, bufs[i]);
	memset(ws, 0, sizeof(*ws));
}

void
sae_lm_free(SaeLm *lm)
{
	if (lm == NULL)
		return;
	free_workspace(lm);
	for (size_t i = 0; i < lm->n_owned; i++)
		lm->be->free(lm->be, lm->owned[i]);
	free(lm->owned);
	free(lm->layers);
	free(lm->cfg.local);
	free(lm->weights_file);
	sae_tokenizer_free(lm->tok);
	if (lm->st)
		sae_safetensors_close(lm->st);
	if (lm->st_index)
		sae_safetensors_index_close(lm->st_index);
	if (lm->torch)
		sae_torch_close(lm->torch);
	free(lm);
}

const SaeLmConfig *
sae_lm_config(const SaeLm *lm)
{
	return &lm->cfg;
}

SaeBackend *
sae_lm_backend(const SaeLm *lm)
{
	return lm->be;
}

SaeTokenizer *
sae_lm_tokenizer(SaeLm *lm)
{
	return lm->tok;
}

const char *
sae_lm_weights_file(const SaeLm *lm)
{
	return lm->weights_file;
}

/* Mapped weights count at their float32 size too: they are resident once touched. */
size_t
sae_lm_weight_bytes(const SaeLm *lm)
{
	const SaeLmConfig *c = &lm->cfg;
	size_t		C = c->d_model,
				F = c->d_mlp;
	size_t		per_layer = 4 * C * C + 2 * C * F + 9 * C + F;

	return sizeof(float) * ((size_t) c->d_vocab * C * (c->tied ? 1 : 2) +
							(size_t) c->n_positions * C + c->n_layers * per_layer + 2 * C);
}
