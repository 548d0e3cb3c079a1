/*
 * synthetic.c — sparse combinations of a random dictionary (see synthetic.h).
 */
#include "synthetic.h"
#include "rng.h"

#include <math.h>
#include <string.h>

#define SAE_STREAM_SYNTH_DICT	10
#define SAE_STREAM_SYNTH_ROWS	11

void
sae_synthetic_dictionary(int d, int n_features, int64_t seed, float *dict)
{
	for (int i = 0; i < n_features; i++)
	{
		float	   *v = dict + (size_t) i * d;
		double		ss = 0;

		for (int j = 0; j < d; j++)
		{
			v[j] = sae_normal((uint64_t) seed, SAE_STREAM_SYNTH_DICT, (uint64_t) i * d + j);
			ss += (double) v[j] * v[j];
		}
		for (int j = 0; j < d; j++)
			v[j] = (float) (v[j] / sqrt(ss));
	}
}

void
sae_synthetic_row(const float *dict, int d, int n_features, double active_per_row,
				  int64_t seed, int64_t row, float *out)
{
	double		p = active_per_row / n_features;
	uint64_t	base = (uint64_t) row * 2 * (uint64_t) n_features;

	memset(out, 0, sizeof(float) * d);
	for (int i = 0; i < n_features; i++)
	{
		double		mag;

		if (sae_uniform((uint64_t) seed, SAE_STREAM_SYNTH_ROWS, base + 2 * i) >= p)
			continue;
		mag = 0.5 + sae_uniform((uint64_t) seed, SAE_STREAM_SYNTH_ROWS, base + 2 * i + 1);
		for (int j = 0; j < d; j++)
			out[j] += (float) (mag * dict[(size_t) i * d + j]);
	}
}
