/*
 * rng.h — the engine's random numbers.
 *
 * Every random number is a pure function of (seed, stream, index): a
 * splitmix64 hash, so the CPU and CUDA backends draw the same numbers in any
 * order and on any number of threads (normals up to the last bits of the
 * GPU's logf and cosf), and a run is repeatable from its seed.
 *
 *   h      = mix64(mix64(seed ^ mix64(stream)) + index)
 *   u1     = ((h >> 40) + 1) / 2^24          in (0, 1]
 *   u2     = (h & 0xFFFFFF) / 2^24           in [0, 1)
 *   normal = sqrtf(-2 logf(u1)) * cosf(2 pi u2)     (Box-Muller, float32)
 *   uniform= (h >> 11) / 2^53                in [0, 1)
 */
#ifndef SAE_RNG_H
#define SAE_RNG_H

#include <math.h>
#include <stdint.h>

#include "backend_math.h"		/* SAE_HD: the CUDA kernels draw the same numbers */

/* Streams used by the engine; the noise of step k uses stream SAE_STREAM_NOISE + k. */
#define SAE_STREAM_INIT_W_ENC	1
#define SAE_STREAM_INIT_W_DEC	2
#define SAE_STREAM_SHUFFLE		3
#define SAE_STREAM_GENERATE		4	/* sae_generate: token k of a generation draws index k */
#define SAE_STREAM_NOISE		(UINT64_C(1) << 32)

SAE_HD uint64_t
sae_mix64(uint64_t z)
{
	z += UINT64_C(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

SAE_HD uint64_t
sae_hash3(uint64_t seed, uint64_t stream, uint64_t index)
{
	return sae_mix64(sae_mix64(seed ^ sae_mix64(stream)) + index);
}

SAE_HD double
sae_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
	return (double) (sae_hash3(seed, stream, index) >> 11) * 0x1.0p-53;
}

SAE_HD float
sae_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
	uint64_t	h = sae_hash3(seed, stream, index);
	float		u1 = (float) ((h >> 40) + 1) * 0x1.0p-24f;
	float		u2 = (float) (h & 0xFFFFFF) * 0x1.0p-24f;

	return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

#endif
