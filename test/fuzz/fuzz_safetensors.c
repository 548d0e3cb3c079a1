/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader
 * (src/core/safetensors.c), from memory.
 *
 * An accepted file must have every tensor's bytes inside the buffer and
 * readable as float32 (or refused as not supported); a rejected one must
 * say why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SaeSafetensors *st = NULL;
	SaeError	err;

	memset(&err, 0, sizeof(err));
	if (sae_safetensors_from_memory(data, size, "fuzz", &st, &err) != SAE_OK)
	{
		if (err.message[0] == '\0' || st != NULL)
			abort();
		return 0;
	}
	for (size_t i = 0; i < sae_safetensors_count(st); i++)
	{
		const SaeTensorInfo *t = sae_safetensors_tensor(st, i);
		float	   *out;

		if (t->data < data || t->data + (t->end - t->begin) > data + size ||
			sae_safetensors_find(st, t->name) != t)
			abort();
		out = malloc(sizeof(float) * ((size_t) t->numel + 1));
		if (out == NULL)
			continue;
		if (sae_safetensors_read_f32(st, t, out, (size_t) t->numel, &err) != SAE_OK &&
			sae_dtype_is_convertible(t->dtype))
			abort();
		free(out);
	}
	sae_safetensors_metadata(st, "format");
	sae_safetensors_close(st);
	return 0;
}
