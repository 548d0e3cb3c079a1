/*
 * test_lm.c — the GPT-2 and GPT-Neo forward pass against HF transformers
 * and TransformerLens (test/fixtures/lm, made by
 * test/golden/make_lm_fixtures.py): every hook TransformerLens caches, for
 * the unprocessed model and with from_pretrained's weight processing, the
 * logits of both libraries, greedy generation through the key/value cache,
 * editing a hook, and the errors for bad models and bad requests.
 *
 * The fixture models are tiny (width 32, 4 heads, 2 blocks; GPT-Neo's
 * second block is local with a window of 8 < 20 tokens), saved as
 * safetensors, sharded safetensors and pytorch_model.bin.
 */
#define _XOPEN_SOURCE 700		/* realpath */

#include "unit.h"
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lm.h"

#define B_REF 2
#define T_REF 20
#define TOL 1e-4

/* The reference batch: ref/tokens.txt, two lines of T_REF ids. */
static bool
ref_tokens(int32_t *tokens)
{
	return lm_ref_tokens(tokens, B_REF * T_REF);
}

static SaeLm *
load(const char *folder, const SaeLmOptions *opt)
{
	char		path[512];
	SaeError	err = {0};
	SaeLm	   *lm = NULL;

	if (sae_lm_load(lm_path(folder, path, sizeof(path)), opt, test_backend(), &lm, &err) != SAE_OK)
		unit_note("loading %s: %s (%s)", folder, err.message, err.hint);
	return lm;
}

/* One manifest line's tensor: name and its element count. */
typedef struct RefTensor
{
	char		name[128];
	int			ndim;
	int			dims[6];
	size_t		n;
} RefTensor;

/* TransformerLens's [B, H, Tq, Tk] as our rows [B*Tq][H][Tk]. */
static void
attn_to_rows(const float *ref, float *out, int H, int T)
{
	for (int b = 0; b < B_REF; b++)
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++)
				for (int j = 0; j < T; j++)
					out[(((size_t) b * T + i) * H + h) * T + j] = ref[(((size_t) b * H + h) * T + i) * T + j];
}

/* got vs want: -inf where want is -inf, and ||got - want|| / ||want|| <= TOL over the rest. */
static void
check_close(const char *what, const float *got, const float *want, size_t n)
{
	double		num = 0,
				den = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (isinf(want[i]))
		{
			CHECK_MSG(got[i] == want[i], "%s[%zu]: got %g, want %g", what, i, got[i], want[i]);
			continue;
		}
		num += ((double) got[i] - want[i]) * ((double) got[i] - want[i]);
		den += (double) want[i] * want[i];
	}
	CHECK_MSG(sqrt(num) <= TOL * sqrt(den) + 1e-12, "%s: relative error %.3g > %g", what,
			  sqrt(num) / (sqrt(den) + 1e-30), TOL);
}

/*
 * Run the reference batch once per hook in ref/<ref>/<kind>/manifest.txt
 * (and logits) and compare.  Returns how many tensors were compared.
 */
static int
check_against(SaeLm *lm, const char *ref, const char *kind)
{
	char		path[512],
				rel[256],
				line[512];
	int32_t		tokens[B_REF * T_REF];
	FILE	   *fp;
	int			compared = 0;
	const SaeLmConfig *cfg = sae_lm_config(lm);

	snprintf(rel, sizeof(rel), "ref/%s/%s/manifest.txt", ref, kind);
	fp = fopen(lm_path(rel, path, sizeof(path)), "r");
	if (fp == NULL || !ref_tokens(tokens))
	{
		CHECK_MSG(false, "missing fixture %s or ref/tokens.txt", rel);
		if (fp)
			fclose(fp);
		return 0;
	}
	while (fgets(line, sizeof(line), fp))
	{
		RefTensor	t = {0};
		int			off = 0;
		char	   *p = line;
		float	   *want,
				   *got;
		SaeError	err = {0};
		SaeLmRequest req = {.tokens = tokens, .B = B_REF, .T = T_REF};
		SaeLmCapture cap = {.dst = NULL};

		if (sscanf(p, "%127s %d%n", t.name, &t.ndim, &off) != 2)
			continue;
		p += off;
		t.n = 1;
		for (int d = 0; d < t.ndim && sscanf(p, "%d%n", &t.dims[d], &off) == 1; d++, p += off)
			t.n *= t.dims[d];
		snprintf(rel, sizeof(rel), "ref/%s/%s/%s.f32", ref, kind, t.name);
		want = read_f32(lm_path(rel, path, sizeof(path)), t.n);
		got = calloc(t.n, sizeof(float));
		if (want == NULL || got == NULL)
		{
			CHECK_MSG(false, "%s: no reference data", t.name);
			free(want);
			free(got);
			continue;
		}
		if (strcmp(t.name, "logits") == 0)
			req.logits = got;
		else
		{
			if (sae_hook_parse(lm, t.name, &cap.hook, &err) != SAE_OK)
			{
				CHECK_MSG(false, "%s: %s", t.name, err.message);
				free(want);
				free(got);
				continue;
			}
			cap.dst = got;
			req.captures = &cap;
			req.n_captures = 1;
			CHECK_MSG((size_t) B_REF * T_REF * sae_hook_width(lm, cap.hook, T_REF) == t.n,
					  "%s: width %d does not match the reference's %zu floats", t.name,
					  sae_hook_width(lm, cap.hook, T_REF), t.n);
		}
		if (sae_lm_forward(lm, &req, &err) != SAE_OK)
			CHECK_MSG(false, "%s: forward failed: %s", t.name, err.message);
		else
		{
			char		what[300];

			snprintf(what, sizeof(what), "%s %s %s", ref, kind, t.name);
			if (strstr(t.name, "attn_scores") || strstr(t.name, "pattern"))
			{
				float	   *rows = malloc(t.n * sizeof(float));

				attn_to_rows(want, rows, cfg->n_heads, T_REF);
				check_close(what, got, rows, t.n);
				free(rows);
			}
			else
				check_close(what, got, want, t.n);
			compared++;
		}
		free(want);
		free(got);
	}
	fclose(fp);
	return compared;
}

/* Every folder of a model gives TransformerLens's unprocessed hooks and logits. */
static void
check_folders(const char *const *folders, int n, const char *ref)
{
	for (int i = 0; i < n; i++)
	{
		SaeLm	   *lm = load(folders[i], NULL);
		int			compared;

		REQUIRE(lm != NULL);
		compared = check_against(lm, ref, "raw");
		CHECK_MSG(compared >= 20, "%s: only %d tensors compared", folders[i], compared);
		sae_lm_free(lm);
	}
}

UNIT_TEST(gpt2_hooks_match_transformer_lens)
{
	static const char *const folders[] = {"gpt2", "gpt2-bin", "gpt2-sharded"};

	check_folders(folders, 3, "gpt2");
}

UNIT_TEST(gpt_neo_hooks_match_transformer_lens)
{
	static const char *const folders[] = {"neo", "neo-bin"};

	check_folders(folders, 2, "neo");
}

/* from_pretrained's defaults: fold_ln, center_writing_weights, center_unembed, fold_value_biases. */
UNIT_TEST(processed_hooks_match_transformer_lens)
{
	SaeLmOptions opt = {true, true, true, true, 0};
	static const char *const models[] = {"gpt2", "neo"};

	for (int i = 0; i < 2; i++)
	{
		SaeLm	   *lm = load(models[i], &opt);

		REQUIRE(lm != NULL);
		CHECK(check_against(lm, models[i], "processed") >= 20);
		sae_lm_free(lm);
	}
}

/* Our logits against HF transformers' own (not only TransformerLens's). */
UNIT_TEST(logits_match_hf_transformers)
{
	static const char *const models[] = {"gpt2", "neo"};
	int32_t		tokens[B_REF * T_REF];

	REQUIRE(ref_tokens(tokens));
	for (int i = 0; i < 2; i++)
	{
		SaeLm	   *lm = load(models[i], NULL);
		char		rel[128],
					path[512];
		size_t		n;
		float	   *want,
				   *got;
		SaeError	err;
		SaeLmRequest req = {.tokens = tokens, .B = B_REF, .T = T_REF};

		REQUIRE(lm != NULL);
		n = (size_t) B_REF * T_REF * sae_lm_config(lm)->d_vocab;
		snprintf(rel, sizeof(rel), "ref/%s/hf_logits.f32", models[i]);
		want = read_f32(lm_path(rel, path, sizeof(path)), n);
		got = calloc(n, sizeof(float));
		REQUIRE(want && got);
		req.logits = got;
		CHECK(sae_lm_forward(lm, &req, &err) == SAE_OK);
		check_close(models[i], got, want, n);
		free(want);
		free(got);
		sae_lm_free(lm);
	}
}

/* The argmax of n logits (lowest id on ties, as torch.argmax). */
static int
argmax(const float *x, int n)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/*
 * Greedy decoding one token at a time through the key/value cache gives
 * HF's generate(do_sample=False), and the cached logits equal a full pass's.
 */
UNIT_TEST(greedy_generation_with_cache_matches_hf)
{
	static const char *const models[] = {"gpt2", "neo"};

	for (int m = 0; m < 2; m++)
	{
		SaeLm	   *lm = load(models[m], NULL);
		char		rel[128],
					path[512];
		FILE	   *fp;
		int32_t		want[64],
					seq[64];
		int			n_prompt = 0,
					n_want = 0,
					V;
		float	   *logits,
				   *full;
		SaeError	err;

		REQUIRE(lm != NULL);
		V = sae_lm_config(lm)->d_vocab;
		snprintf(rel, sizeof(rel), "ref/%s/greedy.txt", models[m]);
		fp = fopen(lm_path(rel, path, sizeof(path)), "r");
		REQUIRE(fp != NULL);
		{
			char		line[2048],
					   *p;
			int			off,
						id;

			if (fgets(line, sizeof(line), fp))
				for (p = line; sscanf(p, "%d%n", &id, &off) == 1 && n_prompt < 64; p += off)
					seq[n_prompt++] = id;
			if (fgets(line, sizeof(line), fp))
				for (p = line; sscanf(p, "%d%n", &id, &off) == 1 && n_want < 64; p += off)
					want[n_want++] = id;
		}
		fclose(fp);
		REQUIRE(n_prompt > 0 && n_want > n_prompt);
		logits = calloc(V, sizeof(float));
		full = calloc((size_t) 64 * V, sizeof(float));
		for (int len = n_prompt, pos0 = 0; len < n_want; len++)
		{
			SaeLmRequest req = {.tokens = seq + pos0, .B = 1, .T = len - pos0};
			SaeLmRequest whole = {.tokens = seq, .B = 1, .T = len};

			req.logits = logits;
			req.logits_last_only = true;
			req.use_cache = true;
			req.pos0 = pos0;
			REQUIRE(sae_lm_forward(lm, &req, &err) == SAE_OK);
			whole.logits = full;
			REQUIRE(sae_lm_forward(lm, &whole, &err) == SAE_OK);
			check_close("cached logits", logits, full + (size_t) (len - 1) * V, V);
			seq[len] = argmax(logits, V);
			CHECK_MSG(seq[len] == want[len], "%s: token %d is %d, HF says %d", models[m], len,
					  seq[len], want[len]);
			pos0 = len;
		}
		free(logits);
		free(full);
		sae_lm_free(lm);
	}
}

/* Replace hook_mlp_out by zeros: then hook_resid_post equals hook_resid_mid. */
static int
zero_edit(void *arg, float *act, int64_t row0, int rows, int width, SaeError *err)
{
	memset(act, 0, sizeof(float) * rows * width);
	(*(int *) arg)++;
	return SAE_OK;
}

UNIT_TEST(edit_replaces_the_activation)
{
	SaeLm	   *lm = load("gpt2", NULL);
	int32_t		tokens[B_REF * T_REF];
	int			C,
				calls = 0;
	float	   *mid,
			   *post;
	SaeLmCapture caps[2];
	SaeLmRequest req;
	SaeError	err;

	REQUIRE(lm && ref_tokens(tokens));
	C = sae_lm_config(lm)->d_model;
	mid = calloc((size_t) B_REF * T_REF * C, sizeof(float));
	post = calloc((size_t) B_REF * T_REF * C, sizeof(float));
	caps[0] = (SaeLmCapture) {{SAE_HOOK_RESID_MID, 1}, mid, false};
	caps[1] = (SaeLmCapture) {{SAE_HOOK_RESID_POST, 1}, post, false};
	req = (SaeLmRequest) {.tokens = tokens, .B = B_REF, .T = T_REF, .captures = caps, .n_captures = 2};
	req.edit_on = true;
	req.edit_hook = (SaeHook) {SAE_HOOK_MLP_OUT, 1};
	req.edit = zero_edit;
	req.edit_arg = &calls;
	CHECK(sae_lm_forward(lm, &req, &err) == SAE_OK);
	CHECK(calls == 1);
	CHECK(max_abs_diff_f(mid, post, (size_t) B_REF * T_REF * C) == 0);
	free(mid);
	free(post);
	sae_lm_free(lm);
}

UNIT_TEST(hook_names_parse_and_print)
{
	SaeLm	   *lm = load("neo", NULL);
	static const char *const good[] = {"hook_embed", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_z",
	"blocks.1.mlp.hook_post", "ln_final.hook_normalized", "blocks.0.ln2.hook_scale"};
	static const char *const bad[] = {"blocks.2.hook_mlp_out", "blocks.x.hook_mlp_out", "hook_mlp_out",
	"blocks.0.hook_embed", "blocks.-1.hook_resid_pre", "blocks.0.hook_nothing", ""};
	SaeHook		h;
	SaeError	err;
	char		buf[64];

	REQUIRE(lm != NULL);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
	{
		CHECK_MSG(sae_hook_parse(lm, good[i], &h, &err) == SAE_OK, "%s: %s", good[i], err.message);
		CHECK_MSG(strcmp(sae_hook_name(h, buf, sizeof(buf)), good[i]) == 0, "%s printed as %s", good[i], buf);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		CHECK_MSG(sae_hook_parse(lm, bad[i], &h, &err) == SAE_ERR_INVALID_PARAMETER, "%s accepted", bad[i]);
		CHECK_MSG(err.hint[0] != '\0', "%s: no hint", bad[i]);
	}
	sae_lm_free(lm);
}

UNIT_TEST(bad_requests_are_errors)
{
	SaeLm	   *lm = load("gpt2", NULL);
	int32_t		tokens[100] = {0};
	SaeError	err;
	SaeLmRequest req = {.tokens = tokens, .B = 1, .T = 5};
	int			V,
				n_ctx;

	REQUIRE(lm != NULL);
	V = sae_lm_config(lm)->d_vocab;
	n_ctx = sae_lm_config(lm)->n_ctx;
	tokens[3] = V;
	CHECK(sae_lm_forward(lm, &req, &err) == SAE_ERR_INVALID_DATA);
	CHECK(strstr(err.message, "position 3") != NULL);
	tokens[3] = -1;
	CHECK(sae_lm_forward(lm, &req, &err) == SAE_ERR_INVALID_DATA);
	tokens[3] = 0;
	REQUIRE(n_ctx < 100);
	req.T = n_ctx + 1;
	CHECK(sae_lm_forward(lm, &req, &err) == SAE_ERR_LIMIT);
	CHECK(strstr(err.message, "context") != NULL);
	sae_lm_free(lm);
}

/* A copy of fixture folder src in a temporary folder, with config.json replaced by config. */
static bool
folder_with_config(const char *src, const char *config, char *dir, size_t size)
{
	static const char *const files[] = {"model.safetensors", "vocab.json", "merges.txt"};
	char		from[512],
				rel[128],
				to[1024],
				abs[4096];
	FILE	   *fp;

	snprintf(dir, size, "/tmp/sae_lm_test.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return false;
	for (size_t i = 0; i < 3; i++)
	{
		snprintf(rel, sizeof(rel), "%s/%s", src, files[i]);
		if (realpath(lm_path(rel, from, sizeof(from)), abs) == NULL)
			return false;
		snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
		if (symlink(abs, to) != 0)
			return false;
	}
	snprintf(to, sizeof(to), "%s/config.json", dir);
	fp = fopen(to, "w");
	if (fp == NULL)
		return false;
	fputs(config, fp);
	fclose(fp);
	return true;
}

static void
remove_folder(const char *dir)
{
	static const char *const files[] = {"model.safetensors", "vocab.json", "merges.txt", "config.json"};
	char		p[1024];

	for (size_t i = 0; i < 4; i++)
	{
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* Bad configs and folders: errors with hints, never a crash. */
UNIT_TEST(bad_models_are_errors)
{
	static const struct
	{
		const char *config;
		SaeErrCode	code;
		const char *needle;
	}			cases[] = {
		{"[1, 2]", SAE_ERR_INVALID_DATA, "not a JSON object"},
		{"{\"model_type\": \"llama\"}", SAE_ERR_NOT_SUPPORTED, "llama"},
		{"{\"model_type\": \"gpt2\", \"n_embd\": 48, \"n_head\": 4, \"n_layer\": 2, \"vocab_size\": 1000, \"n_positions\": 64}",
		SAE_ERR_INVALID_DATA, "shape"},
		{"{\"model_type\": \"gpt2\", \"n_embd\": 32, \"n_head\": 5}", SAE_ERR_INVALID_DATA, "multiple"},
		{"{\"model_type\": \"gpt2\", \"n_embd\": -3}", SAE_ERR_INVALID_DATA, "n_embd"},
		{"{\"model_type\": \"gpt2\", \"n_embd\": 32, \"n_head\": 4, \"n_layer\": 3, \"vocab_size\": 1000, \"n_positions\": 64}",
		SAE_ERR_INVALID_DATA, "h.2."},
		{"{\"model_type\": \"gpt2\", \"activation_function\": \"swish\"}", SAE_ERR_NOT_SUPPORTED, "swish"},
		{"{\"model_type\": \"gpt_neo\", \"hidden_size\": 32, \"num_heads\": 4, \"num_layers\": 2, \"attention_types\": [[[\"global\", \"sparse\"], 1]]}",
		SAE_ERR_INVALID_DATA, "attention_types"},
		{"{\"model_type\": ", SAE_ERR_INVALID_DATA, "config"},
	};
	char		dir[64];
	SaeError	err;
	SaeLm	   *lm;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		REQUIRE(folder_with_config("gpt2", cases[i].config, dir, sizeof(dir)));
		memset(&err, 0, sizeof(err));
		CHECK_MSG(sae_lm_load(dir, NULL, test_backend(), &lm, &err) == (int) cases[i].code,
				  "case %zu: code %d (%s)", i, err.code, err.message);
		CHECK_MSG(strstr(err.message, cases[i].needle) || strstr(err.detail, cases[i].needle),
				  "case %zu: \"%s\" not in \"%s\"", i, cases[i].needle, err.message);
		remove_folder(dir);
	}
	CHECK(sae_lm_load("/nonexistent/model", NULL, test_backend(), &lm, &err) == SAE_ERR_INVALID_PARAMETER);
	CHECK(err.hint[0] != '\0');
}
