/*
 * fuzz_pickle.c — libFuzzer target for the pickle VM of
 * src/core/torch_pickle.c, from memory.
 *
 * The input is data.pkl: it is wrapped in a valid STORED zip (correct CRC)
 * together with storages "0" to "3" of 64 bytes each, so every mutation
 * reaches the VM and the view checks instead of failing the CRC.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch_pickle.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_STORAGES 4
#define STORAGE_BYTES 64

/* ZIP's CRC-32, bit by bit. */
static uint32_t
crc32_of(const uint8_t *s, size_t n)
{
	uint32_t	crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++)
	{
		crc ^= s[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* v as `bytes` little-endian bytes (zeros past the eighth); returns the end. */
static uint8_t *
put(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*p++ = (i < 8) ? (uint8_t) (v >> (8 * i)) : 0;
	return p;
}

/* One local header + data at p; returns the end. */
static uint8_t *
local_entry(uint8_t *p, const char *name, const uint8_t *data, size_t len)
{
	p = put(p, 0x04034b50, 4);
	p = put(p, 20, 2);
	p = put(p, 0, 8);
	p = put(p, crc32_of(data, len), 4);
	p = put(p, len, 4);
	p = put(p, len, 4);
	p = put(p, strlen(name), 2);
	p = put(p, 0, 2);
	memcpy(p, name, strlen(name));
	p += strlen(name);
	memcpy(p, data, len);
	return p + len;
}

/* Its central-directory entry. */
static uint8_t *
central_entry(uint8_t *p, const char *name, const uint8_t *data, size_t len, size_t offset)
{
	p = put(p, 0x02014b50, 4);
	p = put(p, 20, 2);
	p = put(p, 20, 2);
	p = put(p, 0, 8);
	p = put(p, crc32_of(data, len), 4);
	p = put(p, len, 4);
	p = put(p, len, 4);
	p = put(p, strlen(name), 2);
	p = put(p, 0, 12);
	p = put(p, offset, 4);
	memcpy(p, name, strlen(name));
	return p + strlen(name);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[N_STORAGES + 1] = {
		"archive/data.pkl", "archive/data/0", "archive/data/1", "archive/data/2", "archive/data/3"
	};
	uint8_t		storage[STORAGE_BYTES];
	const uint8_t *datas[N_STORAGES + 1];
	size_t		lens[N_STORAGES + 1],
				offs[N_STORAGES + 1],
				cd_size;
	uint8_t    *zip,
			   *p,
			   *cd;
	SaeTorchFile *tf = NULL;
	SaeError	err;

	if (size > 1 << 20)
		return 0;
	for (int i = 0; i < STORAGE_BYTES; i++)
		storage[i] = (uint8_t) (i * 37);
	zip = malloc(size + 2048);
	if (zip == NULL)
		return 0;
	for (int i = 0; i <= N_STORAGES; i++)
	{
		datas[i] = i == 0 ? data : storage;
		lens[i] = i == 0 ? size : STORAGE_BYTES;
	}
	p = zip;
	for (int i = 0; i <= N_STORAGES; i++)
	{
		offs[i] = (size_t) (p - zip);
		p = local_entry(p, names[i], datas[i], lens[i]);
	}
	cd = p;
	for (int i = 0; i <= N_STORAGES; i++)
		p = central_entry(p, names[i], datas[i], lens[i], offs[i]);
	cd_size = (size_t) (p - cd);
	p = put(p, 0x06054b50, 4);
	p = put(p, 0, 4);
	p = put(p, N_STORAGES + 1, 2);
	p = put(p, N_STORAGES + 1, 2);
	p = put(p, cd_size, 4);
	p = put(p, (uint64_t) (cd - zip), 4);
	p = put(p, 0, 2);

	memset(&err, 0, sizeof(err));
	if (sae_torch_from_memory(zip, (size_t) (p - zip), "fuzz", &tf, &err) == SAE_OK)
	{
		for (size_t i = 0; i < sae_torch_count(tf); i++)
		{
			const SaeTorchTensor *t = sae_torch_tensor(tf, i);
			float	   *out = malloc(sizeof(float) * ((size_t) t->numel + 1));

			if (out != NULL)
				sae_torch_read_f32(tf, t, out, (size_t) t->numel, &err);
			free(out);
		}
		sae_torch_close(tf);
	}
	else if (err.message[0] == '\0' || tf != NULL)
		abort();
	free(zip);
	return 0;
}
