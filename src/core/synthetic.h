/*
 * synthetic.h — activations with a known sparse dictionary.
 *
 * Toy data for checking that an SAE recovers the features that generated
 * it (and for the README's demo): n_features random unit directions in
 * R^d; each row is a sum of a few of them with random magnitudes.  Both are
 * pure functions of the seed, so SQL can regenerate any row.
 */
#ifndef SAE_SYNTHETIC_H
#define SAE_SYNTHETIC_H

#include <stdint.h>

/* n_features x d unit-norm directions. */
void		sae_synthetic_dictionary(int d, int n_features, int64_t seed, float *dict);

/*
 * Row `row`: each feature is active with probability active_per_row /
 * n_features, with magnitude uniform in [0.5, 1.5).
 */
void		sae_synthetic_row(const float *dict, int d, int n_features,
							  double active_per_row, int64_t seed, int64_t row,
							  float *out);

#endif
