/*
 * dataset_file.c — token dataset files (see dataset_file.h).
 */
#include "dataset_file.h"
#include "json.h"
#include "mapfile.h"

#include <stdlib.h>
#include <string.h>

int
sae_dataset_format_check(const char *format, SaeError *err)
{
	if (strcmp(format, "jsonl") == 0 || strcmp(format, "text") == 0 || strcmp(format, "uint16") == 0)
		return SAE_OK;
	sae_error(err, SAE_ERR_INVALID_PARAMETER, "unknown dataset file format \"%.64s\"", format);
	return sae_error_hint(err, "Formats: jsonl (\"text\" or \"input_ids\"/\"tokens\" per line), text (one document per line), uint16 (token ids).");
}

/* An int array of JSON numbers as token ids. */
static int
json_ids(const SaeJson *arr, const char *name, int64_t line, int32_t **ids, SaeError *err)
{
	*ids = malloc(sizeof(int32_t) * (arr->count + 1));
	if (*ids == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory reading \"%s\"", name);
	for (size_t i = 0; i < arr->count; i++)
	{
		const SaeJson *v = &arr->items[i];

		if (v->type != SAE_JSON_NUMBER || !v->is_integer || v->integer < 0 || v->integer > INT32_MAX)
		{
			free(*ids);
			*ids = NULL;
			sae_error(err, SAE_ERR_INVALID_DATA, "\"%s\" line %lld: token %zu is not a token id",
					  name, (long long) line, i);
			return sae_error_hint(err, "Token ids are non-negative integers.");
		}
		(*ids)[i] = (int32_t) v->integer;
	}
	return SAE_OK;
}

/* One JSON line: a text or a token row. */
static int
jsonl_line(const char *s, size_t len, const char *name, int64_t line,
		   const SaeDatasetCallbacks *cb, SaeError *err)
{
	SaeJson    *json;
	const SaeJson *text,
			   *ids;
	int			rc;

	if ((rc = sae_json_parse(s, len, &json, err)) != SAE_OK)
		return sae_error_detail(err, "In \"%s\" line %lld.", name, (long long) line);
	text = json->type == SAE_JSON_OBJECT ? sae_json_get(json, "text") : NULL;
	ids = json->type == SAE_JSON_OBJECT ? sae_json_get(json, "input_ids") : NULL;
	if (ids == NULL && json->type == SAE_JSON_OBJECT)
		ids = sae_json_get(json, "tokens");
	if (text && text->type == SAE_JSON_STRING)
		rc = cb->text(cb->arg, text->string, text->length, line, err);
	else if (ids && ids->type == SAE_JSON_ARRAY)
	{
		int32_t    *tok;

		if ((rc = json_ids(ids, name, line, &tok, err)) == SAE_OK)
			rc = cb->tokens(cb->arg, tok, ids->count, line, err);
		free(tok);
	}
	else
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "\"%s\" line %lld has no \"text\" string and no \"input_ids\" or \"tokens\" list",
				  name, (long long) line);
		rc = sae_error_hint(err, "Each line must be a JSON object such as {\"text\": \"...\"}.");
	}
	sae_json_free(json);
	return rc;
}

/* Lines of a jsonl or text file, without their line ends (\n or \r\n). */
static int
read_lines(const char *data, size_t len, const char *name, bool jsonl,
		   const SaeDatasetCallbacks *cb, SaeError *err)
{
	int64_t		line = 0;
	size_t		pos = 0;

	while (pos < len)
	{
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t		end = nl ? (size_t) (nl - data) : len;
		size_t		n = end - pos;
		int			rc = SAE_OK;

		line++;
		if (n > 0 && data[pos + n - 1] == '\r')
			n--;
		if (n > 0)
			rc = jsonl ? jsonl_line(data + pos, n, name, line, cb, err)
				: cb->text(cb->arg, data + pos, n, line, err);
		if (rc != SAE_OK)
			return rc;
		pos = end + 1;
	}
	return SAE_OK;
}

/* The uint16 stream, widened to int32 in one array. */
static int
read_uint16(const unsigned char *data, size_t len, const char *name,
			const SaeDatasetCallbacks *cb, SaeError *err)
{
	size_t		n = len / 2;
	int32_t    *ids;
	int			rc;

	if (len % 2 != 0)
	{
		sae_error(err, SAE_ERR_INVALID_DATA, "\"%s\" has %zu bytes, not a whole number of uint16 tokens", name, len);
		return sae_error_hint(err, "A uint16 token file holds 2 bytes per token, little-endian.");
	}
	ids = malloc(sizeof(int32_t) * (n + 1));
	if (ids == NULL)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory reading \"%s\"", name);
	for (size_t i = 0; i < n; i++)
		ids[i] = data[2 * i] | (data[2 * i + 1] << 8);
	rc = cb->tokens(cb->arg, ids, n, 0, err);
	free(ids);
	return rc;
}

int
sae_dataset_bytes_read(const char *data, size_t len, const char *name, const char *format,
					   const SaeDatasetCallbacks *cb, SaeError *err)
{
	int			rc = sae_dataset_format_check(format, err);

	if (rc != SAE_OK)
		return rc;
	if (strcmp(format, "uint16") == 0)
		return read_uint16((const unsigned char *) data, len, name, cb, err);
	return read_lines(data, len, name, strcmp(format, "jsonl") == 0, cb, err);
}

int
sae_dataset_file_read(const char *path, const char *format, const SaeDatasetCallbacks *cb,
					  SaeError *err)
{
	const void *base;
	size_t		size;
	int			rc;

	if ((rc = sae_dataset_format_check(format, err)) != SAE_OK ||
		(rc = sae_map_file(path, "dataset file", 1, &base, &size, err)) != SAE_OK)
		return rc;
	if (base == NULL)
		return sae_error(err, SAE_ERR_NO_DATA, "dataset file \"%s\" is empty", path);
	rc = sae_dataset_bytes_read(base, size, path, format, cb, err);
	sae_unmap_file(base, size);
	return rc;
}
