/*
 * test_hub.c — model names to folders (src/core/hub.c).
 *
 * The alias table; resolving from fake hub caches built here in a mkdtemp
 * folder (snapshots of symlinks into blobs and of plain files, refs, a
 * commit as revision, the environment variables, legacy folders of the
 * GPT-2 aliases, the error and hint when files are missing); and downloads
 * from test/hub/hub_server.py, a local stand-in for huggingface.co that
 * each download test starts and always stops: the layout huggingface_hub
 * writes (blob names, relative links, refs, .no_exist), a second resolve
 * with the server gone, sharded and nested files, 404 fallbacks, tokens,
 * cancellation, waiting for another download's lock, reused blobs, and
 * names that must be refused before anything touches the disk or network.
 */
#include "unit.h"
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "safetensors.h"

#define PATHLEN 1024
#define COMMIT_A "0123456789abcdef0123456789abcdef01234567"
#define COMMIT_B "89abcdef0123456789abcdef0123456789abcdef"
#define TOKEN "s3cret-token"

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

static const char *pathf(char *buf, size_t size, const char *fmt,...) __attribute__((format(printf, 3, 4)));

/* snprintf for paths and commands: a cut one would test the wrong thing, so it fails the test. */
static const char *
pathf(char *buf, size_t size, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= size)
		unit_fail(__FILE__, __LINE__, "string too long for its buffer: %s...", buf);
	return buf;
}

/* mkdir -p of the folder that holds path. */
static void
make_parents(const char *path)
{
	char		buf[PATHLEN];

	pathf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/')
		{
			*p = '\0';
			mkdir(buf, 0777);
			*p = '/';
		}
}

/* Write len bytes to path, making its folders; a failure is noted. */
static bool
put_file(const char *path, const void *data, size_t len)
{
	FILE	   *fp;
	bool		ok;

	make_parents(path);
	fp = fopen(path, "wb");
	ok = fp != NULL && fwrite(data, 1, len, fp) == len;
	if (fp != NULL && fclose(fp) != 0)
		ok = false;
	if (!ok)
		unit_note("could not write %s: %s", path, strerror(errno));
	return ok;
}

/* put_file of a string. */
static bool
put_text(const char *path, const char *text)
{
	return put_file(path, text, strlen(text));
}

/* The whole file (malloc'd, NUL-terminated), or NULL. */
static char *
slurp(const char *path, size_t *len)
{
	FILE	   *fp = fopen(path, "rb");
	char	   *buf = NULL;
	long		n;

	*len = 0;
	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
		(buf = malloc((size_t) n + 1)) != NULL && fread(buf, 1, (size_t) n, fp) == (size_t) n)
	{
		buf[n] = '\0';
		*len = (size_t) n;
	}
	else
	{
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return buf;
}

/* Copy src to dst (folders made). */
static bool
copy_file(const char *src, const char *dst)
{
	size_t		len;
	char	   *data = slurp(src, &len);
	bool		ok = data != NULL && put_file(dst, data, len);

	if (data == NULL)
		unit_note("could not read %s", src);
	free(data);
	return ok;
}

/* Same bytes in both files? */
static bool
same_bytes(const char *a, const char *b)
{
	size_t		la,
				lb;
	char	   *da = slurp(a, &la),
			   *db = slurp(b, &lb);
	bool		same = da != NULL && db != NULL && la == lb && memcmp(da, db, la) == 0;

	free(da);
	free(db);
	return same;
}

/* rm -rf, never following symlinks. */
static void
rm_rf(const char *path)
{
	struct stat sb;
	DIR		   *d;
	struct dirent *e;
	char		sub[PATHLEN];

	if (lstat(path, &sb) != 0)
		return;
	if (!S_ISDIR(sb.st_mode))
	{
		unlink(path);
		return;
	}
	if ((d = opendir(path)) != NULL)
	{
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			{
				pathf(sub, sizeof(sub), "%s/%s", path, e->d_name);
				rm_rf(sub);
			}
		closedir(d);
	}
	rmdir(path);
}

/* Entries of dir whose name ends with suffix ("" counts all). */
static int
count_entries(const char *dir, const char *suffix)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	size_t		ls = strlen(suffix);
	int			n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
	{
		size_t		l = strlen(e->d_name);

		if (e->d_name[0] != '.' && l >= ls && strcmp(e->d_name + l - ls, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The target of the symlink at path ("" if it is none). */
static const char *
link_target(const char *path, char *buf, size_t size)
{
	ssize_t		n = readlink(path, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Does path exist (as anything, links not followed)? */
static bool
exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

/* Path of test/fixtures/tokenizer/small/<file>. */
static const char *
tokenizer_fixture(const char *file, char *buf, size_t size)
{
	char		rel[128];

	pathf(rel, sizeof(rel), "../tokenizer/small/%s", file);
	return fixture_path(rel, buf, size);
}

/* ------------------------------------------------------------------ */
/* A scratch folder, with the hub's environment variables set aside   */
/* ------------------------------------------------------------------ */

static const char *const hf_vars[] = {
	"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME",
	"HF_ENDPOINT", "HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE",
};
#define N_HF_VARS ((int) (sizeof(hf_vars) / sizeof(hf_vars[0])))

typedef struct Scratch
{
	char		root[64];		/* the mkdtemp folder */
	char	   *saved[N_HF_VARS];	/* the variables' values before */
} Scratch;

/*
 * A fresh folder, and an environment where none of the hub's variables
 * is set except HOME (pointing into the folder), so that no test reads
 * the real cache or token of whoever runs it.
 */
static bool
scratch_begin(Scratch *s)
{
	char		home[PATHLEN];

	memset(s, 0, sizeof(*s));
	pathf(s->root, sizeof(s->root), "/tmp/sae-hub-XXXXXX");
	if (mkdtemp(s->root) == NULL)
	{
		unit_fail(__FILE__, __LINE__, "mkdtemp failed: %s", strerror(errno));
		s->root[0] = '\0';
		return false;
	}
	for (int i = 0; i < N_HF_VARS; i++)
	{
		const char *v = getenv(hf_vars[i]);

		s->saved[i] = v ? strdup(v) : NULL;
		unsetenv(hf_vars[i]);
	}
	pathf(home, sizeof(home), "%s/home", s->root);
	setenv("HOME", home, 1);
	return true;
}

/* Put the environment back and remove the folder. */
static void
scratch_end(Scratch *s)
{
	for (int i = 0; i < N_HF_VARS; i++)
	{
		if (s->saved[i] != NULL)
			setenv(hf_vars[i], s->saved[i], 1);
		else
			unsetenv(hf_vars[i]);
		free(s->saved[i]);
		s->saved[i] = NULL;
	}
	if (s->root[0] != '\0')
		rm_rf(s->root);
}

/* <scratch>/<rel> */
static const char *
in_scratch(const Scratch *s, const char *rel, char *buf, size_t size)
{
	pathf(buf, size, "%s/%s", s->root, rel);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Resolving                                                           */
/* ------------------------------------------------------------------ */

/* Options for the cache at cache, downloads off. */
static SaeHubOptions
cache_opts(const char *cache)
{
	SaeHubOptions o;

	memset(&o, 0, sizeof(o));
	o.cache_dir = cache;
	return o;
}

/*
 * sae_hub_resolve that must succeed; the folder (malloc'd) or NULL.  Not
 * inlined: GCC then takes the returned folder for a pointer to the local.
 */
__attribute__((noinline)) static char *
resolve_ok_at(int line, const char *name, const SaeHubOptions *o)
{
	SaeError	err;
	char	   *dir = NULL;
	int			rc;

	memset(&err, 0, sizeof(err));
	rc = sae_hub_resolve(name, o, &dir, &err);
	if (rc != SAE_OK)
		unit_fail(__FILE__, line, "sae_hub_resolve(\"%s\") failed (%d): %s [detail: %s] [hint: %s]",
				  name, rc, err.message, err.detail, err.hint);
	else if (dir == NULL)
		unit_fail(__FILE__, line, "sae_hub_resolve(\"%s\") gave no folder", name);
	return dir;
}
#define RESOLVE_OK(name, o) resolve_ok_at(__LINE__, (name), (o))

/* sae_hub_resolve that must fail with code; err is kept for more checks. */
static void
resolve_fails_at(int line, const char *name, const SaeHubOptions *o, int code, SaeError *err)
{
	char	   *dir = (char *) "untouched";
	int			rc;

	memset(err, 0, sizeof(*err));
	rc = sae_hub_resolve(name, o, &dir, err);
	if (rc != code)
		unit_fail(__FILE__, line, "sae_hub_resolve(\"%s\"): got %d (%s), want %d", name ? name : "(null)", rc,
				  err->message, code);
	if (rc != SAE_OK && dir != NULL)
		unit_fail(__FILE__, line, "sae_hub_resolve(\"%s\") failed but left *out_dir set", name ? name : "(null)");
	if (rc == SAE_OK)
		free(dir);
}
#define RESOLVE_FAILS(name, o, code, err) resolve_fails_at(__LINE__, (name), (o), (code), (err))

/* ------------------------------------------------------------------ */
/* Fake caches                                                         */
/* ------------------------------------------------------------------ */

/*
 * Put files (NULL-terminated) into cache/folder/snapshots/commit: as
 * relative symlinks into blobs/ (linked), or as plain files (what
 * HF_HUB_DISABLE_SYMLINKS gives).  A ".safetensors" file gets the real
 * fixture's bytes; the rest a small text.
 */
static void
fake_snapshot(const char *cache, const char *folder, const char *commit, bool linked,
			  const char *const *files)
{
	char		snap[PATHLEN],
				path[PATHLEN],
				blob[PATHLEN],
				target[PATHLEN],
				src[PATHLEN];

	pathf(snap, sizeof(snap), "%s/%s/snapshots/%s", cache, folder, commit);
	for (int i = 0; files[i] != NULL; i++)
	{
		bool		st = strstr(files[i], ".safetensors") != NULL && strstr(files[i], ".json") == NULL;

		pathf(path, sizeof(path), "%s/%s", snap, files[i]);
		pathf(blob, sizeof(blob), "%s/%s/blobs/etag%d%s", cache, folder, i, commit);
		if (st)
			copy_file(model_path("dtypes.safetensors", src, sizeof(src)), linked ? blob : path);
		else
			put_text(linked ? blob : path, "{}");
		if (linked)
		{
			pathf(target, sizeof(target), "../../blobs/etag%d%s", i, commit);
			make_parents(path);
			CHECK(symlink(target, path) == 0);
		}
	}
}

/* refs/<ref> of cache/folder holding commit (plus newline, if asked: we must trim). */
static void
fake_ref(const char *cache, const char *folder, const char *ref, const char *commit, bool newline)
{
	char		path[PATHLEN],
				text[64];

	pathf(path, sizeof(path), "%s/%s/refs/%s", cache, folder, ref);
	pathf(text, sizeof(text), "%s%s", commit, newline ? "\n" : "");
	put_text(path, text);
}

static const char *const full_files[] = {"config.json", "model.safetensors", "tokenizer.json", NULL};

/* ------------------------------------------------------------------ */
/* Aliases                                                             */
/* ------------------------------------------------------------------ */

UNIT_TEST(alias_table)
{
	static const char *const tiny[][2] = {
		{"tiny-stories-1M", "roneneldan/TinyStories-1M"},
		{"tiny-stories-3M", "roneneldan/TinyStories-3M"},
		{"tiny-stories-8M", "roneneldan/TinyStories-8M"},
		{"tiny-stories-28M", "roneneldan/TinyStories-28M"},
		{"tiny-stories-33M", "roneneldan/TinyStories-33M"},
		{"tiny-stories-instruct-1M", "roneneldan/TinyStories-Instruct-1M"},
		{"tiny-stories-instruct-3M", "roneneldan/TinyStories-Instruct-3M"},
		{"tiny-stories-instruct-8M", "roneneldan/TinyStories-Instruct-8M"},
		{"tiny-stories-instruct-28M", "roneneldan/TinyStories-Instruct-28M"},
		{"tiny-stories-instruct-33M", "roneneldan/TinyStories-Instruct-33M"},
		{"tiny-stories-1L-21M", "roneneldan/TinyStories-1Layer-21M"},
		{"tiny-stories-2L-33M", "roneneldan/TinyStories-2Layers-33M"},
		{"tiny-stories-instruct-1L-21M", "roneneldan/TinyStories-Instuct-1Layer-21M"},
		{"tiny-stories-instruct-2L-33M", "roneneldan/TinyStories-Instruct-2Layers-33M"},
	};
	static const char *const other[][2] = {
		{"gpt2", "openai-community/gpt2"},
		{"gpt2-small", "openai-community/gpt2"},
		{"GPT2-Small", "openai-community/gpt2"},
		{"gpt2-medium", "openai-community/gpt2-medium"},
		{"gpt2-large", "openai-community/gpt2-large"},
		{"gpt2-xl", "openai-community/gpt2-xl"},
		{"distilgpt2", "distilbert/distilgpt2"},
		{"gpt-neo-125M", "EleutherAI/gpt-neo-125M"},
		{"gpt-neo-125m", "EleutherAI/gpt-neo-125M"},
		{"neo-small", "EleutherAI/gpt-neo-125M"},
		{"gpt-neo-1.3B", "EleutherAI/gpt-neo-1.3B"},
		{"gpt-neo-2.7B", "EleutherAI/gpt-neo-2.7B"},
		{"openai-community/gpt2", "openai-community/gpt2"},
	};

	for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++)
	{
		const char *repo = sae_hub_alias_repo(tiny[i][0]);

		CHECK_MSG(repo != NULL && strcmp(repo, tiny[i][1]) == 0, "%s -> %s, want %s", tiny[i][0],
				  repo ? repo : "NULL", tiny[i][1]);
		CHECK_INT_EQ(sae_hub_alias_n_ctx(tiny[i][0]), 512);
		CHECK_INT_EQ(sae_hub_alias_n_ctx(tiny[i][1]), 512);
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
	{
		const char *repo = sae_hub_alias_repo(other[i][0]);

		CHECK_MSG(repo != NULL && strcmp(repo, other[i][1]) == 0, "%s -> %s, want %s", other[i][0],
				  repo ? repo : "NULL", other[i][1]);
		CHECK_INT_EQ(sae_hub_alias_n_ctx(other[i][0]), 0);
	}
	CHECK(sae_hub_alias_repo("org/tiny") == NULL);
	CHECK(sae_hub_alias_repo("gpt3") == NULL);
	CHECK(sae_hub_alias_repo("") == NULL);
	CHECK(sae_hub_alias_repo(NULL) == NULL);
	CHECK_INT_EQ(sae_hub_alias_n_ctx("org/tiny"), 0);
}

/* ------------------------------------------------------------------ */
/* The cache, no network                                               */
/* ------------------------------------------------------------------ */

/* Snapshots of symlinks into blobs, found through refs/main. */
static void
cache_symlinked_body(Scratch *s)
{
	char		cache[PATHLEN],
				want[PATHLEN + 128];
	SaeHubOptions o;
	char	   *dir;

	o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	fake_snapshot(cache, "models--org--tiny", COMMIT_A, true, full_files);
	fake_ref(cache, "models--org--tiny", "main", COMMIT_A, false);
	dir = RESOLVE_OK("org/tiny", &o);
	REQUIRE(dir != NULL);
	pathf(want, sizeof(want), "%s/models--org--tiny/snapshots/%s", cache, COMMIT_A);
	CHECK_STR_EQ(dir, want);
	free(dir);
}

UNIT_TEST(cache_symlinked)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_symlinked_body(&s);
	scratch_end(&s);
}

/* Plain files, vocab.json + merges.txt, pytorch_model.bin, a ref with a newline. */
static void
cache_plain_files_body(Scratch *s)
{
	static const char *const files[] = {"config.json", "pytorch_model.bin", "vocab.json", "merges.txt", NULL};
	char		cache[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	char	   *dir;

	fake_snapshot(cache, "models--legacyname", COMMIT_B, false, files);
	fake_ref(cache, "models--legacyname", "main", COMMIT_B, true);
	dir = RESOLVE_OK("legacyname", &o);
	REQUIRE(dir != NULL);
	CHECK_CONTAINS(dir, "/models--legacyname/snapshots/" COMMIT_B);
	free(dir);
}

UNIT_TEST(cache_plain_files)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_plain_files_body(&s);
	scratch_end(&s);
}

/* A 40-hex revision needs no ref; other refs (refs/pr/1) are files too. */
static void
cache_revisions_body(Scratch *s)
{
	char		cache[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	SaeError	err;
	char	   *dir;

	fake_snapshot(cache, "models--org--tiny", COMMIT_A, true, full_files);
	fake_snapshot(cache, "models--org--tiny", COMMIT_B, true, full_files);
	o.revision = COMMIT_A;
	dir = RESOLVE_OK("org/tiny", &o);
	CHECK(dir != NULL && strstr(dir, COMMIT_A) != NULL);
	free(dir);
	o.revision = "main";
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.detail, "no refs for this revision");
	fake_ref(cache, "models--org--tiny", "refs/pr/1", COMMIT_B, false);
	o.revision = "refs/pr/1";
	dir = RESOLVE_OK("org/tiny", &o);
	CHECK(dir != NULL && strstr(dir, COMMIT_B) != NULL);
	free(dir);
}

UNIT_TEST(cache_revisions)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_revisions_body(&s);
	scratch_end(&s);
}

/* "gpt2" is found in models--gpt2 too; a complete openai-community copy wins. */
static void
cache_alias_folders_body(Scratch *s)
{
	static const char *const config_only[] = {"config.json", NULL};
	char		cache[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	char	   *dir;

	fake_snapshot(cache, "models--gpt2", COMMIT_A, true, full_files);
	fake_ref(cache, "models--gpt2", "main", COMMIT_A, false);
	dir = RESOLVE_OK("gpt2", &o);
	CHECK(dir != NULL && strstr(dir, "/models--gpt2/snapshots/" COMMIT_A) != NULL);
	free(dir);
	fake_snapshot(cache, "models--openai-community--gpt2", COMMIT_B, true, config_only);
	fake_ref(cache, "models--openai-community--gpt2", "main", COMMIT_B, false);
	dir = RESOLVE_OK("GPT2-small", &o);
	CHECK(dir != NULL && strstr(dir, "/models--gpt2/snapshots/" COMMIT_A) != NULL);
	free(dir);
	fake_snapshot(cache, "models--openai-community--gpt2", COMMIT_A, true, full_files);
	fake_ref(cache, "models--openai-community--gpt2", "main", COMMIT_A, false);
	dir = RESOLVE_OK("gpt2", &o);
	CHECK(dir != NULL && strstr(dir, "/models--openai-community--gpt2/snapshots/" COMMIT_A) != NULL);
	free(dir);
	fake_snapshot(cache, "models--roneneldan--TinyStories-1Layer-21M", COMMIT_A, true, full_files);
	fake_ref(cache, "models--roneneldan--TinyStories-1Layer-21M", "main", COMMIT_A, false);
	dir = RESOLVE_OK("tiny-stories-1L-21M", &o);
	CHECK(dir != NULL && strstr(dir, "/models--roneneldan--TinyStories-1Layer-21M/") != NULL);
	free(dir);
}

UNIT_TEST(cache_alias_folders)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_alias_folders_body(&s);
	scratch_end(&s);
}

/* A sharded snapshot needs every shard its index names. */
static void
cache_sharded_body(Scratch *s)
{
	static const char *const names[] = {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
	"model-00002-of-00002.safetensors"};
	char		cache[PATHLEN],
				snap[PATHLEN],
				src[PATHLEN],
				dst[PATHLEN * 2];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	SaeError	err;
	char	   *dir;

	pathf(snap, sizeof(snap), "%s/models--org--sharded/snapshots/%s", cache, COMMIT_A);
	for (int i = 0; i < 3; i++)
	{
		char		rel[128];

		pathf(rel, sizeof(rel), "sharded/%s", names[i]);
		pathf(dst, sizeof(dst), "%s/%s", snap, names[i]);
		copy_file(model_path(rel, src, sizeof(src)), dst);
	}
	pathf(dst, sizeof(dst), "%s/config.json", snap);
	put_text(dst, "{}");
	pathf(dst, sizeof(dst), "%s/tokenizer.json", snap);
	put_text(dst, "{}");
	fake_ref(cache, "models--org--sharded", "main", COMMIT_A, false);
	dir = RESOLVE_OK("org/sharded", &o);
	free(dir);
	pathf(dst, sizeof(dst), "%s/model-00002-of-00002.safetensors", snap);
	unlink(dst);
	RESOLVE_FAILS("org/sharded", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "shard model-00002-of-00002.safetensors");
}

UNIT_TEST(cache_sharded)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_sharded_body(&s);
	scratch_end(&s);
}

/* Missing files, downloads off: the error says what lacks where, and how to fix it. */
static void
cache_missing_body(Scratch *s)
{
	static const char *const some[] = {"config.json", "model.safetensors", NULL};
	char		cache[PATHLEN],
				link[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	SaeError	err;

	fake_snapshot(cache, "models--org--tiny", COMMIT_A, true, some);
	fake_ref(cache, "models--org--tiny", "main", COMMIT_A, false);
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "models--org--tiny/snapshots/" COMMIT_A);
	CHECK_CONTAINS(err.message, "the tokenizer (tokenizer.json, or vocab.json and merges.txt)");
	CHECK(strstr(err.message, "the weights") == NULL);
	CHECK(strstr(err.message, "config.json") == NULL);
	CHECK_CONTAINS(err.hint, "sae.allow_download");
	CHECK_CONTAINS(err.hint, "path of a folder");

	/* a dangling link is a missing file */
	pathf(link, sizeof(link), "%s/models--org--tiny/blobs/etag1%s", cache, COMMIT_A);
	unlink(link);
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "the weights (model.safetensors");

	/* nothing cached: both folders of the alias are named */
	RESOLVE_FAILS("gpt2", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "is not in the Hugging Face cache");
	CHECK_CONTAINS(err.detail, "models--openai-community--gpt2 (not there)");
	CHECK_CONTAINS(err.detail, "models--gpt2 (not there)");
	CHECK_CONTAINS(err.hint, "sae.allow_download");
}

UNIT_TEST(cache_missing)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_missing_body(&s);
	scratch_end(&s);
}

/* Make a complete snapshot of org/tiny in cache (for the environment test). */
static void
env_cache(const Scratch *s, const char *rel)
{
	char		cache[PATHLEN];

	in_scratch(s, rel, cache, sizeof(cache));
	fake_snapshot(cache, "models--org--tiny", COMMIT_A, true, full_files);
	fake_ref(cache, "models--org--tiny", "main", COMMIT_A, false);
}

/* Resolve org/tiny with no cache_dir; the snapshot must be under rel. */
static void
check_env_cache(const Scratch *s, const char *rel, int line)
{
	SaeHubOptions o = cache_opts(NULL);
	char		want[PATHLEN];
	char	   *dir = resolve_ok_at(line, "org/tiny", &o);

	in_scratch(s, rel, want, sizeof(want));
	if (dir != NULL && strncmp(dir, want, strlen(want)) != 0)
		unit_fail(__FILE__, line, "resolved to %s, want a folder under %s", dir, want);
	free(dir);
}

/* The cache folder's variables, in huggingface_hub's order of precedence. */
static void
cache_env_body(Scratch *s)
{
	char		buf[PATHLEN];
	SaeHubOptions o = cache_opts(NULL);
	SaeError	err;

	env_cache(s, "home/.cache/huggingface/hub");
	check_env_cache(s, "home/.cache/huggingface/hub", __LINE__);
	env_cache(s, "xdg/huggingface/hub");
	setenv("XDG_CACHE_HOME", in_scratch(s, "xdg", buf, sizeof(buf)), 1);
	check_env_cache(s, "xdg/huggingface/hub", __LINE__);
	env_cache(s, "hfhome/hub");
	setenv("HF_HOME", in_scratch(s, "hfhome", buf, sizeof(buf)), 1);
	check_env_cache(s, "hfhome/hub", __LINE__);
	env_cache(s, "legacy");
	setenv("HUGGINGFACE_HUB_CACHE", in_scratch(s, "legacy", buf, sizeof(buf)), 1);
	check_env_cache(s, "legacy", __LINE__);
	env_cache(s, "hubcache");
	setenv("HF_HUB_CACHE", in_scratch(s, "hubcache", buf, sizeof(buf)), 1);
	check_env_cache(s, "hubcache", __LINE__);
	/* HF_HUB_CACHE wins even when its cache is empty */
	setenv("HF_HUB_CACHE", in_scratch(s, "empty", buf, sizeof(buf)), 1);
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "/empty");
}

UNIT_TEST(cache_env)
{
	Scratch		s;

	if (scratch_begin(&s))
		cache_env_body(&s);
	scratch_end(&s);
}

/* Names from SQL users: refused before anything touches the disk or the network. */
static void
bad_names_body(Scratch *s)
{
	static const char *const bad[] = {
		"../x", "/etc", "a b", "org/../x", "org/./x", "./x", "a/b/c", "org//x", "org/", "",
		"org--x/y", "x/..", "a\\b", "org/x;rm", "org/%2e%2e", "na\xc3\xafve",
	};
	static const char *const bad_revisions[] = {"../../etc", "/abs", "a b", "main/..", "refs//x"};
	char		cache[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	SaeError	err;

	o.allow_download = true;
	o.endpoint = "http://127.0.0.1:9";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		RESOLVE_FAILS(bad[i], &o, SAE_ERR_INVALID_PARAMETER, &err);
		CHECK_CONTAINS(err.message, "invalid model name");
	}
	RESOLVE_FAILS(NULL, &o, SAE_ERR_INVALID_PARAMETER, &err);
	for (size_t i = 0; i < sizeof(bad_revisions) / sizeof(bad_revisions[0]); i++)
	{
		o.revision = bad_revisions[i];
		RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
		CHECK_CONTAINS(err.message, "invalid revision");
	}
	CHECK_MSG(!exists(cache), "a refused name created %s", cache);
}

UNIT_TEST(bad_names)
{
	Scratch		s;

	if (scratch_begin(&s))
		bad_names_body(&s);
	scratch_end(&s);
}

/* HF_HUB_OFFLINE=1 turns downloads off, and the hint says so. */
static void
offline_env_body(Scratch *s)
{
	char		cache[PATHLEN];
	SaeHubOptions o = cache_opts(in_scratch(s, "cache", cache, sizeof(cache)));
	SaeError	err;

	o.allow_download = true;
	o.endpoint = "http://127.0.0.1:9";
	setenv("HF_HUB_OFFLINE", "1", 1);
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.hint, "HF_HUB_OFFLINE");
	CHECK(!exists(cache));
}

UNIT_TEST(offline_env)
{
	Scratch		s;

	if (scratch_begin(&s))
		offline_env_body(&s);
	scratch_end(&s);
}

/* ------------------------------------------------------------------ */
/* Downloads from test/hub/hub_server.py                              */
/* ------------------------------------------------------------------ */

typedef struct Server
{
	pid_t		pid;			/* 0 when not running */
	char		endpoint[64];
	char		log[PATHLEN];
} Server;

/* python3 on PATH, or false. */
static bool
find_python(char *buf, size_t size)
{
	const char *path = getenv("PATH");
	char		dirs[4096];
	char	   *save = NULL;

	pathf(dirs, sizeof(dirs), "%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save))
	{
		pathf(buf, size, "%s/python3", d);
		if (access(buf, X_OK) == 0)
			return true;
	}
	return false;
}

/* test/hub/hub_server.py, whether the runner runs in test/unit or the root. */
static bool
server_script(char *buf, size_t size)
{
	static const char *const candidates[] = {"../hub/hub_server.py", "test/hub/hub_server.py"};

	char		cwd[PATHLEN];

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return false;
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (access(candidates[i], R_OK) == 0)
		{
			pathf(buf, size, "%s/%s", cwd, candidates[i]);
			return true;
		}
	return false;
}

/* Wait up to 15 s for the port file; false if the server died or never wrote it. */
static bool
wait_for_port(Server *sv, const char *port_file)
{
	struct timespec nap = {0, 20000000};
	int			status;

	for (int i = 0; i < 750; i++)
	{
		size_t		len;
		char	   *text = slurp(port_file, &len);
		int			port = text ? atoi(text) : 0;

		free(text);
		if (port > 0)
		{
			pathf(sv->endpoint, sizeof(sv->endpoint), "http://127.0.0.1:%d", port);
			return true;
		}
		if (waitpid(sv->pid, &status, WNOHANG) == sv->pid)
		{
			unit_fail(__FILE__, __LINE__, "hub_server.py exited (status %d) before listening", status);
			sv->pid = 0;
			return false;
		}
		nanosleep(&nap, NULL);
	}
	unit_fail(__FILE__, __LINE__, "hub_server.py wrote no port within 15 s");
	return false;
}

/* Start hub_server.py on <scratch>/repos (requiring token, if not NULL). */
static bool
server_start(Server *sv, const Scratch *s, const char *token)
{
	char		py[PATHLEN],
				script[PATHLEN],
				root[PATHLEN],
				port_file[PATHLEN];
	const char *argv[12];
	int			argc = 0;

	memset(sv, 0, sizeof(*sv));
	if (!find_python(py, sizeof(py)))
	{
		unit_fail(__FILE__, __LINE__, "python3 is not on PATH: the hub download tests run test/hub/hub_server.py "
				  "with it (scripts/setup.sh installs python3)");
		return false;
	}
	if (!server_script(script, sizeof(script)))
	{
		unit_fail(__FILE__, __LINE__, "test/hub/hub_server.py not found from %s", getcwd(root, sizeof(root)));
		return false;
	}
	in_scratch(s, "repos", root, sizeof(root));
	in_scratch(s, "server.port", port_file, sizeof(port_file));
	in_scratch(s, "server.log", sv->log, sizeof(sv->log));
	argv[argc++] = py;
	argv[argc++] = script;
	argv[argc++] = root;
	argv[argc++] = "--port-file";
	argv[argc++] = port_file;
	argv[argc++] = "--log";
	argv[argc++] = sv->log;
	argv[argc++] = "--exit-with-parent";
	if (token != NULL)
	{
		argv[argc++] = "--token";
		argv[argc++] = token;
	}
	argv[argc] = NULL;
	put_text(sv->log, "");
	fflush(stdout);
	fflush(stderr);
	if ((sv->pid = fork()) < 0)
	{
		unit_fail(__FILE__, __LINE__, "fork failed: %s", strerror(errno));
		sv->pid = 0;
		return false;
	}
	if (sv->pid == 0)
	{
		execv(py, (char *const *) argv);
		_exit(127);
	}
	return wait_for_port(sv, port_file);
}

/* Kill the server (if running) and reap it. */
static void
server_stop(Server *sv)
{
	int			status;

	if (sv->pid > 0)
	{
		kill(sv->pid, SIGTERM);
		waitpid(sv->pid, &status, 0);
	}
	sv->pid = 0;
}

/* Does the server's request log contain line (a substring)?  How often? */
static int
log_count(const Server *sv, const char *needle)
{
	size_t		len;
	char	   *text = slurp(sv->log, &len);
	int			n = 0;

	for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
		n++;
	free(text);
	return n;
}

/* A repo to serve: <scratch>/repos/<repo>/<file> with the given bytes or a fixture's. */
static void
repo_text(const Scratch *s, const char *repo, const char *file, const char *text)
{
	char		rel[256],
				path[PATHLEN];

	pathf(rel, sizeof(rel), "repos/%s/%s", repo, file);
	put_text(in_scratch(s, rel, path, sizeof(path)), text);
}

/* <scratch>/repos/<repo>/<file> copied from src. */
static void
repo_copy(const Scratch *s, const char *repo, const char *file, const char *src)
{
	char		rel[256],
				path[PATHLEN];

	pathf(rel, sizeof(rel), "repos/%s/%s", repo, file);
	copy_file(src, in_scratch(s, rel, path, sizeof(path)));
}

/* The served repos: each a case of the download order. */
static void
make_repos(const Scratch *s)
{
	char		src[PATHLEN];

	/* safetensors weights, tokenizer as vocab.json + merges.txt */
	repo_text(s, "org/tiny", "config.json", "{\"model_type\": \"gpt2\"}\n");
	repo_copy(s, "org/tiny", "model.safetensors", model_path("dtypes.safetensors", src, sizeof(src)));
	repo_copy(s, "org/tiny", "vocab.json", tokenizer_fixture("vocab.json", src, sizeof(src)));
	repo_copy(s, "org/tiny", "merges.txt", tokenizer_fixture("merges.txt", src, sizeof(src)));
	/* sharded weights, tokenizer.json */
	repo_text(s, "org/sharded", "config.json", "{\"model_type\": \"gpt2\", \"n_layer\": 2}\n");
	repo_copy(s, "org/sharded", "model.safetensors.index.json",
			  model_path("sharded/model.safetensors.index.json", src, sizeof(src)));
	repo_copy(s, "org/sharded", "model-00001-of-00002.safetensors",
			  model_path("sharded/model-00001-of-00002.safetensors", src, sizeof(src)));
	repo_copy(s, "org/sharded", "model-00002-of-00002.safetensors",
			  model_path("sharded/model-00002-of-00002.safetensors", src, sizeof(src)));
	repo_copy(s, "org/sharded", "tokenizer.json", tokenizer_fixture("tokenizer.json", src, sizeof(src)));
	/* shards in a subfolder: deeper links */
	repo_text(s, "org/nested", "config.json", "{}\n");
	repo_text(s, "org/nested", "model.safetensors.index.json",
			  "{\"weight_map\": {\"a.bias\": \"w/part-1.safetensors\", \"a.weight\": \"w/part-1.safetensors\", "
			  "\"b.bias\": \"w/part-2.safetensors\", \"b.weight\": \"w/part-2.safetensors\"}}\n");
	repo_copy(s, "org/nested", "w/part-1.safetensors",
			  model_path("sharded/model-00001-of-00002.safetensors", src, sizeof(src)));
	repo_copy(s, "org/nested", "w/part-2.safetensors",
			  model_path("sharded/model-00002-of-00002.safetensors", src, sizeof(src)));
	repo_copy(s, "org/nested", "tokenizer.json", tokenizer_fixture("tokenizer.json", src, sizeof(src)));
	/* only a torch checkpoint */
	repo_text(s, "org/bin", "config.json", "{}\n");
	repo_copy(s, "org/bin", "pytorch_model.bin", model_path("torch_f32.bin", src, sizeof(src)));
	repo_copy(s, "org/bin", "tokenizer.json", tokenizer_fixture("tokenizer.json", src, sizeof(src)));
	/* an empty file: a 200 without a body */
	repo_text(s, "org/emptymerges", "config.json", "{}\n");
	repo_copy(s, "org/emptymerges", "model.safetensors", model_path("dtypes.safetensors", src, sizeof(src)));
	repo_copy(s, "org/emptymerges", "vocab.json", tokenizer_fixture("vocab.json", src, sizeof(src)));
	repo_text(s, "org/emptymerges", "merges.txt", "");
	/* broken repos */
	repo_copy(s, "org/noconfig", "model.safetensors", model_path("dtypes.safetensors", src, sizeof(src)));
	repo_text(s, "org/noweights", "config.json", "{}\n");
	repo_text(s, "org/noweights", "tokenizer.json", "{}\n");
	repo_text(s, "org/novocab", "config.json", "{}\n");
	repo_copy(s, "org/novocab", "model.safetensors", model_path("dtypes.safetensors", src, sizeof(src)));
	repo_copy(s, "org/novocab", "vocab.json", tokenizer_fixture("vocab.json", src, sizeof(src)));
}

/* A download test: scratch folder, served repos, running server, cache path. */
typedef struct Dl
{
	Scratch		s;
	Server		sv;
	char		cache[PATHLEN];
	char		repos[PATHLEN];
	char		digest_py[PATHLEN];
	char		python[PATHLEN];
} Dl;

/* hashlib in python3 as an independent check of blob names. */
static const char digest_script[] =
"import hashlib, sys\n"
"d = open(sys.argv[2], 'rb').read()\n"
"print(hashlib.sha256(d).hexdigest() if sys.argv[1] == 'sha256'\n"
"      else hashlib.sha1(b'blob %d\\0' % len(d) + d).hexdigest())\n";

/* Set everything up; false (with a failure noted) if that did not work. */
static bool
dl_begin(Dl *d, const char *token)
{
	memset(d, 0, sizeof(*d));
	if (!scratch_begin(&d->s))
		return false;
	in_scratch(&d->s, "cache", d->cache, sizeof(d->cache));
	in_scratch(&d->s, "repos", d->repos, sizeof(d->repos));
	in_scratch(&d->s, "digest.py", d->digest_py, sizeof(d->digest_py));
	put_text(d->digest_py, digest_script);
	find_python(d->python, sizeof(d->python));
	make_repos(&d->s);
	return server_start(&d->sv, &d->s, token);
}

/* Always: stop the server, restore the environment, remove the folder. */
static void
dl_end(Dl *d)
{
	server_stop(&d->sv);
	scratch_end(&d->s);
}

/* Options: our cache, our server, downloads on. */
static SaeHubOptions
dl_opts(const Dl *d)
{
	SaeHubOptions o = cache_opts(d->cache);

	o.endpoint = d->sv.endpoint;
	o.allow_download = true;
	return o;
}

/* The served file's sha256 or git blob sha1, computed by python3. */
static const char *
digest(const Dl *d, const char *kind, const char *repo_file, char *out, size_t size)
{
	char		cmd[PATHLEN * 6];
	FILE	   *p;

	pathf(cmd, sizeof(cmd), "'%s' '%s' %s '%s/%s'", d->python, d->digest_py, kind, d->repos, repo_file);
	out[0] = '\0';
	if ((p = popen(cmd, "r")) != NULL)
	{
		if (fgets(out, (int) size, p) == NULL)
			out[0] = '\0';
		pclose(p);
	}
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* snapshot/<file> is a link to <depth>blobs/<blob> with the served bytes. */
static void
check_linked(const Dl *d, const char *snap, const char *file, const char *depth, const char *blob,
			 const char *repo_file)
{
	char		path[PATHLEN],
				target[PATHLEN],
				want[PATHLEN],
				src[PATHLEN * 2];

	pathf(path, sizeof(path), "%s/%s", snap, file);
	pathf(want, sizeof(want), "%sblobs/%s", depth, blob);
	CHECK_STR_EQ(link_target(path, target, sizeof(target)), want);
	pathf(src, sizeof(src), "%s/%s", d->repos, repo_file);
	CHECK_MSG(same_bytes(path, src), "%s differs from %s", path, src);
}

/* The last progress report of model.safetensors. */
typedef struct Progress
{
	int			calls;
	int64_t		done;
	int64_t		total;
} Progress;

/* Progress callback: remember the last report of model.safetensors. */
static void
on_progress(void *arg, const char *file, int64_t done, int64_t total)
{
	Progress   *p = arg;

	if (strcmp(file, "model.safetensors") == 0)
	{
		p->calls++;
		p->done = done;
		p->total = total;
	}
}

/* The cache layout huggingface_hub writes, then a resolve with the server gone. */
static void
download_layout_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	Progress	prog = {0, 0, 0};
	char		repo[PATHLEN],
				path[PATHLEN * 2],
				sha[80],
				git[80],
				line[PATHLEN];
	size_t		len;
	char	   *dir,
			   *ref,
			   *again;
	const char *commit;

	o.progress = on_progress;
	o.progress_arg = &prog;
	dir = RESOLVE_OK("org/tiny", &o);
	REQUIRE(dir != NULL);
	pathf(repo, sizeof(repo), "%s/models--org--tiny", d->cache);
	CHECK(strncmp(dir, repo, strlen(repo)) == 0);
	commit = strrchr(dir, '/') + 1;
	CHECK_INT_EQ(strspn(commit, "0123456789abcdef"), 40);
	CHECK_INT_EQ(strlen(commit), 40);

	/* refs/main: the commit, no newline */
	pathf(path, sizeof(path), "%s/refs/main", repo);
	ref = slurp(path, &len);
	CHECK(ref != NULL && strcmp(ref, commit) == 0);
	free(ref);

	/* LFS-like file: blob named by sha256; small files: by the git blob sha1 */
	digest(d, "sha256", "org/tiny/model.safetensors", sha, sizeof(sha));
	REQUIRE(strlen(sha) == 64);
	check_linked(d, dir, "model.safetensors", "../../", sha, "org/tiny/model.safetensors");
	check_linked(d, dir, "config.json", "../../", digest(d, "gitsha1", "org/tiny/config.json", git, sizeof(git)),
				 "org/tiny/config.json");
	check_linked(d, dir, "vocab.json", "../../", digest(d, "gitsha1", "org/tiny/vocab.json", git, sizeof(git)),
				 "org/tiny/vocab.json");
	check_linked(d, dir, "merges.txt", "../../", digest(d, "gitsha1", "org/tiny/merges.txt", git, sizeof(git)),
				 "org/tiny/merges.txt");
	pathf(path, sizeof(path), "%s/tokenizer.json", dir);
	CHECK(!exists(path));
	pathf(path, sizeof(path), "%s/.no_exist/%s/tokenizer.json", repo, commit);
	CHECK(exists(path));
	pathf(path, sizeof(path), "%s/blobs", repo);
	CHECK_INT_EQ(count_entries(path, ".incomplete"), 0);
	CHECK_INT_EQ(count_entries(path, ""), 4);
	pathf(path, sizeof(path), "%s/.locks/models--org--tiny/%s.lock", d->cache, sha);
	CHECK(exists(path));

	/* first by revision, then by the commit it answered */
	CHECK_INT_EQ(log_count(&d->sv, "GET /org/tiny/resolve/main/config.json 200"), 1);
	pathf(line, sizeof(line), "GET /org/tiny/resolve/%s/model.safetensors 302", commit);
	CHECK_INT_EQ(log_count(&d->sv, line), 1);
	pathf(line, sizeof(line), "GET /cdn/%s 200", sha);
	CHECK_INT_EQ(log_count(&d->sv, line), 1);
	pathf(line, sizeof(line), "GET /org/tiny/resolve/%s/tokenizer.json 404", commit);
	CHECK_INT_EQ(log_count(&d->sv, line), 1);
	CHECK(prog.calls >= 1 && prog.done == 998 && prog.total == 998);

	/* the server gone, the cache answers */
	server_stop(&d->sv);
	again = RESOLVE_OK("org/tiny", &o);
	CHECK(again != NULL && strcmp(again, dir) == 0);
	free(again);
	o.allow_download = false;
	again = RESOLVE_OK("org/tiny", &o);
	CHECK(again != NULL && strcmp(again, dir) == 0);
	free(again);
	free(dir);
}

UNIT_TEST(download_layout)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_layout_body(&d);
	dl_end(&d);
}

/* The shards the index names, read back through the engine's index reader. */
static void
download_sharded_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	char		path[PATHLEN],
				sha[80];
	char	   *dir = RESOLVE_OK("org/sharded", &o);
	SaeSafetensorsIndex *ix = NULL;
	SaeError	err;

	REQUIRE(dir != NULL);
	check_linked(d, dir, "model-00001-of-00002.safetensors", "../../",
				 digest(d, "sha256", "org/sharded/model-00001-of-00002.safetensors", sha, sizeof(sha)),
				 "org/sharded/model-00001-of-00002.safetensors");
	check_linked(d, dir, "model-00002-of-00002.safetensors", "../../",
				 digest(d, "sha256", "org/sharded/model-00002-of-00002.safetensors", sha, sizeof(sha)),
				 "org/sharded/model-00002-of-00002.safetensors");
	pathf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_OK);
	if (ix != NULL)
		CHECK_INT_EQ(sae_safetensors_index_count(ix), 4);
	sae_safetensors_index_close(ix);
	pathf(path, sizeof(path), "%s/model.safetensors", dir);
	CHECK(!exists(path));
	CHECK_INT_EQ(log_count(&d->sv, "/vocab.json"), 0);
	free(dir);
}

UNIT_TEST(download_sharded)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_sharded_body(&d);
	dl_end(&d);
}

/* Files in a subfolder: one more ../ per level. */
static void
download_nested_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	char		path[PATHLEN],
				sha[80];
	char	   *dir = RESOLVE_OK("org/nested", &o);
	SaeSafetensorsIndex *ix = NULL;
	SaeError	err;

	REQUIRE(dir != NULL);
	check_linked(d, dir, "w/part-1.safetensors", "../../../",
				 digest(d, "sha256", "org/nested/w/part-1.safetensors", sha, sizeof(sha)),
				 "org/nested/w/part-1.safetensors");
	check_linked(d, dir, "w/part-2.safetensors", "../../../",
				 digest(d, "sha256", "org/nested/w/part-2.safetensors", sha, sizeof(sha)),
				 "org/nested/w/part-2.safetensors");
	pathf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	CHECK_INT_EQ(sae_safetensors_index_open(path, &ix, &err), SAE_OK);
	sae_safetensors_index_close(ix);
	free(dir);
}

UNIT_TEST(download_nested)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_nested_body(&d);
	dl_end(&d);
}

/* 404s of the preferred files fall back, in order, to pytorch_model.bin. */
static void
download_fallback_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	char		path[PATHLEN * 2],
				sha[80];
	char	   *dir = RESOLVE_OK("org/bin", &o);
	const char *commit;

	REQUIRE(dir != NULL);
	commit = strrchr(dir, '/') + 1;
	check_linked(d, dir, "pytorch_model.bin", "../../",
				 digest(d, "sha256", "org/bin/pytorch_model.bin", sha, sizeof(sha)), "org/bin/pytorch_model.bin");
	pathf(path, sizeof(path), "%s/models--org--bin/.no_exist/%s/model.safetensors", d->cache, commit);
	CHECK(exists(path));
	pathf(path, sizeof(path), "%s/models--org--bin/.no_exist/%s/model.safetensors.index.json", d->cache, commit);
	CHECK(exists(path));
	pathf(path, sizeof(path), "%s/model.safetensors", dir);
	CHECK(!exists(path));
	CHECK_INT_EQ(log_count(&d->sv, "model.safetensors 404"), 1);
	CHECK_INT_EQ(log_count(&d->sv, "model.safetensors.index.json 404"), 1);
	CHECK_INT_EQ(log_count(&d->sv, "pytorch_model.bin 302"), 1);
	free(dir);

	/* an empty file is a blob too (git's empty blob id) */
	dir = RESOLVE_OK("org/emptymerges", &o);
	REQUIRE(dir != NULL);
	check_linked(d, dir, "merges.txt", "../../", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391",
				 "org/emptymerges/merges.txt");
	free(dir);
}

UNIT_TEST(download_fallback)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_fallback_body(&d);
	dl_end(&d);
}

/* Repos, revisions and files that are not there; a server that is not there. */
static void
download_errors_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	SaeError	err;

	RESOLVE_FAILS("org/noconfig", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "has no config.json");
	RESOLVE_FAILS("org/absent", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "HTTP 404 RepositoryNotFound");
	CHECK_CONTAINS(err.message, "/org/absent/resolve/main/config.json");
	o.revision = "v9";
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "RevisionNotFound");
	o.revision = NULL;
	RESOLVE_FAILS("org/noweights", &o, SAE_ERR_NOT_SUPPORTED, &err);
	CHECK_CONTAINS(err.message, "has none of model.safetensors");
	RESOLVE_FAILS("org/novocab", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "has no merges.txt");
	o.endpoint = "http://127.0.0.1:1";
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_IO, &err);
	CHECK_CONTAINS(err.message, "http://127.0.0.1:1/org/tiny/resolve/main/config.json");
	CHECK_CONTAINS(err.hint, "can reach");
}

UNIT_TEST(download_errors)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_errors_body(&d);
	dl_end(&d);
}

/* No blob, no incomplete file, no link anywhere under cache/models--org--tiny. */
static void
check_nothing_kept(const Dl *d, int blobs_expected)
{
	char		path[PATHLEN];

	pathf(path, sizeof(path), "%s/models--org--tiny/blobs", d->cache);
	CHECK_INT_EQ(count_entries(path, ".incomplete"), 0);
	CHECK_INT_EQ(count_entries(path, ""), blobs_expected);
}

/* A token: 401 without (hint: HF_TOKEN), with a wrong one, then from the option, HF_TOKEN and a file. */
static void
download_token_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	char		cache2[PATHLEN],
				cache3[PATHLEN],
				token_file[PATHLEN];
	SaeError	err;
	char	   *dir;

	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "HTTP 401");
	CHECK_CONTAINS(err.hint, "HF_TOKEN");
	check_nothing_kept(d, 0);
	o.token = "wrong";
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.hint, "token sent may lack access");
	o.token = "bad\r\nX-Injected: 1";
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_INVALID_PARAMETER, &err);
	CHECK_CONTAINS(err.message, "token");
	o.token = TOKEN;
	dir = RESOLVE_OK("org/tiny", &o);
	free(dir);

	o = dl_opts(d);
	o.cache_dir = in_scratch(&d->s, "cache2", cache2, sizeof(cache2));
	setenv("HF_TOKEN", TOKEN, 1);
	dir = RESOLVE_OK("org/tiny", &o);
	free(dir);
	unsetenv("HF_TOKEN");

	o.cache_dir = in_scratch(&d->s, "cache3", cache3, sizeof(cache3));
	put_text(in_scratch(&d->s, "token", token_file, sizeof(token_file)), TOKEN "\n");
	setenv("HF_TOKEN_PATH", token_file, 1);
	dir = RESOLVE_OK("org/tiny", &o);
	free(dir);
	/* the token goes to the hub, never to the CDN (another origin) */
	CHECK_INT_EQ(log_count(&d->sv, "/resolve/main/config.json 200 auth"), 3);
	CHECK_INT_EQ(log_count(&d->sv, "/model.safetensors 302 auth"), 3);
	CHECK_INT_EQ(log_count(&d->sv, " 200 noauth"), 3);
	CHECK_INT_EQ(log_count(&d->sv, "GET /cdn/"), 3);
}

UNIT_TEST(download_token)
{
	Dl			d;

	if (dl_begin(&d, TOKEN))
		download_token_body(&d);
	dl_end(&d);
}

/* should_stop: true once blobs/ holds a *.incomplete whose name is at least min_len long. */
typedef struct StopWhen
{
	char		blobs[PATHLEN];
	size_t		min_len;
	int			stops;
} StopWhen;

/* Stop as soon as a matching partial blob exists, i.e. mid-download. */
static bool
stop_when_incomplete(void *arg)
{
	StopWhen   *w = arg;
	DIR		   *dir = opendir(w->blobs);
	struct dirent *e;
	bool		stop = false;

	while (dir != NULL && !stop && (e = readdir(dir)) != NULL)
	{
		size_t		l = strlen(e->d_name);

		stop = l > 11 && strcmp(e->d_name + l - 11, ".incomplete") == 0 && l - 11 >= w->min_len;
	}
	if (dir != NULL)
		closedir(dir);
	w->stops += stop;
	return stop;
}

/* Cancelled mid-file: no partial blob, no link; the next resolve finishes. */
static void
download_cancel_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	StopWhen	w;
	SaeError	err;
	char		path[PATHLEN * 2];
	char	   *dir;

	memset(&w, 0, sizeof(w));
	pathf(w.blobs, sizeof(w.blobs), "%s/models--org--tiny/blobs", d->cache);
	o.should_stop = stop_when_incomplete;
	o.stop_arg = &w;

	/* during the first file (config.json) */
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_CANCELLED, &err);
	CHECK_CONTAINS(err.message, "cancelled");
	CHECK(w.stops >= 1);
	check_nothing_kept(d, 0);
	pathf(path, sizeof(path), "%s/models--org--tiny/snapshots", d->cache);
	CHECK_INT_EQ(count_entries(path, ""), 0);

	/* during the redirected model.safetensors (a 64-hex blob name) */
	w.min_len = 64;
	w.stops = 0;
	RESOLVE_FAILS("org/tiny", &o, SAE_ERR_CANCELLED, &err);
	CHECK(w.stops >= 1);
	check_nothing_kept(d, 1);	/* config.json's blob only */
	pathf(path, sizeof(path), "%s/models--org--tiny/refs/main", d->cache);
	CHECK(!exists(path));

	o.should_stop = NULL;
	dir = RESOLVE_OK("org/tiny", &o);
	REQUIRE(dir != NULL);
	pathf(path, sizeof(path), "%s/model.safetensors", dir);
	CHECK(exists(path));
	check_nothing_kept(d, 4);
	free(dir);
}

UNIT_TEST(download_cancel)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_cancel_body(&d);
	dl_end(&d);
}

/* A lock held by "another download" (our own flock), given up once resolve waits for it. */
typedef struct LockHolder
{
	int			fd;				/* the held lock, or -1 once released */
	int			waits;			/* progress reports of waiting (done = -1) */
	int64_t		last_done;
} LockHolder;

/* Progress: count the reports that we wait for the lock. */
static void
note_waiting(void *arg, const char *file, int64_t done, int64_t total)
{
	LockHolder *h = arg;

	if (strcmp(file, "model.safetensors") == 0)
	{
		h->waits += (done == -1);
		h->last_done = done;
	}
}

/* should_stop that releases the lock once resolve said it waits for it. */
static bool
release_when_waiting(void *arg)
{
	LockHolder *h = arg;

	if (h->fd >= 0 && h->waits > 0)
	{
		close(h->fd);
		h->fd = -1;
	}
	return false;
}

/* Someone else writes the blob: we wait for its lock (saying so), then download. */
static void
download_lock_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	LockHolder	h = {-1, 0, 0};
	char		lock[PATHLEN * 2],
				blobs[PATHLEN],
				sha[80];
	char	   *dir;

	digest(d, "sha256", "org/tiny/model.safetensors", sha, sizeof(sha));
	pathf(lock, sizeof(lock), "%s/.locks/models--org--tiny/%s.lock", d->cache, sha);
	make_parents(lock);
	h.fd = open(lock, O_RDWR | O_CREAT, 0666);
	REQUIRE(h.fd >= 0);
	REQUIRE(flock(h.fd, LOCK_EX | LOCK_NB) == 0);
	o.should_stop = release_when_waiting;
	o.stop_arg = &h;
	o.progress = note_waiting;
	o.progress_arg = &h;
	dir = RESOLVE_OK("org/tiny", &o);
	if (h.fd >= 0)
		close(h.fd);
	CHECK_INT_EQ(h.waits, 1);
	CHECK_INT_EQ(h.last_done, 998);
	CHECK_MSG(log_count(&d->sv, "/model.safetensors 302") == 2,
			  "model.safetensors asked %d times, want 2 (once locked out, once after)",
			  log_count(&d->sv, "/model.safetensors 302"));
	pathf(blobs, sizeof(blobs), "%s/models--org--tiny/blobs", d->cache);
	CHECK_INT_EQ(count_entries(blobs, ".incomplete"), 0);
	if (dir != NULL)
		check_linked(d, dir, "model.safetensors", "../../", sha, "org/tiny/model.safetensors");
	free(dir);
}

UNIT_TEST(download_lock)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_lock_body(&d);
	dl_end(&d);
}

/* A blob the cache has already is linked, not written again; a commit as revision writes no ref. */
static void
download_reuse_body(Dl *d)
{
	SaeHubOptions o = dl_opts(d);
	char		path[PATHLEN * 2],
				blob[PATHLEN * 2],
				sha[80],
				cache2[PATHLEN],
				commit[48];
	struct stat before,
				after;
	char	   *dir = RESOLVE_OK("org/tiny", &o),
			   *again;

	REQUIRE(dir != NULL);
	pathf(commit, sizeof(commit), "%s", strrchr(dir, '/') + 1);
	digest(d, "sha256", "org/tiny/model.safetensors", sha, sizeof(sha));
	pathf(blob, sizeof(blob), "%s/models--org--tiny/blobs/%s", d->cache, sha);
	pathf(path, sizeof(path), "%s/model.safetensors", dir);
	REQUIRE(stat(blob, &before) == 0);
	REQUIRE(unlink(path) == 0);
	again = RESOLVE_OK("org/tiny", &o);
	CHECK(again != NULL && strcmp(again, dir) == 0);
	CHECK(stat(blob, &after) == 0 && after.st_ino == before.st_ino);
	check_linked(d, dir, "model.safetensors", "../../", sha, "org/tiny/model.safetensors");
	free(again);
	free(dir);

	o.cache_dir = in_scratch(&d->s, "cache2", cache2, sizeof(cache2));
	o.revision = commit;
	dir = RESOLVE_OK("org/tiny", &o);
	CHECK(dir != NULL && strstr(dir, commit) != NULL);
	pathf(path, sizeof(path), "%s/models--org--tiny/refs", cache2);
	CHECK(!exists(path));
	pathf(path, sizeof(path), "GET /org/tiny/resolve/%s/config.json 200", commit);
	CHECK_INT_EQ(log_count(&d->sv, path), 1);
	free(dir);
}

UNIT_TEST(download_reuse)
{
	Dl			d;

	if (dl_begin(&d, NULL))
		download_reuse_body(&d);
	dl_end(&d);
}
