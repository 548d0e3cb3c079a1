/*
 * fuzz_lm_config.c — libFuzzer target for reading a model's config.json
 * (src/core/lm_config.c) on top of the JSON parser.
 *
 * Any input must either give a config whose sizes are consistent (the
 * forward pass allocates from them) or fail with an error whose message is
 * set; the per-layer attention list must hold exactly n_layers entries.
 */
#include <stdint.h>
#include <stdlib.h>

#include "lm.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SaeLmConfig cfg;
	SaeError	err = {0};

	if (sae_lm_parse_config((const char *) data, size, &cfg, &err) != SAE_OK)
	{
		if (err.message[0] == '\0')
			abort();
		return 0;
	}
	if (cfg.n_layers < 1 || cfg.d_model < 1 || cfg.n_heads < 1 ||
		cfg.d_head * cfg.n_heads != cfg.d_model || cfg.d_mlp < 1 || cfg.d_vocab < 1 ||
		cfg.n_ctx < 1 || cfg.n_ctx > cfg.n_positions || !(cfg.eps > 0))
		abort();
	if (cfg.local)
	{
		volatile bool any = false;

		for (int i = 0; i < cfg.n_layers; i++)	/* ASan: the list has n_layers entries */
			any |= cfg.local[i];
		(void) any;
	}
	free(cfg.local);
	return 0;
}
