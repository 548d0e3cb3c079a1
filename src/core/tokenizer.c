/*
 * tokenizer.c — GPT-2 byte-level BPE; see tokenizer.h and
 * reference/models.md §6.
 *
 * Everything after loading works on token ids and raw bytes, never on the
 * files' mapped-unicode strings: the 256 single-byte tokens give each byte
 * its starting id, a merge is a pair of ids with a rank and a result id,
 * and each token keeps the bytes it decodes to.  The mapped strings are
 * kept only to answer token_to_id and token_symbol.
 *
 * The merge loop is HF tokenizers' (Word::merge_all): a heap of candidate
 * pairs ordered by (rank, position), stale entries skipped when popped.  It
 * is O(n log n) in the piece length, where encoder.py's rescan is O(n^2),
 * and it gives the same tokens for any merge list a trainer can produce.
 */
#include "tokenizer.h"
#include "json.h"
#include "unicode_tables.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* entry flags */
#define TOK_PRESENT 0x1
#define TOK_ADDED 0x2
#define TOK_SPECIAL 0x4

/* piece cache: slots, and the longest piece (bytes) worth caching */
#define CACHE_SLOTS (1 << 15)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_KEY 128
#define CACHE_ARENA (CACHE_MAX_ENTRIES * 16)

/* the longest piece we merge: positions are int32 */
#define MAX_PIECE_BYTES ((size_t) 1 << 30)

/* how many bytes of a name or symbol an error message shows */
#define SHOWN 64

/* character classes of the pre-tokenizer */
typedef enum CharClass
{
	CH_LETTER,
	CH_NUMBER,
	CH_SPACE,
	CH_OTHER
} CharClass;

typedef struct TokEntry
{
	size_t		sym_off;		/* the string as written in the files, in arena */
	size_t		bytes_off;		/* what the token decodes to, in arena */
	uint32_t	sym_len;
	uint32_t	bytes_len;
	uint8_t		flags;
} TokEntry;

typedef struct MergeSlot
{
	uint64_t	key;			/* left id << 32 | right id; EMPTY_KEY if free */
	int32_t		rank;
	int32_t		new_id;
} MergeSlot;

#define EMPTY_KEY UINT64_MAX

typedef struct AddedTok
{
	int32_t		id;
	uint32_t	len;
	size_t		off;			/* content bytes, in arena */
	unsigned char first;		/* its first byte */
} AddedTok;

typedef struct CacheSlot
{
	uint64_t	hash;
	uint32_t	key_off;		/* in cache_keys */
	uint32_t	key_len;		/* 0: free slot */
	uint32_t	ids_off;		/* in cache_ids */
	uint32_t	n_ids;
} CacheSlot;

typedef struct BpeSym
{
	int32_t		id;				/* -1 once merged into its left neighbour */
	int32_t		prev;
	int32_t		next;
} BpeSym;

typedef struct BpeCand
{
	int32_t		rank;
	int32_t		pos;
	int32_t		new_id;
} BpeCand;

struct SaeTokenizer
{
	TokEntry   *entries;		/* indexed by id, n_ids of them */
	int32_t		n_ids;
	char	   *arena;			/* NUL-terminated symbols and byte strings */
	size_t		arena_len;
	size_t		arena_cap;

	int32_t    *sym_slots;		/* open-addressing hash: symbol -> id, -1 free */
	size_t		sym_mask;

	MergeSlot  *merges;			/* open-addressing hash: id pair -> merge */
	size_t		merge_mask;
	size_t		n_merges;

	int32_t		byte_id[256];	/* id of each single-byte token */
	bool		ignore_merges;	/* tokenizer.json model.ignore_merges */

	AddedTok   *added;			/* sorted by first byte, then longest first */
	int32_t		n_added;
	int32_t		added_start[257];	/* added[added_start[b] .. added_start[b+1]) */

	int32_t		bos_id;
	int32_t		eos_id;

	CacheSlot  *cache;
	char	   *cache_keys;
	int32_t    *cache_ids;
	uint32_t	cache_entries;
	uint32_t	cache_keys_len;
	uint32_t	cache_ids_len;

	BpeSym	   *syms;			/* scratch for one piece */
	BpeCand    *heap;
	size_t		syms_cap;
	size_t		heap_cap;
	size_t		heap_len;
	char	   *mapped;			/* scratch: a piece in the mapped alphabet */
	size_t		mapped_cap;
};

/* ------------------------------------------------------------------------
 * The byte <-> unicode map of GPT-2's bytes_to_unicode (models.md §6.1)
 * ------------------------------------------------------------------------ */

/* Bytes that stand for themselves: printable ASCII and most of Latin-1. */
static bool
byte_is_printable(int b)
{
	return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The code point byte b is written as: itself, or 256 + n for the n-th other byte. */
static uint32_t
byte_to_cp(int b)
{
	int			n = 0;
	int			k;

	if (byte_is_printable(b))
		return (uint32_t) b;
	for (k = 0; k < b; k++)
		if (!byte_is_printable(k))
			n++;
	return 256 + (uint32_t) n;
}

/*
 * The two tables, built once; a fixed computation, so racing first calls
 * write the same values.
 */
static uint32_t byte_cp[256];
static int16_t cp_byte[324];	/* 0..323: the byte it stands for, or -1 */
static bool byte_map_ready;

/* Fill byte_cp and cp_byte, once. */
static void
init_byte_map(void)
{
	int			b;

	if (byte_map_ready)
		return;
	for (b = 0; b < 324; b++)
		cp_byte[b] = -1;
	for (b = 0; b < 256; b++)
	{
		byte_cp[b] = byte_to_cp(b);
		cp_byte[byte_cp[b]] = (int16_t) b;
	}
	byte_map_ready = true;
}

/* ------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------ */

/* Whether c is a continuation byte within [lo, hi]. */
static bool
cont_in(const unsigned char *s, size_t n, size_t k, unsigned lo, unsigned hi)
{
	return k < n && s[k] >= lo && s[k] <= hi;
}

/*
 * Decode one character at s[0..n), n >= 1.  Returns how many bytes it
 * takes.  When the bytes are not well-formed, *ok is false and the length
 * is that of the maximal subpart (Unicode §3.9, Table 3-7): what Python's
 * errors='replace' and Rust's from_utf8_lossy replace by one U+FFFD.
 */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp, bool *ok)
{
	unsigned	b0 = s[0];
	unsigned	lo = 0x80,
				hi = 0xBF;
	size_t		need,
				k;
	uint32_t	c;

	*ok = true;
	if (b0 < 0x80)
	{
		*cp = b0;
		return 1;
	}
	if (b0 >= 0xC2 && b0 <= 0xDF)
		need = 1, c = b0 & 0x1F;
	else if (b0 >= 0xE0 && b0 <= 0xEF)
	{
		need = 2, c = b0 & 0x0F;
		if (b0 == 0xE0)
			lo = 0xA0;
		else if (b0 == 0xED)
			hi = 0x9F;
	}
	else if (b0 >= 0xF0 && b0 <= 0xF4)
	{
		need = 3, c = b0 & 0x07;
		if (b0 == 0xF0)
			lo = 0x90;
		else if (b0 == 0xF4)
			hi = 0x8F;
	}
	else
	{
		*ok = false;
		return 1;
	}
	for (k = 1; k <= need; k++)
	{
		if (!cont_in(s, n, k, k == 1 ? lo : 0x80, k == 1 ? hi : 0xBF))
		{
			*ok = false;
			return k;
		}
		c = (c << 6) | (s[k] & 0x3F);
	}
	*cp = c;
	return need + 1;
}

/* Write cp as UTF-8 into out (4 bytes of room); returns the length. */
static size_t
utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

bool
sae_utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0;
	uint32_t	cp;
	bool		ok;

	while (i < len)
	{
		if (u[i] < 0x80)
		{
			i++;
			continue;
		}
		i += utf8_next(u + i, len - i, &cp, &ok);
		if (!ok)
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Growable buffers
 * ------------------------------------------------------------------------ */

/* Room for `more` more elements of size `elem` in *buf (capacity *cap). */
static bool
grow(void **buf, size_t *cap, size_t used, size_t more, size_t elem)
{
	size_t		want,
				ncap;
	void	   *p;

	if (more > SIZE_MAX / elem - used)
		return false;
	want = used + more;
	if (want <= *cap)
		return true;
	ncap = *cap ? *cap : 16;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 / elem ? want : ncap * 2;
	p = realloc(*buf, ncap * elem);
	if (p == NULL)
		return false;
	*buf = p;
	*cap = ncap;
	return true;
}

void
sae_tok_ids_free(SaeTokIds *ids)
{
	free(ids->ids);
	memset(ids, 0, sizeof(*ids));
}

void
sae_tok_bytes_free(SaeTokBytes *bytes)
{
	free(bytes->data);
	memset(bytes, 0, sizeof(*bytes));
}

/* Append n bytes, keeping the buffer NUL-terminated. */
static bool
bytes_append(SaeTokBytes *b, const char *s, size_t n)
{
	if (!grow((void **) &b->data, &b->cap, b->len, n + 1, 1))
		return false;
	if (n > 0)
		memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

/* Append n ids. */
static bool
ids_append(SaeTokIds *out, const int32_t *ids, size_t n)
{
	if (n == 0)
		return true;
	if (!grow((void **) &out->ids, &out->cap, out->len, n, sizeof(int32_t)))
		return false;
	memcpy(out->ids + out->len, ids, n * sizeof(int32_t));
	out->len += n;
	return true;
}

int
sae_utf8_lossy(const char *s, size_t len, SaeTokBytes *out, SaeError *err)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0,
				start = 0,
				k;
	uint32_t	cp;
	bool		ok;

	while (i < len)
	{
		k = utf8_next(u + i, len - i, &cp, &ok);
		if (!ok)
		{
			if (!bytes_append(out, s + start, i - start) || !bytes_append(out, "\xEF\xBF\xBD", 3))
				return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory decoding tokens");
			start = i + k;
		}
		i += k;
	}
	if (!bytes_append(out, s + start, len - start))
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory decoding tokens");
	return SAE_OK;
}

/* ------------------------------------------------------------------------
 * Error messages
 * ------------------------------------------------------------------------ */

/*
 * A file's string as an error message shows it: at most SHOWN bytes, cut
 * at a character boundary, control characters and invalid bytes as \xNN,
 * so the message stays valid UTF-8 whatever the file held.
 */
static const char *
shown(const char *s, size_t len, char *buf, size_t size)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0,
				o = 0,
				k;
	uint32_t	cp;
	bool		ok;

	while (i < len && o + 8 < size)
	{
		k = utf8_next(u + i, len - i, &cp, &ok);
		if (i + k > SHOWN)
		{
			o += (size_t) snprintf(buf + o, size - o, "...");
			break;
		}
		if (!ok || cp < 0x20 || cp == 0x7F)
		{
			o += (size_t) snprintf(buf + o, size - o, "\\x%02x", u[i]);
			k = 1;
		}
		else
		{
			memcpy(buf + o, s + i, k);
			o += k;
		}
		i += k;
	}
	buf[o < size ? o : size - 1] = '\0';
	return buf;
}

static int	file_error(SaeError *err, SaeErrCode code, const char *file, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

/* Errors about a file's content start with the file's name. */
static int
file_error(SaeError *err, SaeErrCode code, const char *file, const char *fmt,...)
{
	char		msg[400];
	char		name[SHOWN * 4 + 16];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sae_error(err, code, "%s: %s", shown(file, strlen(file), name, sizeof(name)), msg);
}

/* Loading ran out of memory. */
static int
oom(SaeError *err)
{
	return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory loading the tokenizer");
}

/* ------------------------------------------------------------------------
 * Character classes for the pre-tokenizer
 * ------------------------------------------------------------------------ */

/* \p{L}, \p{N}, \s or none, for a code point above ASCII. */
static CharClass
classify_wide(uint32_t cp)
{
	size_t		lo = 0,
				hi = sizeof(sae_uni_ranges) / sizeof(sae_uni_ranges[0]),
				k;

	for (k = 0; k < sizeof(sae_uni_space) / sizeof(sae_uni_space[0]); k++)
		if (cp >= sae_uni_space[k].lo && cp <= sae_uni_space[k].hi)
			return CH_SPACE;
	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;

		if (cp > sae_uni_ranges[mid].hi)
			lo = mid + 1;
		else if (cp < sae_uni_ranges[mid].lo)
			hi = mid;
		else
			return sae_uni_ranges[mid].cls == SAE_UNI_LETTER ? CH_LETTER : CH_NUMBER;
	}
	return CH_OTHER;
}

/* The ASCII classes, the common case, without a table search. */
static CharClass
classify_ascii(unsigned c)
{
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return CH_LETTER;
	if (c >= '0' && c <= '9')
		return CH_NUMBER;
	if (c == ' ' || (c >= 0x09 && c <= 0x0D))
		return CH_SPACE;
	return CH_OTHER;
}

/*
 * The class and byte length of the character at s[i] (i < n).  A malformed
 * sequence is one character of class "other", as U+FFFD would be.
 */
static CharClass
char_at(const unsigned char *s, size_t n, size_t i, size_t *len)
{
	uint32_t	cp;
	bool		ok;

	if (s[i] < 0x80)
	{
		*len = 1;
		return classify_ascii(s[i]);
	}
	*len = utf8_next(s + i, n - i, &cp, &ok);
	return ok ? classify_wide(cp) : CH_OTHER;
}

/* The end of the run of class cls that starts at i. */
static size_t
run_end(const unsigned char *s, size_t n, size_t i, CharClass cls)
{
	size_t		k;

	while (i < n && char_at(s, n, i, &k) == cls)
		i += k;
	return i;
}

/* The length of a contraction ('s 't 're 've 'm 'll 'd) at s[i], or 0. */
static size_t
contraction_at(const unsigned char *s, size_t n, size_t i)
{
	unsigned	c1,
				c2;

	if (s[i] != '\'' || i + 1 >= n)
		return 0;
	c1 = s[i + 1];
	if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
		return 2;
	if (i + 2 >= n)
		return 0;
	c2 = s[i + 2];
	if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
		return 3;
	return 0;
}

/*
 * The end of a whitespace match at i: \s+(?!\S) takes the whole run when
 * it ends the text, else the run less its last character when that leaves
 * at least one (the last then prefixes the next word); failing both, \s+
 * takes the run, which is then one character.
 */
static size_t
space_end(const unsigned char *s, size_t n, size_t i)
{
	size_t		j = i,
				last = i,
				k;

	while (j < n && char_at(s, n, j, &k) == CH_SPACE)
	{
		last = j;
		j += k;
	}
	if (j == n || last == i)
		return j;
	return last;
}

/*
 * The end of the pre-token that starts at s[i]: GPT-2's regex, its
 * alternatives tried in order.  Every character is a letter, a number,
 * space or other, so some alternative always matches and the pieces tile
 * the text.
 */
static size_t
piece_end(const unsigned char *s, size_t n, size_t i)
{
	size_t		k,
				len;
	CharClass	cls;

	if ((k = contraction_at(s, n, i)) > 0)
		return i + k;
	if (s[i] == ' ' && i + 1 < n)
	{
		cls = char_at(s, n, i + 1, &len);
		if (cls != CH_SPACE)
			return run_end(s, n, i + 1, cls);
	}
	cls = char_at(s, n, i, &len);
	if (cls != CH_SPACE)
		return run_end(s, n, i, cls);
	return space_end(s, n, i);
}

/* ------------------------------------------------------------------------
 * Hashing
 * ------------------------------------------------------------------------ */

/* FNV-1a, 64 bits. */
static uint64_t
hash_bytes(const char *s, size_t n)
{
	uint64_t	h = 1469598103934665603ULL;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* A 64-bit mix for id pairs (splitmix64's finaliser). */
static uint64_t
hash_pair(uint64_t key)
{
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ULL;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebULL;
	key ^= key >> 31;
	return key;
}

/* The smallest power of two >= 2n (at least 16): a table at most half full. */
static size_t
table_size(size_t n)
{
	size_t		size = 16;

	while (size < 2 * n)
		size *= 2;
	return size;
}

/* The vocabulary string of a present id. */
static const char *
entry_symbol(const SaeTokenizer *tok, int32_t id)
{
	return tok->arena + tok->entries[id].sym_off;
}

/* The slot where symbol s lives or would go. */
static size_t
sym_slot(const SaeTokenizer *tok, const char *s, size_t n)
{
	size_t		slot = hash_bytes(s, n) & tok->sym_mask;
	int32_t		id;

	while ((id = tok->sym_slots[slot]) >= 0)
	{
		if (tok->entries[id].sym_len == n && memcmp(entry_symbol(tok, id), s, n) == 0)
			break;
		slot = (slot + 1) & tok->sym_mask;
	}
	return slot;
}

int32_t
sae_tokenizer_token_to_id(const SaeTokenizer *tok, const char *symbol, size_t len)
{
	return tok->sym_slots[sym_slot(tok, symbol, len)];
}

/* The merge of the pair (a, b), or NULL. */
static const MergeSlot *
merge_find(const SaeTokenizer *tok, int32_t a, int32_t b)
{
	uint64_t	key = ((uint64_t) (uint32_t) a << 32) | (uint32_t) b;
	size_t		slot = hash_pair(key) & tok->merge_mask;

	while (tok->merges[slot].key != EMPTY_KEY)
	{
		if (tok->merges[slot].key == key)
			return &tok->merges[slot];
		slot = (slot + 1) & tok->merge_mask;
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Building the vocabulary
 * ------------------------------------------------------------------------ */

/* Copy n bytes into the arena, NUL-terminated; *off gets their offset. */
static bool
arena_add(SaeTokenizer *tok, const char *s, size_t n, size_t *off)
{
	if (!grow((void **) &tok->arena, &tok->arena_cap, tok->arena_len, n + 1, 1))
		return false;
	memcpy(tok->arena + tok->arena_len, s, n);
	tok->arena[tok->arena_len + n] = '\0';
	*off = tok->arena_len;
	tok->arena_len += n + 1;
	return true;
}

/*
 * The bytes a vocabulary string stands for: each character mapped back
 * through bytes_to_unicode.  A string with a character outside the 256
 * (only added tokens have those) stands for its own UTF-8, as HF's
 * ByteLevel decoder falls back to.
 */
static bool
unmap_symbol(SaeTokenizer *tok, const char *s, size_t n, size_t *off, uint32_t *len)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0,
				k,
				start;
	uint32_t	cp;
	bool		ok;

	if (!grow((void **) &tok->arena, &tok->arena_cap, tok->arena_len, n + 1, 1))
		return false;
	start = tok->arena_len;
	while (i < n)
	{
		k = utf8_next(u + i, n - i, &cp, &ok);
		if (!ok || cp >= 324 || cp_byte[cp] < 0)
		{
			tok->arena_len = start;
			*len = (uint32_t) n;
			return arena_add(tok, s, n, off);
		}
		tok->arena[tok->arena_len++] = (char) cp_byte[cp];
		i += k;
	}
	tok->arena[tok->arena_len++] = '\0';
	*off = start;
	*len = (uint32_t) (tok->arena_len - 1 - start);
	return true;
}

/* An id read from a file: an integer in [0, SAE_TOK_MAX_TOKENS). */
static int
check_id(const SaeJson *v, const char *file, const char *what, const char *s, size_t n,
		 int32_t *id, SaeError *err)
{
	char		buf[SHOWN * 4 + 16];

	if (v != NULL && v->type == SAE_JSON_NUMBER && (v->number < 0 || v->number >= SAE_TOK_MAX_TOKENS))
		return file_error(err, SAE_ERR_LIMIT, file, "%s \"%s\": id %.0f is out of range (0 to %d)",
						  what, shown(s, n, buf, sizeof(buf)), v->number, SAE_TOK_MAX_TOKENS - 1);
	if (v == NULL || v->type != SAE_JSON_NUMBER || !v->is_integer)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s \"%s\": the id is not an integer",
						  what, shown(s, n, buf, sizeof(buf)));
	*id = (int32_t) v->integer;
	return SAE_OK;
}

/* A vocabulary string: non-empty and not absurdly long. */
static int
check_symbol(const char *s, size_t n, const char *file, const char *what, SaeError *err)
{
	char		buf[SHOWN * 4 + 16];

	if (n == 0)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s: an empty token string", what);
	if (n > SAE_TOK_MAX_TOKEN_BYTES)
		return file_error(err, SAE_ERR_LIMIT, file, "%s \"%s\": %zu bytes, more than the %d allowed",
						  what, shown(s, n, buf, sizeof(buf)), n, SAE_TOK_MAX_TOKEN_BYTES);
	return SAE_OK;
}

/* Room for ids 0..n_ids-1 and a symbol table for n_symbols strings. */
static int
alloc_vocab(SaeTokenizer *tok, int32_t n_ids, size_t n_symbols, SaeError *err)
{
	size_t		size = table_size(n_symbols);

	tok->n_ids = n_ids;
	tok->entries = calloc((size_t) n_ids, sizeof(TokEntry));
	tok->sym_slots = malloc(size * sizeof(int32_t));
	if (tok->entries == NULL || tok->sym_slots == NULL)
		return oom(err);
	memset(tok->sym_slots, 0xFF, size * sizeof(int32_t));
	tok->sym_mask = size - 1;
	return SAE_OK;
}

/*
 * Add the vocabulary string s with id: the id must be free and the string
 * new.  Its decoded bytes come from the byte map.
 */
static int
add_vocab_entry(SaeTokenizer *tok, const char *s, size_t n, int32_t id, const char *file,
				const char *what, SaeError *err)
{
	TokEntry   *e = &tok->entries[id];
	size_t		slot = sym_slot(tok, s, n);
	char		b1[SHOWN * 4 + 16],
				b2[SHOWN * 4 + 16];

	if (tok->sym_slots[slot] >= 0)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s \"%s\" appears twice", what,
						  shown(s, n, b1, sizeof(b1)));
	if (e->flags & TOK_PRESENT)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "id %d is used by both \"%s\" and \"%s\"",
						  id, shown(entry_symbol(tok, id), e->sym_len, b1, sizeof(b1)),
						  shown(s, n, b2, sizeof(b2)));
	if (!arena_add(tok, s, n, &e->sym_off) || !unmap_symbol(tok, s, n, &e->bytes_off, &e->bytes_len))
		return oom(err);
	e->sym_len = (uint32_t) n;
	e->flags = TOK_PRESENT;
	tok->sym_slots[slot] = id;
	return SAE_OK;
}

/* The largest id in a vocab object (after checking every entry's id and string). */
static int
scan_vocab(const SaeJson *vocab, const char *file, const char *what, int32_t *max_id, SaeError *err)
{
	size_t		i;
	int32_t		id;
	int			rc;

	if (vocab == NULL || vocab->type != SAE_JSON_OBJECT)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s is not a JSON object", what);
	if (vocab->count > SAE_TOK_MAX_TOKENS)
		return file_error(err, SAE_ERR_LIMIT, file, "%s has %zu entries, more than the %d allowed",
						  what, vocab->count, SAE_TOK_MAX_TOKENS);
	for (i = 0; i < vocab->count; i++)
	{
		if ((rc = check_symbol(vocab->keys[i], vocab->key_lengths[i], file, what, err)) != SAE_OK ||
			(rc = check_id(&vocab->items[i], file, what, vocab->keys[i], vocab->key_lengths[i],
						   &id, err)) != SAE_OK)
			return rc;
		if (id > *max_id)
			*max_id = id;
	}
	return SAE_OK;
}

/* Add every entry of a vocab object (already scanned). */
static int
load_vocab(SaeTokenizer *tok, const SaeJson *vocab, const char *file, const char *what, SaeError *err)
{
	size_t		i;
	int			rc;

	for (i = 0; i < vocab->count; i++)
		if ((rc = add_vocab_entry(tok, vocab->keys[i], vocab->key_lengths[i],
								  (int32_t) vocab->items[i].integer, file, what, err)) != SAE_OK)
			return rc;
	return SAE_OK;
}

/* Every byte needs its single-byte token, or some text could not be encoded. */
static int
find_byte_ids(SaeTokenizer *tok, const char *file, SaeError *err)
{
	char		sym[4];
	size_t		n;
	int			b;

	for (b = 0; b < 256; b++)
	{
		n = utf8_put(byte_cp[b], sym);
		tok->byte_id[b] = sae_tokenizer_token_to_id(tok, sym, n);
		if (tok->byte_id[b] < 0)
			return file_error(err, SAE_ERR_INVALID_DATA, file,
							  "the vocabulary has no token for byte 0x%02x (\"%.*s\"); a byte-level "
							  "BPE needs all 256", b, (int) n, sym);
	}
	return SAE_OK;
}

/* ------------------------------------------------------------------------
 * Merges
 * ------------------------------------------------------------------------ */

/* An empty merge table with room for n merges. */
static int
alloc_merges(SaeTokenizer *tok, size_t n, SaeError *err)
{
	size_t		size = table_size(n),
				i;

	tok->merges = malloc(size * sizeof(MergeSlot));
	if (tok->merges == NULL)
		return oom(err);
	for (i = 0; i < size; i++)
		tok->merges[i].key = EMPTY_KEY;
	tok->merge_mask = size - 1;
	return SAE_OK;
}

/*
 * Add the merge (a, b) with the next rank.  Both halves and their
 * concatenation must be tokens (HF's rule).  A pair listed twice keeps its
 * later rank, as HF's and encoder.py's dictionaries do.
 */
static int
add_merge(SaeTokenizer *tok, const char *a, size_t na, const char *b, size_t nb,
		  const char *file, const char *where, SaeError *err)
{
	char		cat[2 * SAE_TOK_MAX_TOKEN_BYTES];
	char		buf[SHOWN * 4 + 16];
	int32_t		ia = sae_tokenizer_token_to_id(tok, a, na),
				ib = sae_tokenizer_token_to_id(tok, b, nb),
				ic = -1;
	uint64_t	key;
	size_t		slot;

	if (ia < 0 || ib < 0)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s: \"%s\" is not in the vocabulary",
						  where, ia < 0 ? shown(a, na, buf, sizeof(buf)) : shown(b, nb, buf, sizeof(buf)));
	if (na + nb <= sizeof(cat))
	{
		memcpy(cat, a, na);
		memcpy(cat + na, b, nb);
		ic = sae_tokenizer_token_to_id(tok, cat, na + nb);
	}
	if (ic < 0)
		return file_error(err, SAE_ERR_INVALID_DATA, file,
						  "%s: the merged token \"%s\" is not in the vocabulary", where,
						  shown(cat, na + nb <= sizeof(cat) ? na + nb : 0, buf, sizeof(buf)));
	key = ((uint64_t) (uint32_t) ia << 32) | (uint32_t) ib;
	slot = hash_pair(key) & tok->merge_mask;
	while (tok->merges[slot].key != EMPTY_KEY && tok->merges[slot].key != key)
		slot = (slot + 1) & tok->merge_mask;
	tok->merges[slot].key = key;
	tok->merges[slot].rank = (int32_t) tok->n_merges++;
	tok->merges[slot].new_id = ic;
	return SAE_OK;
}

/* One "a b" merge line or string: exactly one space between two non-empty halves. */
static int
add_merge_line(SaeTokenizer *tok, const char *s, size_t n, const char *file, const char *where,
			   SaeError *err)
{
	const char *sp = memchr(s, ' ', n);
	char		buf[SHOWN * 4 + 16];

	if (sp == NULL || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t) (s + n - sp - 1)))
		return file_error(err, SAE_ERR_INVALID_DATA, file,
						  "%s: \"%s\" is not two tokens separated by one space", where,
						  shown(s, n, buf, sizeof(buf)));
	return add_merge(tok, s, (size_t) (sp - s), sp + 1, (size_t) (s + n - sp - 1), file, where, err);
}

/* The number of lines of text (a last line without '\n' counts). */
static size_t
count_lines(const char *text, size_t len)
{
	size_t		n = 0,
				i;

	for (i = 0; i < len; i++)
		n += text[i] == '\n';
	return n + (len > 0 && text[len - 1] != '\n');
}

/*
 * merges.txt: one "a b" per line in rank order.  Lines starting with
 * "#version" are skipped (HF's rule; OpenAI's file has one such first line)
 * and so are empty lines; a "\r\n" ending is accepted.
 */
static int
load_merges_txt(SaeTokenizer *tok, const char *text, size_t len, const char *file, SaeError *err)
{
	size_t		pos = 0,
				line_no = 0,
				n;
	const char *nl;
	char		where[32];
	int			rc;

	if (count_lines(text, len) > SAE_TOK_MAX_MERGES + 1)
		return file_error(err, SAE_ERR_LIMIT, file, "more than %d merges", SAE_TOK_MAX_MERGES);
	if ((rc = alloc_merges(tok, count_lines(text, len), err)) != SAE_OK)
		return rc;
	while (pos < len)
	{
		nl = memchr(text + pos, '\n', len - pos);
		n = nl ? (size_t) (nl - (text + pos)) : len - pos;
		line_no++;
		if (n > 0 && text[pos + n - 1] == '\r')
			n--;
		if (n > 0 && !(n >= 8 && memcmp(text + pos, "#version", 8) == 0))
		{
			snprintf(where, sizeof(where), "line %zu", line_no);
			if ((rc = add_merge_line(tok, text + pos, n, file, where, err)) != SAE_OK)
				return rc;
		}
		pos += (nl ? (size_t) (nl - (text + pos)) + 1 : len - pos);
	}
	return SAE_OK;
}

/* tokenizer.json model.merges: "a b" strings or [a, b] pairs. */
static int
load_merges_json(SaeTokenizer *tok, const SaeJson *merges, const char *file, SaeError *err)
{
	size_t		i;
	char		where[48];
	const SaeJson *m;
	int			rc;

	if (merges != NULL && merges->type != SAE_JSON_ARRAY)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "model.merges is not an array");
	if (merges != NULL && merges->count > SAE_TOK_MAX_MERGES)
		return file_error(err, SAE_ERR_LIMIT, file, "model.merges has %zu entries, more than the %d allowed",
						  merges->count, SAE_TOK_MAX_MERGES);
	if ((rc = alloc_merges(tok, merges ? merges->count : 0, err)) != SAE_OK)
		return rc;
	for (i = 0; merges != NULL && i < merges->count; i++)
	{
		m = &merges->items[i];
		snprintf(where, sizeof(where), "model.merges[%zu]", i);
		if (m->type == SAE_JSON_STRING)
			rc = add_merge_line(tok, m->string, m->length, file, where, err);
		else if (m->type == SAE_JSON_ARRAY && m->count == 2 && m->items[0].type == SAE_JSON_STRING &&
				 m->items[1].type == SAE_JSON_STRING)
			rc = add_merge(tok, m->items[0].string, m->items[0].length, m->items[1].string,
						   m->items[1].length, file, where, err);
		else
			rc = file_error(err, SAE_ERR_INVALID_DATA, file,
							"%s is neither an \"a b\" string nor a pair of strings", where);
		if (rc != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* ------------------------------------------------------------------------
 * Added tokens
 * ------------------------------------------------------------------------ */

/*
 * Make id an added token with the given content.  If the vocabulary has
 * the same string at the same id, that entry is marked; otherwise the id
 * must be free.  Added tokens decode to their content as written.
 */
static int
add_added(SaeTokenizer *tok, const char *s, size_t n, int32_t id, bool special, const char *file,
		  SaeError *err)
{
	TokEntry   *e = &tok->entries[id];
	size_t		slot = sym_slot(tok, s, n);
	char		b1[SHOWN * 4 + 16],
				b2[SHOWN * 4 + 16];

	if ((e->flags & TOK_PRESENT) && !(tok->sym_slots[slot] == id))
		return file_error(err, SAE_ERR_INVALID_DATA, file, "id %d is used by both \"%s\" and \"%s\"",
						  id, shown(entry_symbol(tok, id), e->sym_len, b1, sizeof(b1)),
						  shown(s, n, b2, sizeof(b2)));
	if (e->flags & TOK_ADDED)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "added token %d is listed twice", id);
	if (!arena_add(tok, s, n, &e->bytes_off) ||
		(!(e->flags & TOK_PRESENT) && !arena_add(tok, s, n, &e->sym_off)))
		return oom(err);
	e->bytes_len = (uint32_t) n;
	e->sym_len = (uint32_t) n;
	e->flags |= TOK_PRESENT | TOK_ADDED | (special ? TOK_SPECIAL : 0);
	if (tok->sym_slots[slot] < 0)
		tok->sym_slots[slot] = id;
	tok->n_added++;
	return SAE_OK;
}

/* Added tokens in matching order: by first byte, then the longest first. */
static int
cmp_added(const void *pa, const void *pb)
{
	const AddedTok *a = pa,
			   *b = pb;

	if (a->first != b->first)
		return a->first < b->first ? -1 : 1;
	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

/*
 * The added tokens as a matching index: sorted so that the candidates for
 * a first byte are one slice, longest first, and the first full match in
 * a slice is the longest (HF's leftmost-longest rule).
 */
static int
index_added(SaeTokenizer *tok, SaeError *err)
{
	int32_t		id,
				k = 0;
	int			b;

	tok->added = calloc((size_t) tok->n_added + 1, sizeof(AddedTok));
	if (tok->added == NULL)
		return oom(err);
	for (id = 0; id < tok->n_ids; id++)
	{
		const TokEntry *e = &tok->entries[id];

		if (!(e->flags & TOK_ADDED))
			continue;
		tok->added[k].id = id;
		tok->added[k].len = e->bytes_len;
		tok->added[k].off = e->bytes_off;
		tok->added[k].first = (unsigned char) tok->arena[e->bytes_off];
		k++;
	}
	qsort(tok->added, (size_t) k, sizeof(AddedTok), cmp_added);
	for (b = 0, k = 0; b <= 256; b++)
	{
		while (k < tok->n_added && tok->added[k].first < b)
			k++;
		tok->added_start[b] = k;
	}
	return SAE_OK;
}

/* The piece cache, empty. */
static int
alloc_cache(SaeTokenizer *tok, SaeError *err)
{
	tok->cache = calloc(CACHE_SLOTS, sizeof(CacheSlot));
	tok->cache_keys = malloc(CACHE_ARENA);
	tok->cache_ids = malloc(CACHE_ARENA * sizeof(int32_t));
	if (tok->cache == NULL || tok->cache_keys == NULL || tok->cache_ids == NULL)
		return oom(err);
	return SAE_OK;
}

/* What every loader does last: byte ids, added-token index, BOS/EOS, cache. */
static int
finish_load(SaeTokenizer *tok, const char *file, SaeError *err)
{
	int			rc;
	int32_t		eot = sae_tokenizer_token_to_id(tok, "<|endoftext|>", 13);

	if ((rc = find_byte_ids(tok, file, err)) != SAE_OK ||
		(rc = index_added(tok, err)) != SAE_OK ||
		(rc = alloc_cache(tok, err)) != SAE_OK)
		return rc;
	tok->bos_id = eot;
	tok->eos_id = eot;
	return SAE_OK;
}

/* An empty tokenizer (no BOS yet); NULL when out of memory. */
static SaeTokenizer *
new_tokenizer(void)
{
	SaeTokenizer *tok = calloc(1, sizeof(SaeTokenizer));

	init_byte_map();
	if (tok != NULL)
		tok->bos_id = tok->eos_id = -1;
	return tok;
}

void
sae_tokenizer_free(SaeTokenizer *tok)
{
	if (tok == NULL)
		return;
	free(tok->entries);
	free(tok->arena);
	free(tok->sym_slots);
	free(tok->merges);
	free(tok->added);
	free(tok->cache);
	free(tok->cache_keys);
	free(tok->cache_ids);
	free(tok->syms);
	free(tok->heap);
	free(tok->mapped);
	free(tok);
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* vocab.json (an object of string -> id) and merges.txt. */
static int
load_slow(SaeTokenizer *tok, const char *vocab, size_t vocab_len, const char *vocab_name,
		  const char *merges, size_t merges_len, const char *merges_name, SaeError *err)
{
	SaeJson    *root = NULL;
	int32_t		max_id = -1,
				eot;
	int			rc;

	if ((rc = sae_json_parse(vocab, vocab_len, &root, err)) != SAE_OK)
	{
		char		msg[sizeof(err->message)];

		memcpy(msg, err->message, sizeof(msg));
		return file_error(err, (SaeErrCode) rc, vocab_name, "%s", msg);
	}
	if ((rc = scan_vocab(root, vocab_name, "vocabulary entry", &max_id, err)) == SAE_OK &&
		(rc = alloc_vocab(tok, max_id + 1, root->count, err)) == SAE_OK &&
		(rc = load_vocab(tok, root, vocab_name, "vocabulary entry", err)) == SAE_OK &&
		(rc = load_merges_txt(tok, merges, merges_len, merges_name, err)) == SAE_OK)
	{
		/* GPT2Tokenizer makes "<|endoftext|>" its BOS, EOS and UNK, so an added token */
		eot = sae_tokenizer_token_to_id(tok, "<|endoftext|>", 13);
		if (eot >= 0)
			rc = add_added(tok, "<|endoftext|>", 13, eot, true, vocab_name, err);
		if (rc == SAE_OK)
			rc = finish_load(tok, vocab_name, err);
	}
	sae_json_free(root);
	return rc;
}

int
sae_tokenizer_from_files_text(const char *vocab, size_t vocab_len, const char *vocab_name,
							  const char *merges, size_t merges_len, const char *merges_name,
							  SaeTokenizer **out, SaeError *err)
{
	SaeTokenizer *tok = new_tokenizer();
	int			rc;

	*out = NULL;
	if (tok == NULL)
		return oom(err);
	if ((rc = load_slow(tok, vocab, vocab_len, vocab_name, merges, merges_len, merges_name, err)) != SAE_OK)
	{
		sae_tokenizer_free(tok);
		return rc;
	}
	*out = tok;
	return SAE_OK;
}

/* Whether obj's member key is true (missing or null count as false). */
static bool
get_true(const SaeJson *obj, const char *key)
{
	const SaeJson *v = obj ? sae_json_get(obj, key) : NULL;

	return v != NULL && v->type == SAE_JSON_BOOL && v->boolean;
}

/* Whether obj's member key is missing, null, or the string want. */
static bool
absent_or(const SaeJson *obj, const char *key, const char *want)
{
	const SaeJson *v = obj ? sae_json_get(obj, key) : NULL;

	return v == NULL || v->type == SAE_JSON_NULL ||
		(v->type == SAE_JSON_STRING && strcmp(v->string, want) == 0);
}

/* A pipeline part that is a ByteLevel step, or absent/null (GPT-2's default). */
static bool
is_byte_level(const SaeJson *part)
{
	return part == NULL || part->type == SAE_JSON_NULL || absent_or(part, "type", "ByteLevel");
}

/*
 * The parts of tokenizer.json around the model must be GPT-2's: no
 * normalizer, a ByteLevel pre-tokenizer with the GPT-2 regex and no prefix
 * space, a BPE model without dropout or affixes, a ByteLevel decoder.
 * Anything else would encode differently, so it is refused by name rather
 * than ignored.  The post-processor is not applied: whether a BOS goes
 * first is the caller's choice (SAE_TOK_PREPEND_BOS), as in
 * TransformerLens.
 */
static int
check_pipeline(const SaeJson *root, const SaeJson *model, const char *file, SaeError *err)
{
	const SaeJson *norm = sae_json_get(root, "normalizer");
	const SaeJson *pre = sae_json_get(root, "pre_tokenizer");
	const SaeJson *dropout = sae_json_get(model, "dropout");
	const char *what = NULL;

	if (norm != NULL && norm->type != SAE_JSON_NULL)
		what = "a normalizer";
	else if (pre == NULL || pre->type != SAE_JSON_OBJECT || !absent_or(pre, "type", "ByteLevel") ||
			 sae_json_get(pre, "type") == NULL)
		what = "a pre_tokenizer other than ByteLevel";
	else if (get_true(pre, "add_prefix_space"))
		what = "add_prefix_space";
	else if (sae_json_get(pre, "use_regex") != NULL && !get_true(pre, "use_regex"))
		what = "a ByteLevel pre_tokenizer without the GPT-2 regex";
	else if (!absent_or(model, "type", "BPE"))
		what = "a model other than BPE";
	else if (dropout != NULL && dropout->type == SAE_JSON_NUMBER && dropout->number != 0)
		what = "BPE dropout";
	else if (!absent_or(model, "continuing_subword_prefix", "") || !absent_or(model, "end_of_word_suffix", ""))
		what = "a continuing_subword_prefix or end_of_word_suffix";
	else if (!is_byte_level(sae_json_get(root, "decoder")))
		what = "a decoder other than ByteLevel";
	if (what != NULL)
		return file_error(err, SAE_ERR_NOT_SUPPORTED, file,
						  "%s is not supported; only GPT-2 style byte-level BPE is", what);
	return SAE_OK;
}

/* One added_tokens entry: an object with an id and a non-empty content. */
static int
check_added(const SaeJson *a, size_t i, const char *file, int32_t *id, SaeError *err)
{
	const SaeJson *content = sae_json_get(a, "content");
	char		where[48];
	int			rc;

	snprintf(where, sizeof(where), "added_tokens[%zu]", i);
	if (a->type != SAE_JSON_OBJECT || content == NULL || content->type != SAE_JSON_STRING)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "%s has no \"content\" string", where);
	if ((rc = check_symbol(content->string, content->length, file, where, err)) != SAE_OK ||
		(rc = check_id(sae_json_get(a, "id"), file, where, content->string, content->length, id, err)) != SAE_OK)
		return rc;
	if (get_true(a, "single_word") || get_true(a, "lstrip") || get_true(a, "rstrip"))
		return file_error(err, SAE_ERR_NOT_SUPPORTED, file,
						  "%s: single_word, lstrip and rstrip added tokens are not supported", where);
	return SAE_OK;
}

/* The added_tokens array, checked; max_id grows to cover its ids. */
static int
scan_added(const SaeJson *added, const char *file, int32_t *max_id, SaeError *err)
{
	size_t		i;
	int32_t		id;
	int			rc;

	if (added == NULL || added->type == SAE_JSON_NULL)
		return SAE_OK;
	if (added->type != SAE_JSON_ARRAY)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "added_tokens is not an array");
	if (added->count > SAE_TOK_MAX_ADDED)
		return file_error(err, SAE_ERR_LIMIT, file, "%zu added tokens, more than the %d allowed",
						  added->count, SAE_TOK_MAX_ADDED);
	for (i = 0; i < added->count; i++)
	{
		if ((rc = check_added(&added->items[i], i, file, &id, err)) != SAE_OK)
			return rc;
		if (id > *max_id)
			*max_id = id;
	}
	return SAE_OK;
}

/* Add the (scanned) added_tokens. */
static int
load_added(SaeTokenizer *tok, const SaeJson *added, const char *file, SaeError *err)
{
	size_t		i;
	int			rc;

	for (i = 0; added != NULL && added->type == SAE_JSON_ARRAY && i < added->count; i++)
	{
		const SaeJson *a = &added->items[i];
		const SaeJson *content = sae_json_get(a, "content");

		if ((rc = add_added(tok, content->string, content->length,
							(int32_t) sae_json_get(a, "id")->integer, get_true(a, "special"),
							file, err)) != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* tokenizer.json, parsed. */
static int
load_json_tree(SaeTokenizer *tok, const SaeJson *root, const char *file, SaeError *err)
{
	const SaeJson *model = root->type == SAE_JSON_OBJECT ? sae_json_get(root, "model") : NULL;
	const SaeJson *added;
	int32_t		max_id = -1;
	int			rc;

	if (model == NULL || model->type != SAE_JSON_OBJECT)
		return file_error(err, SAE_ERR_INVALID_DATA, file, "no \"model\" object");
	added = sae_json_get(root, "added_tokens");
	if ((rc = check_pipeline(root, model, file, err)) != SAE_OK ||
		(rc = scan_vocab(sae_json_get(model, "vocab"), file, "model.vocab", &max_id, err)) != SAE_OK ||
		(rc = scan_added(added, file, &max_id, err)) != SAE_OK ||
		(rc = alloc_vocab(tok, max_id + 1, sae_json_get(model, "vocab")->count +
						  (added && added->type == SAE_JSON_ARRAY ? added->count : 0), err)) != SAE_OK ||
		(rc = load_vocab(tok, sae_json_get(model, "vocab"), file, "model.vocab", err)) != SAE_OK ||
		(rc = load_merges_json(tok, sae_json_get(model, "merges"), file, err)) != SAE_OK ||
		(rc = load_added(tok, added, file, err)) != SAE_OK)
		return rc;
	tok->ignore_merges = get_true(model, "ignore_merges");
	return finish_load(tok, file, err);
}

int
sae_tokenizer_from_json_text(const char *text, size_t len, const char *name, SaeTokenizer **out,
							 SaeError *err)
{
	SaeTokenizer *tok = new_tokenizer();
	SaeJson    *root = NULL;
	int			rc;

	*out = NULL;
	if (tok == NULL)
		return oom(err);
	if ((rc = sae_json_parse(text, len, &root, err)) != SAE_OK)
	{
		char		msg[sizeof(err->message)];

		memcpy(msg, err->message, sizeof(msg));
		rc = file_error(err, (SaeErrCode) rc, name, "%s", msg);
	}
	else
		rc = load_json_tree(tok, root, name, err);
	sae_json_free(root);
	if (rc != SAE_OK)
	{
		sae_tokenizer_free(tok);
		return rc;
	}
	*out = tok;
	return SAE_OK;
}

/* A whole file into memory (at most SAE_TOK_MAX_FILE_BYTES). */
static int
read_file(const char *path, char **text, size_t *len, SaeError *err)
{
	FILE	   *fp = fopen(path, "rb");
	long		size;
	char	   *buf;

	*text = NULL;
	if (fp == NULL)
		return file_error(err, SAE_ERR_INVALID_PARAMETER, path, "could not open the file: %s",
						  strerror(errno));
	if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0)
	{
		fclose(fp);
		return file_error(err, SAE_ERR_INVALID_PARAMETER, path, "could not read the file");
	}
	if ((unsigned long) size > SAE_TOK_MAX_FILE_BYTES)
	{
		fclose(fp);
		return file_error(err, SAE_ERR_LIMIT, path, "the file is %ld bytes, more than the %zu allowed",
						  size, SAE_TOK_MAX_FILE_BYTES);
	}
	buf = malloc((size_t) size + 1);
	if (buf == NULL || fread(buf, 1, (size_t) size, fp) != (size_t) size)
	{
		free(buf);
		fclose(fp);
		return buf ? file_error(err, SAE_ERR_INVALID_PARAMETER, path, "could not read the file") : oom(err);
	}
	fclose(fp);
	buf[size] = '\0';
	*text = buf;
	*len = (size_t) size;
	return SAE_OK;
}

int
sae_tokenizer_load_files(const char *vocab_path, const char *merges_path, SaeTokenizer **out,
						 SaeError *err)
{
	char	   *vocab = NULL,
			   *merges = NULL;
	size_t		vocab_len = 0,
				merges_len = 0;
	int			rc;

	*out = NULL;
	if ((rc = read_file(vocab_path, &vocab, &vocab_len, err)) == SAE_OK &&
		(rc = read_file(merges_path, &merges, &merges_len, err)) == SAE_OK)
		rc = sae_tokenizer_from_files_text(vocab, vocab_len, vocab_path, merges, merges_len,
										   merges_path, out, err);
	free(vocab);
	free(merges);
	return rc;
}

int
sae_tokenizer_load_json(const char *path, SaeTokenizer **out, SaeError *err)
{
	char	   *text = NULL;
	size_t		len = 0;
	int			rc;

	*out = NULL;
	if ((rc = read_file(path, &text, &len, err)) == SAE_OK)
		rc = sae_tokenizer_from_json_text(text, len, path, out, err);
	free(text);
	return rc;
}

/* ------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------ */

int32_t
sae_tokenizer_vocab_size(const SaeTokenizer *tok)
{
	return tok->n_ids;
}

int32_t
sae_tokenizer_bos_id(const SaeTokenizer *tok)
{
	return tok->bos_id;
}

int32_t
sae_tokenizer_eos_id(const SaeTokenizer *tok)
{
	return tok->eos_id;
}

/* Whether id names a token. */
static bool
is_token(const SaeTokenizer *tok, int32_t id)
{
	return id >= 0 && id < tok->n_ids && (tok->entries[id].flags & TOK_PRESENT);
}

int
sae_tokenizer_set_bos_eos(SaeTokenizer *tok, int32_t bos_id, int32_t eos_id, SaeError *err)
{
	if ((bos_id != -1 && !is_token(tok, bos_id)) || (eos_id != -1 && !is_token(tok, eos_id)))
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "BOS %d or EOS %d is not a token id of this tokenizer",
						 bos_id, eos_id);
	tok->bos_id = bos_id;
	tok->eos_id = eos_id;
	return SAE_OK;
}

const char *
sae_tokenizer_token_bytes(const SaeTokenizer *tok, int32_t id, size_t *len)
{
	if (!is_token(tok, id))
		return NULL;
	*len = tok->entries[id].bytes_len;
	return tok->arena + tok->entries[id].bytes_off;
}

const char *
sae_tokenizer_token_symbol(const SaeTokenizer *tok, int32_t id, size_t *len)
{
	if (!is_token(tok, id))
		return NULL;
	if (len != NULL)
		*len = tok->entries[id].sym_len;
	return entry_symbol(tok, id);
}

bool
sae_tokenizer_is_special(const SaeTokenizer *tok, int32_t id)
{
	return is_token(tok, id) && (tok->entries[id].flags & TOK_SPECIAL);
}

/* ------------------------------------------------------------------------
 * BPE on one piece
 * ------------------------------------------------------------------------ */

/* Whether candidate a comes before b: lower rank, then further left. */
static bool
cand_less(const BpeCand *a, const BpeCand *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

/* Push onto the min-heap (room reserved by the caller). */
static void
heap_push(SaeTokenizer *tok, int32_t rank, int32_t pos, int32_t new_id)
{
	BpeCand    *h = tok->heap;
	size_t		i = tok->heap_len++;
	BpeCand		c = {rank, pos, new_id};

	while (i > 0 && cand_less(&c, &h[(i - 1) / 2]))
	{
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = c;
}

/* Pop the best candidate (the heap is not empty). */
static BpeCand
heap_pop(SaeTokenizer *tok)
{
	BpeCand    *h = tok->heap;
	BpeCand		top = h[0],
				last = h[--tok->heap_len];
	size_t		n = tok->heap_len,
				i = 0,
				c;

	while ((c = 2 * i + 1) < n)
	{
		if (c + 1 < n && cand_less(&h[c + 1], &h[c]))
			c++;
		if (!cand_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (n > 0)
		h[i] = last;
	return top;
}

/* Queue the pair starting at symbol pos, if it has a merge. */
static void
queue_pair(SaeTokenizer *tok, int32_t pos)
{
	int32_t		next = tok->syms[pos].next;
	const MergeSlot *m;

	if (next < 0)
		return;
	m = merge_find(tok, tok->syms[pos].id, tok->syms[next].id);
	if (m != NULL)
		heap_push(tok, m->rank, pos, m->new_id);
}

/*
 * Apply one popped candidate, unless it went stale (its left symbol was
 * merged away, or the pair there now merges into something else: HF's
 * check), then queue the pairs the new symbol forms with its neighbours.
 */
static void
apply_cand(SaeTokenizer *tok, BpeCand c)
{
	BpeSym	   *s = tok->syms;
	int32_t		right = s[c.pos].next;
	const MergeSlot *m;

	if (s[c.pos].id < 0 || right < 0)
		return;
	m = merge_find(tok, s[c.pos].id, s[right].id);
	if (m == NULL || m->new_id != c.new_id)
		return;
	s[c.pos].id = c.new_id;
	s[c.pos].next = s[right].next;
	s[right].id = -1;
	if (s[right].next >= 0)
		s[s[right].next].prev = c.pos;
	if (s[c.pos].prev >= 0)
		queue_pair(tok, s[c.pos].prev);
	queue_pair(tok, c.pos);
}

/* Scratch room for a piece of n bytes: n symbols, 3n heap entries. */
static bool
reserve_scratch(SaeTokenizer *tok, size_t n)
{
	return grow((void **) &tok->syms, &tok->syms_cap, 0, n, sizeof(BpeSym)) &&
		grow((void **) &tok->heap, &tok->heap_cap, 0, 3 * n, sizeof(BpeCand));
}

/* Merge the n bytes of a piece; appends its ids to out. */
static int
bpe_piece(SaeTokenizer *tok, const unsigned char *s, size_t n, SaeTokIds *out, SaeError *err)
{
	int32_t		i,
				len = (int32_t) n;

	if (n > MAX_PIECE_BYTES)
		return sae_error(err, SAE_ERR_LIMIT, "a pre-token of %zu bytes is longer than the %zu allowed",
						 n, MAX_PIECE_BYTES);
	if (!reserve_scratch(tok, n))
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding a pre-token of %zu bytes", n);
	for (i = 0; i < len; i++)
	{
		tok->syms[i].id = tok->byte_id[s[i]];
		tok->syms[i].prev = i - 1;
		tok->syms[i].next = i + 1 < len ? i + 1 : -1;
	}
	tok->heap_len = 0;
	for (i = 0; i + 1 < len; i++)
		queue_pair(tok, i);
	while (tok->heap_len > 0)
		apply_cand(tok, heap_pop(tok));
	for (i = 0; i >= 0; i = tok->syms[i].next)
		if (!ids_append(out, &tok->syms[i].id, 1))
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding text");
	return SAE_OK;
}

/* ------------------------------------------------------------------------
 * The piece cache
 * ------------------------------------------------------------------------ */

/* The cached ids of a piece, or NULL. */
static const CacheSlot *
cache_get(const SaeTokenizer *tok, const unsigned char *s, size_t n, uint64_t h)
{
	size_t		slot = h & (CACHE_SLOTS - 1);
	const CacheSlot *c;

	while ((c = &tok->cache[slot])->key_len != 0)
	{
		if (c->hash == h && c->key_len == n && memcmp(tok->cache_keys + c->key_off, s, n) == 0)
			return c;
		slot = (slot + 1) & (CACHE_SLOTS - 1);
	}
	return NULL;
}

/* Forget everything (when full). */
static void
cache_clear(SaeTokenizer *tok)
{
	memset(tok->cache, 0, CACHE_SLOTS * sizeof(CacheSlot));
	tok->cache_entries = tok->cache_keys_len = tok->cache_ids_len = 0;
}

/* Remember that the piece s encodes to ids[0..n_ids). */
static void
cache_put(SaeTokenizer *tok, const unsigned char *s, size_t n, uint64_t h, const int32_t *ids,
		  size_t n_ids)
{
	size_t		slot = h & (CACHE_SLOTS - 1);
	CacheSlot  *c;

	if (tok->cache_entries >= CACHE_MAX_ENTRIES || tok->cache_keys_len + n > CACHE_ARENA ||
		tok->cache_ids_len + n_ids > CACHE_ARENA)
		cache_clear(tok);
	while (tok->cache[slot].key_len != 0)
		slot = (slot + 1) & (CACHE_SLOTS - 1);
	c = &tok->cache[slot];
	c->hash = h;
	c->key_off = tok->cache_keys_len;
	c->key_len = (uint32_t) n;
	c->ids_off = tok->cache_ids_len;
	c->n_ids = (uint32_t) n_ids;
	memcpy(tok->cache_keys + tok->cache_keys_len, s, n);
	memcpy(tok->cache_ids + tok->cache_ids_len, ids, n_ids * sizeof(int32_t));
	tok->cache_keys_len += (uint32_t) n;
	tok->cache_ids_len += (uint32_t) n_ids;
	tok->cache_entries++;
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

/*
 * ignore_merges (tokenizer.json): a piece that is itself a token is that
 * token, merges or not.  Returns its id or -1.
 */
static int32_t
whole_piece_id(SaeTokenizer *tok, const unsigned char *s, size_t n)
{
	size_t		i,
				m = 0;

	if (n > SAE_TOK_MAX_TOKEN_BYTES ||
		!grow((void **) &tok->mapped, &tok->mapped_cap, 0, 2 * n, 1))
		return -1;
	for (i = 0; i < n; i++)
		m += utf8_put(byte_cp[s[i]], tok->mapped + m);
	return sae_tokenizer_token_to_id(tok, tok->mapped, m);
}

/* Encode one pre-token: one byte, a cached piece, or BPE. */
static int
encode_piece(SaeTokenizer *tok, const unsigned char *s, size_t n, SaeTokIds *out, SaeError *err)
{
	uint64_t	h;
	const CacheSlot *c;
	size_t		before = out->len;
	int32_t		id;
	int			rc;

	if (n == 1 || (tok->ignore_merges && (id = whole_piece_id(tok, s, n)) >= 0))
	{
		id = n == 1 ? tok->byte_id[s[0]] : id;
		return ids_append(out, &id, 1) ? SAE_OK :
			sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding text");
	}
	if (n > CACHE_MAX_KEY)
		return bpe_piece(tok, s, n, out, err);
	h = hash_bytes((const char *) s, n);
	if ((c = cache_get(tok, s, n, h)) != NULL)
		return ids_append(out, tok->cache_ids + c->ids_off, c->n_ids) ? SAE_OK :
			sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding text");
	if ((rc = bpe_piece(tok, s, n, out, err)) == SAE_OK)
		cache_put(tok, s, n, h, out->ids + before, out->len - before);
	return rc;
}

/* Encode a stretch of text with no added token in it. */
static int
encode_segment(SaeTokenizer *tok, const unsigned char *s, size_t n, SaeTokIds *out, SaeError *err)
{
	size_t		i = 0,
				end;
	int			rc;

	while (i < n)
	{
		end = piece_end(s, n, i);
		if ((rc = encode_piece(tok, s + i, end - i, out, err)) != SAE_OK)
			return rc;
		i = end;
	}
	return SAE_OK;
}

/*
 * The leftmost, then longest, added token in s[from..n): its start (n if
 * none) and *which (an index into tok->added).
 */
static size_t
find_added(const SaeTokenizer *tok, const unsigned char *s, size_t n, size_t from, int32_t *which)
{
	size_t		i;
	int32_t		k;

	for (i = from; i < n; i++)
	{
		for (k = tok->added_start[s[i]]; k < tok->added_start[s[i] + 1]; k++)
		{
			const AddedTok *a = &tok->added[k];

			if (a->len <= n - i && memcmp(tok->arena + a->off, s + i, a->len) == 0)
			{
				*which = k;
				return i;
			}
		}
	}
	return n;
}

int
sae_tokenizer_encode(SaeTokenizer *tok, const char *text, size_t len, int flags, SaeTokIds *out,
					 SaeError *err)
{
	const unsigned char *s = (const unsigned char *) text;
	bool		split = !(flags & SAE_TOK_SPECIAL_AS_TEXT) && tok->n_added > 0;
	size_t		pos = 0,
				at;
	int32_t		which = -1;
	int			rc;

	if (flags & SAE_TOK_PREPEND_BOS)
	{
		if (tok->bos_id < 0)
			return sae_error(err, SAE_ERR_INVALID_PARAMETER,
							 "prepend_bos: this tokenizer has no BOS token (no \"<|endoftext|>\")");
		if (!ids_append(out, &tok->bos_id, 1))
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding text");
	}
	while (pos < len)
	{
		at = split ? find_added(tok, s, len, pos, &which) : len;
		if ((rc = encode_segment(tok, s + pos, at - pos, out, err)) != SAE_OK)
			return rc;
		if (at == len)
			break;
		if (!ids_append(out, &tok->added[which].id, 1))
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory encoding text");
		pos = at + tok->added[which].len;
	}
	return SAE_OK;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

int
sae_tokenizer_decode(const SaeTokenizer *tok, const int32_t *ids, size_t n, int flags,
					 SaeTokBytes *out, bool *valid_utf8, SaeError *err)
{
	size_t		start = out->len,
				i;

	if (!bytes_append(out, "", 0))
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory decoding tokens");
	for (i = 0; i < n; i++)
	{
		const TokEntry *e;

		if (!is_token(tok, ids[i]))
		{
			out->len = start;
			out->data[start] = '\0';
			return sae_error(err, SAE_ERR_INVALID_PARAMETER,
							 "token id %d (at position %zu) is not in the vocabulary (0 to %d)",
							 ids[i], i, tok->n_ids - 1);
		}
		e = &tok->entries[ids[i]];
		if ((flags & SAE_TOK_SKIP_SPECIAL) && (e->flags & TOK_SPECIAL))
			continue;
		if (!bytes_append(out, tok->arena + e->bytes_off, e->bytes_len))
			return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory decoding tokens");
	}
	if (valid_utf8 != NULL)
		*valid_utf8 = sae_utf8_valid(out->data + start, out->len - start);
	return SAE_OK;
}

int
sae_tokenizer_token_str(const SaeTokenizer *tok, int32_t id, SaeTokBytes *out, SaeError *err)
{
	size_t		len;
	const char *b = sae_tokenizer_token_bytes(tok, id, &len);

	if (b == NULL)
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "token id %d is not in the vocabulary (0 to %d)",
						 id, tok->n_ids - 1);
	return sae_utf8_lossy(b, len, out, err);
}
