/*
 * fuzz_json.c — libFuzzer target for the JSON parser (src/core/json.c).
 *
 * Any input must either parse into a tree that can be walked and freed, or
 * fail with an error whose code and message are set.  Walking the tree
 * touches every string's bytes, so a length that lies is caught by ASan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sum of every string byte and key lookups at every object: reads all memory. */
static size_t
walk(const SaeJson *j)
{
	size_t		sum = j->length;

	if (j->type == SAE_JSON_STRING)
		for (size_t i = 0; i < j->length; i++)
			sum += (unsigned char) j->string[i];
	for (size_t i = 0; i < j->count; i++)
	{
		sum += walk(&j->items[i]);
		if (j->type == SAE_JSON_OBJECT)
		{
			sum += j->key_lengths[i] + strlen(j->keys[i]);
			if (sae_json_get(j, j->keys[i]) == NULL && strlen(j->keys[i]) == j->key_lengths[i])
				abort();		/* a key we hold must be found */
		}
	}
	return sum;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SaeJson    *j = NULL;
	SaeError	err;

	memset(&err, 0, sizeof(err));
	if (sae_json_parse((const char *) data, size, &j, &err) == SAE_OK)
	{
		if (walk(j) == SIZE_MAX)
			abort();			/* never: keeps the walk from being optimised away */
		sae_json_free(j);
	}
	else if (err.code == SAE_OK || err.message[0] == '\0' || j != NULL)
		abort();				/* a failure must say why and leave nothing */
	return 0;
}
