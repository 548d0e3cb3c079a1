/*
 * fuzz_torch.c — libFuzzer target for the pytorch_model.bin reader
 * (src/core/torch_pickle.c) on whole files, from memory: the ZIP
 * container, then the pickle and the tensor views.
 *
 * Mutations of data.pkl inside a file mostly fail its CRC; fuzz_pickle.c
 * covers the pickle VM behind a valid archive.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch_pickle.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SaeTorchFile *tf = NULL;
	SaeError	err;

	memset(&err, 0, sizeof(err));
	if (sae_torch_from_memory(data, size, "fuzz", &tf, &err) != SAE_OK)
	{
		if (err.message[0] == '\0' || tf != NULL)
			abort();
		return 0;
	}
	for (size_t i = 0; i < sae_torch_count(tf); i++)
	{
		const SaeTorchTensor *t = sae_torch_tensor(tf, i);
		float	   *out = malloc(sizeof(float) * ((size_t) t->numel + 1));

		if (out != NULL)
			sae_torch_read_f32(tf, t, out, (size_t) t->numel, &err);
		free(out);
	}
	sae_torch_close(tf);
	return 0;
}
