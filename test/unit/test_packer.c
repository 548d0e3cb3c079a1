/*
 * test_packer.c — packing documents into contexts against SAELens's
 * concat_and_batch_sequences (test/fixtures/packer/cases.txt, made by
 * test/golden/make_packer_fixtures.py): begin and separator tokens on and
 * off, documents that start with them, empty ones, ones longer than a
 * context, and contexts as short as 2.
 */
#include "unit.h"
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packer.h"

#define MAX_TOKENS 64

typedef struct Collected
{
	int32_t		ctx[512][MAX_TOKENS];
	int			n;
	int			size;
} Collected;

static int
collect(void *arg, const int32_t *context, SaeError *err)
{
	Collected  *c = arg;

	if (c->n >= 512)
		return sae_error(err, SAE_ERR_LIMIT, "too many contexts");
	memcpy(c->ctx[c->n++], context, sizeof(int32_t) * c->size);
	return SAE_OK;
}

/* The ints of one line (at most max). */
static int
parse_ints(const char *line, int32_t *out, int max)
{
	int			n = 0,
				off;
	long		v;

	while (n < max && sscanf(line, "%ld%n", &v, &off) == 1)
	{
		out[n++] = (int32_t) v;
		line += off;
	}
	return n;
}

UNIT_TEST(packing_matches_saelens)
{
	char		path[512],
				line[4096];
	FILE	   *fp = fopen(fixture_path("../packer/cases.txt", path, sizeof(path)), "r");
	static Collected got;
	int			cases = 0;

	REQUIRE(fp != NULL);
	while (fgets(line, sizeof(line), fp))
	{
		int			ctx,
					begin,
					sep,
					n_docs,
					n_want;
		SaePacker	p;
		SaeError	err;

		if (sscanf(line, "case %d %d %d %d", &ctx, &begin, &sep, &n_docs) != 4)
			continue;
		memset(&got, 0, sizeof(got));
		got.size = ctx;
		REQUIRE(sae_packer_init(&p, ctx, begin, sep, collect, &got, &err) == SAE_OK);
		for (int i = 0; i < n_docs && fgets(line, sizeof(line), fp); i++)
		{
			int32_t		doc[MAX_TOKENS];
			int			n = parse_ints(line, doc, MAX_TOKENS);

			CHECK(sae_packer_add(&p, doc, n, &err) == SAE_OK);
		}
		REQUIRE(fgets(line, sizeof(line), fp) && sscanf(line, "contexts %d", &n_want) == 1);
		CHECK_MSG(got.n == n_want, "case %d (ctx %d, begin %d, sep %d): %d contexts, SAELens %d",
				  cases, ctx, begin, sep, got.n, n_want);
		for (int i = 0; i < n_want && fgets(line, sizeof(line), fp); i++)
		{
			int32_t		want[MAX_TOKENS];

			CHECK(parse_ints(line, want, MAX_TOKENS) == ctx);
			CHECK_MSG(i >= got.n || memcmp(want, got.ctx[i], sizeof(int32_t) * ctx) == 0,
					  "case %d context %d differs", cases, i);
		}
		CHECK(p.contexts == got.n);
		sae_packer_free(&p);
		cases++;
	}
	fclose(fp);
	CHECK(cases == 28);
}

UNIT_TEST(packer_refuses_tiny_contexts)
{
	SaePacker	p;
	SaeError	err;
	Collected  *c = calloc(1, sizeof(Collected));

	CHECK(sae_packer_init(&p, 1, 0, 0, collect, c, &err) == SAE_ERR_INVALID_PARAMETER);
	free(c);
}
