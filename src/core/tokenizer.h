/*
 * tokenizer.h — the GPT-2 byte-level BPE tokenizer (reference/models.md §6).
 *
 * Loads the two "slow" files (vocab.json + merges.txt) or one HF
 * tokenizer.json (merges as "a b" strings or as [a, b] pairs), checks them,
 * and encodes text the way HF tokenizers' GPT2TokenizerFast does:
 *
 *   1. added tokens (added_tokens in tokenizer.json; "<|endoftext|>" for the
 *      slow files) are split out first, by exact leftmost-longest match;
 *   2. each stretch between them is cut by GPT-2's regex
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (a hand-written scanner; Unicode 16.0 classes, as HF's regex engine);
 *   3. each piece's UTF-8 bytes are merged by merge rank (HF's priority-queue
 *      rule; the same result as OpenAI's encoder.py for trained merges) and
 *      mapped to ids, with a cache of recent pieces.
 *
 * Input need not be valid UTF-8: each maximal invalid subsequence (as
 * Python's errors='replace' counts them) pre-tokenises like U+FFFD, an
 * ordinary symbol, and its bytes go through the byte table like any others,
 * so decode(encode(x)) == x for every byte string.  (HF and encoder.py only
 * take valid text; on valid text we match them.)
 *
 * Decoding concatenates each token's bytes.  A token may hold part of a
 * UTF-8 sequence, so the result may be invalid UTF-8: sae_utf8_valid says
 * whether it is, and sae_utf8_lossy makes text the way Python's
 * bytes.decode('utf-8', errors='replace') and Rust's from_utf8_lossy do
 * (what HF decode and TransformerLens's to_str_tokens show).  Added tokens
 * decode to their content as written; HF runs them through its ByteLevel
 * decoder too, which garbles non-ASCII content ("café" comes back as
 * "caf\xe9"), but gives the same for ASCII ones such as "<|endoftext|>".
 *
 * Not supported (refused by name when loading): normalizers, other
 * pre-tokenizers, add_prefix_space, BPE dropout, subword affixes, and
 * added tokens with single_word/lstrip/rstrip.  The post_processor is not
 * applied: SAE_TOK_PREPEND_BOS is the caller's choice, as in
 * TransformerLens.
 *
 * A tokenizer is immutable after loading except for its piece cache and
 * scratch space, which encode uses: do not encode with one tokenizer from
 * two threads at once.
 */
#ifndef SAE_TOKENIZER_H
#define SAE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Size limits: a file or a vocabulary over these is refused (SAE_ERR_LIMIT). */
#define SAE_TOK_MAX_FILE_BYTES ((size_t) 256 * 1024 * 1024)
#define SAE_TOK_MAX_TOKENS (1 << 21)	/* ids are 0 .. SAE_TOK_MAX_TOKENS - 1 */
#define SAE_TOK_MAX_MERGES (1 << 21)
#define SAE_TOK_MAX_ADDED 65536
#define SAE_TOK_MAX_TOKEN_BYTES 4096	/* one vocabulary string, as written */

/* encode flags */
#define SAE_TOK_PREPEND_BOS 0x1		/* put bos_id first (TransformerLens prepend_bos) */
#define SAE_TOK_SPECIAL_AS_TEXT 0x2 /* don't split added tokens out: BPE their text
									 * (OpenAI encoder.py, tiktoken) */

/* decode flags */
#define SAE_TOK_SKIP_SPECIAL 0x1	/* leave out added tokens marked special */

typedef struct SaeTokenizer SaeTokenizer;

/* A growable array of token ids; zero-initialise, free with sae_tok_ids_free. */
typedef struct SaeTokIds
{
	int32_t    *ids;
	size_t		len;
	size_t		cap;
} SaeTokIds;

/* A growable byte string, always NUL-terminated after len; free with sae_tok_bytes_free. */
typedef struct SaeTokBytes
{
	char	   *data;
	size_t		len;
	size_t		cap;
} SaeTokBytes;

void		sae_tok_ids_free(SaeTokIds *ids);
void		sae_tok_bytes_free(SaeTokBytes *bytes);

/*
 * Load vocab.json + merges.txt.  "<|endoftext|>", if in the vocabulary, is
 * an added (special) token and the BOS and EOS, as GPT2Tokenizer makes it.
 */
int			sae_tokenizer_load_files(const char *vocab_path, const char *merges_path,
									 SaeTokenizer **out, SaeError *err);

/* Load an HF tokenizer.json with a byte-level BPE model. */
int			sae_tokenizer_load_json(const char *path, SaeTokenizer **out, SaeError *err);

/* The same from memory; the names are what error messages call the texts. */
int			sae_tokenizer_from_files_text(const char *vocab, size_t vocab_len, const char *vocab_name,
										  const char *merges, size_t merges_len, const char *merges_name,
										  SaeTokenizer **out, SaeError *err);
int			sae_tokenizer_from_json_text(const char *text, size_t len, const char *name,
										 SaeTokenizer **out, SaeError *err);

void		sae_tokenizer_free(SaeTokenizer *tok);

/* One more than the largest id (50257 for GPT-2). */
int32_t		sae_tokenizer_vocab_size(const SaeTokenizer *tok);

/* "<|endoftext|>"'s id when there is one, else -1; settable. */
int32_t		sae_tokenizer_bos_id(const SaeTokenizer *tok);
int32_t		sae_tokenizer_eos_id(const SaeTokenizer *tok);
int			sae_tokenizer_set_bos_eos(SaeTokenizer *tok, int32_t bos_id, int32_t eos_id, SaeError *err);

/* The id of a vocabulary string as written in the files ("Ġthe"), or -1. */
int32_t		sae_tokenizer_token_to_id(const SaeTokenizer *tok, const char *symbol, size_t len);

/*
 * Encode len bytes of text, appending the ids to out (so documents can be
 * concatenated).  flags: SAE_TOK_PREPEND_BOS, SAE_TOK_SPECIAL_AS_TEXT.
 * Fails only for lack of memory or a BOS wanted but not known.
 */
int			sae_tokenizer_encode(SaeTokenizer *tok, const char *text, size_t len, int flags,
								 SaeTokIds *out, SaeError *err);

/*
 * Append the bytes of n ids to out.  flags: SAE_TOK_SKIP_SPECIAL.  An id
 * that is no token is an error naming it.  *valid_utf8 (if not NULL) says
 * whether the appended bytes are valid UTF-8.
 */
int			sae_tokenizer_decode(const SaeTokenizer *tok, const int32_t *ids, size_t n, int flags,
								 SaeTokBytes *out, bool *valid_utf8, SaeError *err);

/* The bytes one token decodes to (not NUL-terminated), or NULL if id is no token. */
const char *sae_tokenizer_token_bytes(const SaeTokenizer *tok, int32_t id, size_t *len);

/* The token's string as written in the files ("Ġthe"), NUL-terminated, or NULL. */
const char *sae_tokenizer_token_symbol(const SaeTokenizer *tok, int32_t id, size_t *len);

/* Whether id is an added token marked special ("<|endoftext|>"). */
bool		sae_tokenizer_is_special(const SaeTokenizer *tok, int32_t id);

/*
 * Append one token as text, as TransformerLens's to_str_tokens shows it:
 * its bytes with invalid UTF-8 replaced by U+FFFD.
 */
int			sae_tokenizer_token_str(const SaeTokenizer *tok, int32_t id, SaeTokBytes *out, SaeError *err);

/* Whether len bytes are well-formed UTF-8 (no surrogates, overlongs, > U+10FFFF). */
bool		sae_utf8_valid(const char *s, size_t len);

/* Append s with each maximal invalid subsequence replaced by U+FFFD. */
int			sae_utf8_lossy(const char *s, size_t len, SaeTokBytes *out, SaeError *err);

#endif
