/*
 * json.h — a small JSON reader for model files (config.json, vocab.json,
 * tokenizer.json, model.safetensors.index.json, safetensors headers).
 *
 * Parses a whole document into a tree.  Strict RFC 8259: UTF-8 checked,
 * \u escapes (with surrogate pairs) decoded, nesting limited to
 * SAE_JSON_MAX_DEPTH, duplicate keys kept (lookups return the last, as
 * Python's json does).  Errors name the byte offset.
 */
#ifndef SAE_JSON_H
#define SAE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define SAE_JSON_MAX_DEPTH 256

typedef enum SaeJsonType
{
	SAE_JSON_NULL,
	SAE_JSON_BOOL,
	SAE_JSON_NUMBER,
	SAE_JSON_STRING,
	SAE_JSON_ARRAY,
	SAE_JSON_OBJECT
} SaeJsonType;

typedef struct SaeJson SaeJson;

struct SaeJson
{
	SaeJsonType type;
	bool		boolean;
	double		number;
	bool		is_integer;		/* the number was written without '.', 'e' or 'E' */
	long long	integer;		/* its value, when is_integer and it fits */
	char	   *string;			/* NUL-terminated UTF-8 (may contain \0 from \u0000: use length) */
	size_t		length;			/* of string */
	size_t		count;			/* items of an array or members of an object */
	SaeJson    *items;			/* arrays and objects: count values */
	char	  **keys;			/* objects: count NUL-terminated keys */
	size_t	   *key_lengths;
};

/* Parse len bytes of text; on success *out is a tree to free with sae_json_free. */
int			sae_json_parse(const char *text, size_t len, SaeJson **out, SaeError *err);
void		sae_json_free(SaeJson *json);

/* The member of an object named key (the last one if repeated), or NULL. */
const SaeJson *sae_json_get(const SaeJson *object, const char *key);

#endif
