/*
 * hub.h — finding a model by name: TransformerLens aliases, the Hugging
 * Face hub cache, and (when allowed) downloading into that cache.
 *
 * The cache is huggingface_hub's own layout, byte for byte (refs/<rev>
 * holding a commit sha, blobs/<etag>, snapshots/<commit>/<file> relative
 * symlinks into blobs, .locks/ for concurrent downloads), so a model that
 * transformers downloaded is found here and one downloaded here is found
 * by transformers.
 *
 * Names come from SQL users: repo ids, revisions and file names are
 * checked against [A-Za-z0-9._/-] with no "..", no empty component and no
 * leading '/', before any of them goes into a path or a URL.
 */
#ifndef SAE_HUB_H
#define SAE_HUB_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

typedef struct SaeHubOptions
{
	const char *cache_dir;		/* NULL: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else
								 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
								 * $HOME/.cache/huggingface/hub */
	const char *endpoint;		/* NULL: $HF_ENDPOINT, else https://huggingface.co (trailing
								 * '/' stripped) */
	const char *token;			/* NULL: $HF_TOKEN, else the file $HF_TOKEN_PATH or
								 * $HF_HOME/token if present; "": none; sent as
								 * Authorization: Bearer */
	const char *revision;		/* NULL: "main" */
	bool		allow_download; /* off, or $HF_HUB_OFFLINE set: cache only */
	bool		(*should_stop) (void *arg);	/* polled during downloads; true aborts
											 * with SAE_ERR_CANCELLED (must return,
											 * not longjmp: files are cleaned up after) */
	void	   *stop_arg;
	/*
	 * May be NULL.  Called as a file's bytes arrive (total -1 if unknown),
	 * and with done = -1 every 0.1 s while another process (a session, or
	 * huggingface_hub) holds the lock of a file we need.
	 */
	void		(*progress) (void *arg, const char *file, int64_t done, int64_t total);
	void	   *progress_arg;
} SaeHubOptions;

/*
 * The HF repo id of a TransformerLens model name ("gpt2" ->
 * "openai-community/gpt2", "tiny-stories-1L-21M" ->
 * "roneneldan/TinyStories-1Layer-21M", ...), or NULL when name is not one.
 * Matched case-insensitively, as TransformerLens does; the official repo
 * ids of the table match too (returning their canonical spelling).
 */
const char *sae_hub_alias_repo(const char *name);

/*
 * TransformerLens's context length for the alias when it differs from the
 * HF config (512 for the tiny-stories models), else 0.
 */
int			sae_hub_alias_n_ctx(const char *name);

/*
 * Resolve name (an alias, or an HF repo id "org/name" or legacy "name") to
 * a folder with the model files: config.json, the weights
 * (model.safetensors; or model.safetensors.index.json and its shards; or
 * pytorch_model.bin), and the tokenizer (tokenizer.json, or vocab.json +
 * merges.txt).  The cache is looked at first (for "gpt2"-style aliases both
 * models--openai-community--gpt2 and models--gpt2); the revision is read
 * from refs/<revision> unless it is a 40-hex sha.  If the snapshot lacks
 * files and downloads are allowed, the missing ones are downloaded; if not,
 * the error says which files are missing where.  *out_dir is malloc'd.
 */
int			sae_hub_resolve(const char *name, const SaeHubOptions *opt, char **out_dir,
							SaeError *err);

#endif
