/*
 * saelens.h — SAE folders in SAELens's format (reference/saelens.md §4):
 * cfg.json, sae_weights.safetensors and sparsity.safetensors.
 *
 * Reading takes both formats: v1.x (the whole training config, flat, with
 * hook_point) and v6 (the inference config, LLM keys under "metadata",
 * hook_name).  Writing produces v6's inference format, which SAELens 6
 * loads with SAE.load_from_disk.  Only the standard (ReLU) architecture is
 * encoded by the engine; others are refused with the reason.
 */
#ifndef SAE_SAELENS_H
#define SAE_SAELENS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define SAE_SAELENS_NAME 512

/* An SAE as the folder describes it, weights in SAELens's layout (W_enc d_in x d_sae). */
typedef struct SaeSaelensSae
{
	int			format;			/* 1 (v1.x) or 6 (v6), as read */
	int			d_in,
				d_sae;
	bool		apply_b_dec_to_input;
	char		model_name[SAE_SAELENS_NAME];
	char		hook_name[SAE_SAELENS_NAME];
	int			hook_layer;		/* from hook_point_layer, or the hook name's "blocks.L." */
	int			head_index;		/* -1: none */
	int			context_size;	/* 0: not given */
	bool		prepend_bos;
	char		dataset_path[SAE_SAELENS_NAME];
	float	   *w_enc,
			   *b_enc,
			   *w_dec,
			   *b_dec;
	float	   *log10_sparsity;	/* d_sae, or NULL (sparsity.safetensors is optional) */
} SaeSaelensSae;

/* Read the folder dir (cfg.json, sae_weights.safetensors, optional sparsity.safetensors). */
int			sae_saelens_read(const char *dir, SaeSaelensSae *out, SaeError *err);

/* Parse a cfg.json text into out's fields (no weights); used by sae_saelens_read and the fuzzer. */
int			sae_saelens_parse_cfg(const char *text, size_t len, SaeSaelensSae *out, SaeError *err);

/*
 * Write the three files into the existing folder dir, each created anew
 * (an existing file is an error).  log10_sparsity may be NULL (written as
 * log10(1e-10), "never fired").  Files written before an error are left
 * for the caller to remove.
 */
int			sae_saelens_write(const char *dir, const SaeSaelensSae *sae, SaeError *err);

/* The file names, for callers that clean up. */
extern const char *const sae_saelens_files[3];

void		sae_saelens_free(SaeSaelensSae *sae);

#endif
