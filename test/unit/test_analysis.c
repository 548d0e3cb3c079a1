/*
 * test_analysis.c — top logits against PyTorch, the top/bottom-k selection
 * and the feature statistics against brute force.
 */
#include "unit.h"
#include "helpers.h"

#include "analysis.h"
#include "lm.h"

#include <stdio.h>
#include <stdlib.h>

/* A small deterministic generator for the brute-force cases. */
static uint64_t
next_u64(uint64_t *s)
{
	uint64_t	z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Whether (va, a) comes before (vb, b) in a ranking by sign * value, lower id first on ties. */
static bool
before_in_ranking(float va, int a, float vb, int b, float sign)
{
	return sign * va > sign * vb || (va == vb && a < b);
}

/* The selection is exactly brute force's ranking, with many ties (values on a coarse grid). */
UNIT_TEST(top_bottom_k_matches_brute_force_with_ties)
{
	enum
	{
		ROWS = 5, N = 300
	};
	static float x[ROWS * N];
	static int32_t ids[2][ROWS * N];
	static float vals[2][ROWS * N];
	int			ks[] = {1, 7, 64, N};
	uint64_t	seed = 42;

	for (int i = 0; i < ROWS * N; i++)
		x[i] = (float) (int) (next_u64(&seed) % 21) - 10.0f;
	for (int t = 0; t < 4; t++)
	{
		int			k = ks[t];

		REQUIRE(sae_rows_top_bottom_k(x, ROWS, N, k, ids[0], vals[0], ids[1], vals[1]));
		for (int side = 0; side < 2; side++)
		{
			float		sign = side == 0 ? 1.0f : -1.0f;

			for (int r = 0; r < ROWS; r++)
			{
				const float *row = x + r * N;
				const int32_t *got = ids[side] + r * k;

				for (int i = 0; i < k; i++)
				{
					/* got[i]'s rank in brute force: how many columns come before it */
					int			rank = 0;

					for (int j = 0; j < N; j++)
						rank += before_in_ranking(row[j], j, row[got[i]], got[i], sign);
					CHECK_MSG(rank == i && vals[side][r * k + i] == row[got[i]],
							  "k %d side %d row %d: entry %d is column %d (%g), which ranks %d",
							  k, side, r, i, got[i], row[got[i]], rank);
				}
			}
		}
	}
}

/* A raw little-endian int32 file of n values (malloc'd), or NULL. */
static int32_t *
read_i32(const char *path, size_t n)
{
	return (int32_t *) read_f32(path, n);	/* the same bytes, read as they are */
}

/* sae_top_logits on the tiny GPT-2 gives torch.topk of W_dec @ W_U (make_analysis_fixtures.py). */
UNIT_TEST(top_logits_match_pytorch)
{
	enum
	{
		M = 48, K = 7
	};
	char		path[512],
				mpath[512];
	SaeError	err = {0};
	SaeLm	   *lm = NULL;
	float	   *w_dec,
			   *want_top_v,
			   *want_bot_v;
	int32_t    *want_top,
			   *want_bot;
	int32_t		top[M * K],
				bot[M * K];
	float		top_v[M * K],
				bot_v[M * K];

	REQUIRE(sae_lm_load(lm_path("gpt2", mpath, sizeof(mpath)), NULL, test_backend(), &lm, &err) == SAE_OK);
	REQUIRE(sae_lm_config(lm)->d_model == 32);
	w_dec = read_f32(fixture_path("top_logits/w_dec.f32", path, sizeof(path)), M * 32);
	want_top = read_i32(fixture_path("top_logits/top_ids.i32", path, sizeof(path)), M * K);
	want_top_v = read_f32(fixture_path("top_logits/top_values.f32", path, sizeof(path)), M * K);
	want_bot = read_i32(fixture_path("top_logits/bottom_ids.i32", path, sizeof(path)), M * K);
	want_bot_v = read_f32(fixture_path("top_logits/bottom_values.f32", path, sizeof(path)), M * K);
	REQUIRE(w_dec && want_top && want_top_v && want_bot && want_bot_v);
	CHECK_MSG(sae_decoder_top_logits(lm, w_dec, M, K, top, top_v, bot, bot_v, NULL, NULL, &err) == SAE_OK,
			  "%s", err.message);
	for (int i = 0; i < M * K; i++)
	{
		CHECK_MSG(top[i] == want_top[i] && fabsf(top_v[i] - want_top_v[i]) <= 1e-5f * (1 + fabsf(want_top_v[i])),
				  "feature %d rank %d: top token %d (%g), torch %d (%g)", i / K, i % K + 1,
				  top[i], top_v[i], want_top[i], want_top_v[i]);
		CHECK_MSG(bot[i] == want_bot[i] && fabsf(bot_v[i] - want_bot_v[i]) <= 1e-5f * (1 + fabsf(want_bot_v[i])),
				  "feature %d rank %d: bottom token %d (%g), torch %d (%g)", i / K, i % K + 1,
				  bot[i], bot_v[i], want_bot[i], want_bot_v[i]);
	}
	/* k larger than the vocabulary is the caller's to clamp; the engine refuses it */
	CHECK(sae_decoder_top_logits(lm, w_dec, M, 1001, top, top_v, bot, bot_v, NULL, NULL, &err) == SAE_ERR_INTERNAL);
	free(w_dec);
	free(want_top);
	free(want_top_v);
	free(want_bot);
	free(want_bot_v);
	sae_lm_free(lm);
}

/* Brute-force statistics of one feature over all contexts. */
static void
check_feature(const SaeFeatureStats *s, int f, const float *acts, const int32_t *tokens,
			  int n_ctx, int T, int m, int k, int before, int after, int32_t skip)
{
	SaeFeatureSummary sum;
	SaeFeatureExample ex[16];
	int64_t		n = 0,
				hist[SAE_HIST_BINS] = {0};
	double		total = 0;
	float		max = 0;
	int			n_ex;

	sae_feature_stats_summary(s, f, &sum);
	for (int r = 0; r < n_ctx * T; r++)
	{
		float		a = acts[(size_t) r * m + f];

		if (tokens[r] == skip || !(a > 0))
			continue;
		n++;
		total += a;
		max = a > max ? a : max;
		if (sum.hist_top > 0)
		{
			int			b = (int) (a / sum.hist_top * SAE_HIST_BINS);

			hist[b < SAE_HIST_BINS ? b : SAE_HIST_BINS - 1]++;
		}
	}
	CHECK_MSG(sum.n_fired == n && fabs(sum.sum - total) <= 1e-9 * (1 + total) && sum.max == max,
			  "feature %d: fired %lld sum %g max %g, brute force %lld %g %g", f,
			  (long long) sum.n_fired, sum.sum, sum.max, (long long) n, total, max);
	CHECK_MSG(n == 0 ? sum.hist_top == 0 : (sum.hist_top > max && sum.hist_top <= 2 * max * 2),
			  "feature %d: histogram top %g for max %g", f, sum.hist_top, max);
	for (int b = 0; b < SAE_HIST_BINS; b++)
		CHECK_MSG(sum.hist[b] == hist[b], "feature %d bin %d: %lld, brute force %lld", f, b,
				  (long long) sum.hist[b], (long long) hist[b]);

	/* the examples: the k best (activation desc, then earlier token), with their windows */
	n_ex = sae_feature_stats_examples(s, f, ex);
	CHECK_MSG(n_ex == (n < k ? n : k), "feature %d: %d examples of %lld firings", f, n_ex, (long long) n);
	for (int i = 0; i < n_ex; i++)
	{
		int64_t		r = ex[i].context * T + ex[i].position;
		float		a = acts[(size_t) r * m + f];
		int			rank = 0;

		for (int q = 0; q < n_ctx * T; q++)
		{
			float		b = acts[(size_t) q * m + f];

			if (tokens[q] != skip && b > 0 && (b > a || (b == a && q < r)))
				rank++;
		}
		CHECK_MSG(rank == i && ex[i].activation == a,
				  "feature %d example %d: token %lld (%g) ranks %d", f, i, (long long) r, a, rank);
		CHECK(ex[i].window_start == (ex[i].position - before > 0 ? ex[i].position - before : 0));
		CHECK(ex[i].window_start + ex[i].window_len - 1 ==
			  (ex[i].position + after < T - 1 ? ex[i].position + after : T - 1));
		for (int j = 0; j < ex[i].window_len; j++)
		{
			int64_t		q = ex[i].context * T + ex[i].window_start + j;

			CHECK(ex[i].tokens[j] == tokens[q] && ex[i].acts[j] == acts[(size_t) q * m + f]);
		}
	}
}

/* Statistics fed in two batches equal brute force over all of them. */
UNIT_TEST(feature_stats_match_brute_force)
{
	enum
	{
		N_CTX = 6, T = 9, M = 300, K = 4, BEFORE = 3, AFTER = 2
	};
	static float acts[N_CTX * T * M];
	static int32_t tokens[N_CTX * T];
	SaeFeatureStats *s = NULL;
	SaeError	err = {0};
	uint64_t	seed = 7;
	const int32_t skip = 99;

	for (int r = 0; r < N_CTX * T; r++)
		tokens[r] = r % T == 0 ? skip : (int32_t) (next_u64(&seed) % 50);
	for (size_t i = 0; i < (size_t) N_CTX * T * M; i++)
	{
		uint64_t	u = next_u64(&seed);

		/* about one in four fires; a coarse grid makes ties; a few large values move the histogram */
		acts[i] = u % 4 ? -(float) (u % 7) : (float) ((u >> 8) % 9) * (u % 97 == 0 ? 40.0f : 0.25f);
	}
	REQUIRE(sae_feature_stats_create(M, K, BEFORE, AFTER, &s, &err) == SAE_OK);
	sae_feature_stats_add(s, acts, tokens, 2, T, 0, skip);
	sae_feature_stats_add(s, acts + (size_t) 2 * T * M, tokens + 2 * T, N_CTX - 2, T, 2, skip);
	CHECK(sae_feature_stats_tokens(s) == N_CTX * (T - 1));
	for (int f = 0; f < M; f++)
		check_feature(s, f, acts, tokens, N_CTX, T, M, K, BEFORE, AFTER, skip);
	sae_feature_stats_free(s);
}
