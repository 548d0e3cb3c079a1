/*
 * json.c — a strict recursive-descent JSON parser (RFC 8259) for model
 * files; see json.h.
 *
 * The files it reads come from outside (downloaded checkpoints, tokenizer
 * files, safetensors headers), so it trusts nothing: every byte of a string
 * is checked to be well-formed UTF-8, a number must match the RFC grammar
 * before strtod sees it, nesting and sizes are bounded, and every error
 * names the byte offset where the text stopped making sense.  The tree is
 * always consistent while it is built, so a failure anywhere frees it with
 * sae_json_free and leaks nothing.
 */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Limits against absurd inputs.  The largest JSON files a model folder
 * holds (tokenizer.json of a large-vocabulary model) are tens of MB with
 * about a million values; a tree node costs ~90 bytes, so these caps keep a
 * hostile file (one value per two bytes) under ~1 GB of tree.
 */
#define JSON_MAX_BYTES ((size_t) 256 * 1024 * 1024)
#define JSON_MAX_VALUES ((size_t) 8 * 1024 * 1024)

/* The longest number we accept; the longest double needs ~770 digits. */
#define JSON_MAX_NUMBER_LEN 1024

typedef struct JsonParser
{
	const unsigned char *text;
	size_t		len;
	size_t		pos;
	int			depth;
	size_t		n_values;
	SaeError   *err;
} JsonParser;

static int	parse_value(JsonParser *p, SaeJson *out);

/* A syntax error at byte `at`, with what was expected there. */
static int
syntax_error(JsonParser *p, size_t at, const char *what)
{
	if (at >= p->len)
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: %s, found the end of the text", at, what);
	if (p->text[at] >= 0x21 && p->text[at] < 0x7f)
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: %s, found '%c'", at, what, p->text[at]);
	return sae_error(p->err, SAE_ERR_INVALID_DATA,
					 "invalid JSON at byte %zu: %s, found byte 0x%02x", at, what, p->text[at]);
}

/* Allocation failed while parsing. */
static int
oom_error(JsonParser *p)
{
	return sae_error(p->err, SAE_ERR_OUT_OF_MEMORY,
					 "out of memory while parsing JSON at byte %zu", p->pos);
}

/* RFC 8259 whitespace is these four bytes and nothing else. */
static void
skip_space(JsonParser *p)
{
	while (p->pos < p->len)
	{
		unsigned char c = p->text[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* Match a literal keyword (true, false, null) at the current position. */
static bool
match_word(JsonParser *p, const char *word)
{
	size_t		n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
		return false;
	p->pos += n;
	return true;
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most avail bytes), or 0.
 * Overlong forms, UTF-16 surrogates (U+D800..DFFF) and code points above
 * U+10FFFF are ill-formed (Unicode Table 3-7).
 */
static size_t
utf8_sequence_length(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t		n;
	unsigned char lo = 0x80,
				hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
	{
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	}
	else
		return 0;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* Append the UTF-8 encoding of code point cp (<= U+10FFFF, no surrogate). */
static size_t
utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xc0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xe0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char) (0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char) (0xf0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char) (0x80 | (cp & 0x3f));
	return 4;
}

/* Four hex digits at p->pos (after "\u"); -1 if they are not hex. */
static long
read_hex4(JsonParser *p)
{
	long		v = 0;

	if (p->len - p->pos < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		unsigned char c = p->text[p->pos + i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	p->pos += 4;
	return v;
}

/*
 * A \u escape (p->pos just after the 'u'): one code unit, or a high
 * surrogate followed by "\u" and a low one.  A lone surrogate has no UTF-8
 * encoding, so it is an error rather than silently replaced.
 */
static int
parse_unicode_escape(JsonParser *p, size_t esc_at, uint32_t *cp)
{
	long		hi = read_hex4(p),
				lo;

	if (hi < 0)
		return syntax_error(p, p->pos, "expected four hex digits after \\u");
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: \\u%04lx is a lone low surrogate", esc_at, hi);
	if (hi < 0xd800 || hi > 0xdbff)
	{
		*cp = (uint32_t) hi;
		return SAE_OK;
	}
	if (p->len - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: high surrogate \\u%04lx is not followed by a low surrogate",
						 esc_at, hi);
	p->pos += 2;
	lo = read_hex4(p);
	if (lo < 0)
		return syntax_error(p, p->pos, "expected four hex digits after \\u");
	if (lo < 0xdc00 || lo > 0xdfff)
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: high surrogate \\u%04lx is followed by \\u%04lx, not a low surrogate",
						 esc_at, hi, lo);
	*cp = 0x10000 + (((uint32_t) hi - 0xd800) << 10) + ((uint32_t) lo - 0xdc00);
	return SAE_OK;
}

/* One backslash escape (p->pos at the backslash), appended to out. */
static int
parse_escape(JsonParser *p, char *out, size_t *n)
{
	size_t		at = p->pos;
	unsigned char c;
	uint32_t	cp = 0;
	int			rc;

	if (p->len - p->pos < 2)
		return syntax_error(p, p->pos + 1, "expected an escape character after '\\'");
	c = p->text[p->pos + 1];
	p->pos += 2;
	switch (c)
	{
		case '"':
		case '\\':
		case '/':
			out[(*n)++] = (char) c;
			return SAE_OK;
		case 'b':
			out[(*n)++] = '\b';
			return SAE_OK;
		case 'f':
			out[(*n)++] = '\f';
			return SAE_OK;
		case 'n':
			out[(*n)++] = '\n';
			return SAE_OK;
		case 'r':
			out[(*n)++] = '\r';
			return SAE_OK;
		case 't':
			out[(*n)++] = '\t';
			return SAE_OK;
		case 'u':
			rc = parse_unicode_escape(p, at, &cp);
			if (rc != SAE_OK)
				return rc;
			*n += utf8_encode(cp, out + *n);
			return SAE_OK;
		default:
			return syntax_error(p, at + 1, "expected one of \"\\/bfnrtu after '\\'");
	}
}

/*
 * A string (p->pos at the opening quote) into a fresh NUL-terminated buffer.
 * Decoded text is never longer than its source (an escape of k bytes yields
 * at most k bytes of UTF-8), so one allocation of the source span suffices;
 * the first pass finds the closing quote.
 */
static int
parse_string(JsonParser *p, char **str, size_t *length)
{
	size_t		end = p->pos + 1;
	char	   *out;
	size_t		n = 0;

	while (end < p->len && p->text[end] != '"')
		end += (p->text[end] == '\\') ? 2 : 1;
	if (end >= p->len)
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: unterminated string", p->pos);
	out = malloc(end - p->pos);
	if (out == NULL)
		return oom_error(p);
	p->pos++;
	while (p->pos < end)
	{
		unsigned char c = p->text[p->pos];
		size_t		k;

		if (c == '\\')
		{
			int			rc = parse_escape(p, out, &n);

			if (rc != SAE_OK)
			{
				free(out);
				return rc;
			}
			continue;
		}
		if (c < 0x20)
		{
			free(out);
			return sae_error(p->err, SAE_ERR_INVALID_DATA,
							 "invalid JSON at byte %zu: control character 0x%02x in a string must be escaped",
							 p->pos, c);
		}
		k = utf8_sequence_length(p->text + p->pos, end - p->pos);
		if (k == 0)
		{
			free(out);
			return sae_error(p->err, SAE_ERR_INVALID_DATA,
							 "invalid JSON at byte %zu: invalid UTF-8 in a string", p->pos);
		}
		memcpy(out + n, p->text + p->pos, k);
		n += k;
		p->pos += k;
	}
	p->pos = end + 1;
	out[n] = '\0';
	*str = out;
	*length = n;
	return SAE_OK;
}

/* Advance over one or more digits; false if there is none. */
static bool
skip_digits(JsonParser *p)
{
	size_t		start = p->pos;

	while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9')
		p->pos++;
	return p->pos > start;
}

/*
 * strtod on a validated span.  strtod follows LC_NUMERIC, so a locale with
 * a decimal comma would stop at our '.': swap in the locale's point first.
 */
static double
span_to_double(const char *span, size_t n)
{
	char		buf[JSON_MAX_NUMBER_LEN + 8];
	const char *point = localeconv()->decimal_point;
	size_t		plen = strlen(point);
	size_t		o = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (span[i] == '.' && plen > 0 && plen <= 4)
		{
			memcpy(buf + o, point, plen);
			o += plen;
		}
		else
			buf[o++] = span[i];
	}
	buf[o] = '\0';
	return strtod(buf, NULL);
}

/*
 * A number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * Values beyond the double range are errors (JSON has no infinity).
 */
static int
parse_number(JsonParser *p, SaeJson *out)
{
	size_t		start = p->pos;
	const char *span = (const char *) p->text + start;
	bool		integral = true;
	size_t		n;

	if (p->text[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->text[p->pos] == '0')
		p->pos++;
	else if (!skip_digits(p))
		return syntax_error(p, p->pos, "expected a digit");
	if (p->pos < p->len && p->text[p->pos] == '.')
	{
		integral = false;
		p->pos++;
		if (!skip_digits(p))
			return syntax_error(p, p->pos, "expected a digit after the decimal point");
	}
	if (p->pos < p->len && (p->text[p->pos] == 'e' || p->text[p->pos] == 'E'))
	{
		integral = false;
		p->pos++;
		if (p->pos < p->len && (p->text[p->pos] == '+' || p->text[p->pos] == '-'))
			p->pos++;
		if (!skip_digits(p))
			return syntax_error(p, p->pos, "expected a digit in the exponent");
	}
	n = p->pos - start;
	if (n > JSON_MAX_NUMBER_LEN)
		return sae_error(p->err, SAE_ERR_LIMIT,
						 "invalid JSON at byte %zu: number is %zu characters long (at most %d allowed)",
						 start, n, JSON_MAX_NUMBER_LEN);
	out->type = SAE_JSON_NUMBER;
	out->number = span_to_double(span, n);
	if (!isfinite(out->number))
		return sae_error(p->err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte %zu: number %.*s is out of range",
						 start, (int) (n > 40 ? 40 : n), span);
	out->is_integer = integral;
	if (integral)
	{
		char		buf[JSON_MAX_NUMBER_LEN + 1];
		long long	v;

		memcpy(buf, span, n);
		buf[n] = '\0';
		errno = 0;
		v = strtoll(buf, NULL, 10);
		out->integer = (errno == ERANGE) ? 0 : v;
		if (errno == ERANGE)
			out->is_integer = false;
	}
	return SAE_OK;
}

/* Count a new value against JSON_MAX_VALUES. */
static int
count_value(JsonParser *p)
{
	if (++p->n_values > JSON_MAX_VALUES)
		return sae_error(p->err, SAE_ERR_LIMIT,
						 "JSON at byte %zu: more than %zu values", p->pos, JSON_MAX_VALUES);
	return SAE_OK;
}

/* Make room for one more item (and key, for objects); doubles capacity. */
static int
grow_container(JsonParser *p, SaeJson *c, size_t *cap, bool object)
{
	size_t		ncap;
	SaeJson    *items;

	if (c->count < *cap)
		return SAE_OK;
	ncap = *cap ? 2 * *cap : 4;
	items = realloc(c->items, ncap * sizeof(SaeJson));
	if (items == NULL)
		return oom_error(p);
	c->items = items;
	if (object)
	{
		char	  **keys = realloc(c->keys, ncap * sizeof(char *));
		size_t	   *lens;

		if (keys == NULL)
			return oom_error(p);
		c->keys = keys;
		lens = realloc(c->key_lengths, ncap * sizeof(size_t));
		if (lens == NULL)
			return oom_error(p);
		c->key_lengths = lens;
	}
	*cap = ncap;
	return SAE_OK;
}

/*
 * After an item: ',' continues the container, `close` ends it.  Sets *done
 * when the container ended.
 */
static int
after_item(JsonParser *p, char close, bool *done, const char *what)
{
	skip_space(p);
	if (p->pos < p->len && p->text[p->pos] == ',')
	{
		p->pos++;
		*done = false;
		return SAE_OK;
	}
	if (p->pos < p->len && p->text[p->pos] == (unsigned char) close)
	{
		p->pos++;
		*done = true;
		return SAE_OK;
	}
	return syntax_error(p, p->pos, what);
}

/* An array (p->pos at '['). */
static int
parse_array(JsonParser *p, SaeJson *out)
{
	size_t		cap = 0;
	bool		done = false;
	int			rc;

	out->type = SAE_JSON_ARRAY;
	p->pos++;
	skip_space(p);
	if (p->pos < p->len && p->text[p->pos] == ']')
	{
		p->pos++;
		return SAE_OK;
	}
	while (!done)
	{
		if ((rc = grow_container(p, out, &cap, false)) != SAE_OK)
			return rc;
		memset(&out->items[out->count], 0, sizeof(SaeJson));
		out->count++;
		if ((rc = parse_value(p, &out->items[out->count - 1])) != SAE_OK)
			return rc;
		if ((rc = after_item(p, ']', &done, "expected ',' or ']' after an array item")) != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* One "key": value member of an object (p->pos at the key's quote). */
static int
parse_member(JsonParser *p, SaeJson *obj, size_t *cap)
{
	size_t		i;
	int			rc;

	if (p->pos >= p->len || p->text[p->pos] != '"')
		return syntax_error(p, p->pos, "expected a string key");
	if ((rc = grow_container(p, obj, cap, true)) != SAE_OK)
		return rc;
	i = obj->count;
	memset(&obj->items[i], 0, sizeof(SaeJson));
	obj->keys[i] = NULL;
	obj->key_lengths[i] = 0;
	obj->count++;
	if ((rc = parse_string(p, &obj->keys[i], &obj->key_lengths[i])) != SAE_OK)
		return rc;
	skip_space(p);
	if (p->pos >= p->len || p->text[p->pos] != ':')
		return syntax_error(p, p->pos, "expected ':' after an object key");
	p->pos++;
	return parse_value(p, &obj->items[i]);
}

/* An object (p->pos at '{'); repeated keys are all kept, in order. */
static int
parse_object(JsonParser *p, SaeJson *out)
{
	size_t		cap = 0;
	bool		done = false;
	int			rc;

	out->type = SAE_JSON_OBJECT;
	p->pos++;
	skip_space(p);
	if (p->pos < p->len && p->text[p->pos] == '}')
	{
		p->pos++;
		return SAE_OK;
	}
	while (!done)
	{
		skip_space(p);
		if ((rc = parse_member(p, out, &cap)) != SAE_OK)
			return rc;
		if ((rc = after_item(p, '}', &done, "expected ',' or '}' after an object member")) != SAE_OK)
			return rc;
	}
	return SAE_OK;
}

/* A container, one level deeper than its parent. */
static int
parse_container(JsonParser *p, SaeJson *out)
{
	int			rc;

	if (p->depth >= SAE_JSON_MAX_DEPTH)
		return sae_error(p->err, SAE_ERR_LIMIT,
						 "invalid JSON at byte %zu: nesting deeper than %d levels",
						 p->pos, SAE_JSON_MAX_DEPTH);
	p->depth++;
	rc = (p->text[p->pos] == '[') ? parse_array(p, out) : parse_object(p, out);
	p->depth--;
	return rc;
}

/* Any value, after optional whitespace; out is zeroed. */
static int
parse_value(JsonParser *p, SaeJson *out)
{
	unsigned char c;
	int			rc;

	skip_space(p);
	if (p->pos >= p->len)
		return syntax_error(p, p->pos, "expected a value");
	if ((rc = count_value(p)) != SAE_OK)
		return rc;
	c = p->text[p->pos];
	if (c == '{' || c == '[')
		return parse_container(p, out);
	if (c == '"')
	{
		out->type = SAE_JSON_STRING;
		return parse_string(p, &out->string, &out->length);
	}
	if (c == '-' || (c >= '0' && c <= '9'))
		return parse_number(p, out);
	if (match_word(p, "true") || match_word(p, "false"))
	{
		out->type = SAE_JSON_BOOL;
		out->boolean = (c == 't');
		return SAE_OK;
	}
	if (match_word(p, "null"))
	{
		out->type = SAE_JSON_NULL;
		return SAE_OK;
	}
	return syntax_error(p, p->pos, "expected a value");
}

/* Free what a node owns (not the node itself: it lives in its parent's items). */
static void
free_contents(SaeJson *j)
{
	for (size_t i = 0; i < j->count; i++)
	{
		free_contents(&j->items[i]);
		if (j->keys != NULL)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->key_lengths);
	free(j->string);
}

int
sae_json_parse(const char *text, size_t len, SaeJson **out, SaeError *err)
{
	JsonParser	p;
	SaeJson    *root;
	int			rc;

	*out = NULL;
	if (len > JSON_MAX_BYTES)
		return sae_error(err, SAE_ERR_LIMIT, "JSON text of %zu bytes is larger than the %zu bytes allowed",
						 len, JSON_MAX_BYTES);
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		return sae_error(err, SAE_ERR_INVALID_DATA,
						 "invalid JSON at byte 0: the text starts with a UTF-8 byte order mark");
	memset(&p, 0, sizeof(p));
	p.text = (const unsigned char *) text;
	p.len = len;
	p.err = err;
	root = calloc(1, sizeof(SaeJson));
	if (root == NULL)
		return oom_error(&p);
	rc = parse_value(&p, root);
	if (rc == SAE_OK)
	{
		skip_space(&p);
		if (p.pos < p.len)
			rc = syntax_error(&p, p.pos, "expected the end of the text after the value");
	}
	if (rc != SAE_OK)
	{
		sae_json_free(root);
		return rc;
	}
	*out = root;
	return SAE_OK;
}

void
sae_json_free(SaeJson *json)
{
	if (json == NULL)
		return;
	free_contents(json);
	free(json);
}

const SaeJson *
sae_json_get(const SaeJson *object, const char *key)
{
	size_t		n;

	if (object == NULL || object->type != SAE_JSON_OBJECT)
		return NULL;
	n = strlen(key);
	for (size_t i = object->count; i-- > 0;)
		if (object->key_lengths[i] == n && memcmp(object->keys[i], key, n) == 0)
			return &object->items[i];
	return NULL;
}
