/*
 * test_saelens.c — SAELens folders: the fixtures SAELens wrote (v6) and the
 * v1.x format read with their keys and weights, bad folders refused with
 * the reason, and what we write read back exactly.
 */
#include "unit.h"
#include "helpers.h"

#include "saelens.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* test/fixtures/saelens/<name> */
static const char *
saelens_dir(const char *name, char *buf, size_t size)
{
	char		rel[256];

	snprintf(rel, sizeof(rel), "../saelens/%s", name);
	return fixture_path(rel, buf, size);
}

UNIT_TEST(reads_saelens_6_and_v1_folders)
{
	char		dir[512];
	SaeSaelensSae s;
	SaeError	err = {0};

	REQUIRE(sae_saelens_read(saelens_dir("v6", dir, sizeof(dir)), &s, &err) == SAE_OK);
	CHECK(s.format == 6 && s.d_in == 32 && s.d_sae == 48 && s.apply_b_dec_to_input);
	CHECK(strcmp(s.model_name, "tiny-gpt2") == 0 && strcmp(s.hook_name, "blocks.0.hook_resid_post") == 0);
	CHECK(s.hook_layer == 0 && s.head_index == -1 && s.context_size == 32 && s.prepend_bos);
	CHECK(strcmp(s.dataset_path, "stories") == 0);
	CHECK(s.w_enc && s.b_enc && s.w_dec && s.b_dec && s.log10_sparsity);
	sae_saelens_free(&s);

	REQUIRE(sae_saelens_read(saelens_dir("v1", dir, sizeof(dir)), &s, &err) == SAE_OK);
	CHECK(s.format == 1 && s.d_in == 32 && s.d_sae == 48);
	CHECK(strcmp(s.hook_name, "blocks.0.hook_resid_post") == 0 && s.hook_layer == 0);
	sae_saelens_free(&s);
}

UNIT_TEST(bad_folders_are_refused_with_the_reason)
{
	struct
	{
		const char *folder;
		SaeErrCode code;
		const char *words;
	}			cases[] = {
		{"bad_missing", SAE_ERR_INVALID_PARAMETER, "sae_weights.safetensors"},
		{"bad_arch", SAE_ERR_NOT_SUPPORTED, "jumprelu"},
		{"bad_shape", SAE_ERR_INVALID_DATA, "does not have the shape"},
		{"bad_corrupt", SAE_ERR_INVALID_DATA, "sae_weights.safetensors"},
		{"bad_scaling", SAE_ERR_NOT_SUPPORTED, "scaling_factor"},
		{"no_such_folder", SAE_ERR_INVALID_PARAMETER, "cfg.json"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		dir[512];
		SaeSaelensSae s;
		SaeError	err = {0};
		int			rc = sae_saelens_read(saelens_dir(cases[i].folder, dir, sizeof(dir)), &s, &err);

		CHECK_MSG(rc == (int) cases[i].code && strstr(err.message, cases[i].words),
				  "%s: code %d (want %d): %s", cases[i].folder, rc, cases[i].code, err.message);
		CHECK(s.w_enc == NULL && s.log10_sparsity == NULL);
	}
}

UNIT_TEST(written_folders_read_back_exactly)
{
	char		src[512],
				tmpl[] = "/tmp/sae-test-saelens-XXXXXX";
	char	   *dir = mkdtemp(tmpl);
	SaeSaelensSae a,
				b;
	SaeError	err = {0};

	REQUIRE(dir != NULL);
	REQUIRE(sae_saelens_read(saelens_dir("v1", src, sizeof(src)), &a, &err) == SAE_OK);
	a.head_index = 3;
	a.prepend_bos = false;
	strcpy(a.model_name, "a \"quoted\"\\name");
	CHECK_MSG(sae_saelens_write(dir, &a, &err) == SAE_OK, "%s", err.message);
	CHECK_MSG(sae_saelens_read(dir, &b, &err) == SAE_OK, "%s", err.message);
	CHECK(b.format == 6 && b.d_in == a.d_in && b.d_sae == a.d_sae && b.head_index == 3 && !b.prepend_bos);
	CHECK(strcmp(b.model_name, a.model_name) == 0 && strcmp(b.hook_name, a.hook_name) == 0);
	CHECK(memcmp(a.w_enc, b.w_enc, sizeof(float) * a.d_in * a.d_sae) == 0);
	CHECK(memcmp(a.w_dec, b.w_dec, sizeof(float) * a.d_in * a.d_sae) == 0);
	CHECK(memcmp(a.b_enc, b.b_enc, sizeof(float) * a.d_sae) == 0);
	CHECK(memcmp(a.b_dec, b.b_dec, sizeof(float) * a.d_in) == 0);
	CHECK(memcmp(a.log10_sparsity, b.log10_sparsity, sizeof(float) * a.d_sae) == 0);
	/* a second write into the same folder refuses to overwrite */
	CHECK(sae_saelens_write(dir, &a, &err) == SAE_ERR_IO);
	sae_saelens_free(&a);
	sae_saelens_free(&b);
	for (int i = 0; i < 3; i++)
	{
		char		path[600];

		snprintf(path, sizeof(path), "%s/%s", dir, sae_saelens_files[i]);
		unlink(path);
	}
	rmdir(dir);
}
