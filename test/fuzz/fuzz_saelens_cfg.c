/*
 * fuzz_saelens_cfg.c — libFuzzer target for reading a SAELens cfg.json
 * (src/core/saelens.c) on top of the JSON parser.
 *
 * Any input must either give sizes sae_import can allocate from and
 * NUL-terminated names, or fail with an error whose message is set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "saelens.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SaeSaelensSae s;
	SaeError	err = {0};

	if (sae_saelens_parse_cfg((const char *) data, size, &s, &err) != SAE_OK)
	{
		if (err.message[0] == '\0')
			abort();
		return 0;
	}
	if (s.d_in < 1 || s.d_sae < 1 || (int64_t) s.d_in * s.d_sae > ((int64_t) 1 << 32) ||
		s.hook_name[0] == '\0' || s.hook_layer < 0 || s.head_index < -1 ||
		(s.format != 1 && s.format != 6) || s.w_enc != NULL ||
		memchr(s.model_name, 0, sizeof(s.model_name)) == NULL ||
		memchr(s.dataset_path, 0, sizeof(s.dataset_path)) == NULL)
		abort();
	return 0;
}
