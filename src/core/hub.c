/*
 * hub.c — model names to folders: aliases, the hub cache, downloads (see
 * hub.h).
 *
 * Layout and URLs follow huggingface_hub (reference/models.md §2):
 *
 *   <cache>/models--<org>--<name>/refs/<revision>          commit sha, no newline
 *   <cache>/models--<org>--<name>/blobs/<etag>             the bytes
 *   <cache>/models--<org>--<name>/snapshots/<commit>/<f>   -> ../../blobs/<etag>
 *   <cache>/models--<org>--<name>/.no_exist/<commit>/<f>   "<f> is not in the repo"
 *   <cache>/.locks/models--<org>--<name>/<etag>.lock       flock'd while writing
 *
 *   GET {endpoint}/{repo}/resolve/{revision}/{file}
 *
 * The first file is asked for by revision; its X-Repo-Commit names the
 * snapshot, and every later file is asked for by that commit, so a branch
 * that moves during a download cannot mix two commits in one snapshot.
 * A blob is written as blobs/<etag>.incomplete under the same lock
 * huggingface_hub takes, then renamed; the snapshot symlink is made only
 * once its blob is complete, so a failure at any point leaves neither a
 * partial blob nor a dangling link.
 */
#include "hub.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define DEFAULT_REVISION "main"

/* Longest repo id, revision or file name accepted. */
#define NAME_MAX_LEN 200

/* Paths and names in messages are cut to this many bytes. */
#define SHOWN 160

#define COMMIT_LEN 40
#define ETAG_MAX_LEN 128
#define HEADER_MAX 256
#define INDEX_MAX_BYTES ((long) 64 * 1024 * 1024)
#define SMALL_FILE_MAX 8192		/* refs and token files */

/* Network limits: give up on a connect after this, or when a transfer
 * stays below LOW_SPEED_BYTES per second for LOW_SPEED_SECONDS. */
#define CONNECT_TIMEOUT_SECONDS 30L
#define LOW_SPEED_BYTES 1024L
#define LOW_SPEED_SECONDS 60L
#define MAX_REDIRECTS 10L

/* While another process holds a blob's lock, look again this often. */
#define LOCK_POLL_NS 100000000L

/* The three groups of files a usable snapshot has. */
#define HAVE_CONFIG 1
#define HAVE_WEIGHTS 2
#define HAVE_TOKENIZER 4
#define HAVE_ALL 7

static const char *const weight_files = "model.safetensors, model.safetensors.index.json (and its shards) "
	"or pytorch_model.bin";
static const char *const tokenizer_files = "tokenizer.json, or vocab.json and merges.txt";

/* ------------------------------------------------------------------ */
/* Strings and names                                                   */
/* ------------------------------------------------------------------ */

static char *str_printf(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* A malloc'd printf; NULL when out of memory.  Paths are built with it. */
static char *
str_printf(const char *fmt,...)
{
	va_list		ap;
	int			n;
	char	   *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t) n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* The out-of-memory error, one spelling for every allocation. */
static int
oom(SaeError *err)
{
	return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "out of memory");
}

/* ASCII only: isalnum would follow the server's locale. */
static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A full commit sha: revisions like this are not looked up in refs/. */
static bool
is_commit(const char *s)
{
	size_t		n = strspn(s, "0123456789abcdefABCDEF");

	return n == COMMIT_LEN && s[n] == '\0';
}

/*
 * Repo ids, revisions and file names come from SQL users and from
 * downloaded index files, and become paths and URLs: only
 * [A-Za-z0-9._/-], not absolute, no "..", no empty or "." component.
 */
static bool
name_is_safe(const char *s)
{
	size_t		len = strlen(s);

	if (len == 0 || len > NAME_MAX_LEN || s[0] == '/' || s[len - 1] == '/' ||
		strstr(s, "..") != NULL || strstr(s, "//") != NULL)
		return false;
	for (const char *p = s; *p; p++)
		if (!is_alnum(*p) && *p != '.' && *p != '_' && *p != '/' && *p != '-')
			return false;
	return strcmp(s, ".") != 0 && strncmp(s, "./", 2) != 0 && strstr(s, "/./") == NULL &&
		!(len >= 2 && strcmp(s + len - 2, "/.") == 0);
}

/*
 * A repo id is "name" or "org/name"; "--" is the separator of the cache
 * folder's name, so it cannot appear in either part (the hub forbids it
 * too).
 */
static bool
repo_id_is_safe(const char *s)
{
	const char *slash = strchr(s, '/');

	return name_is_safe(s) && strstr(s, "--") == NULL && (slash == NULL || strchr(slash + 1, '/') == NULL);
}

/* A blob name from an ETag header: it becomes a file name in blobs/. */
static bool
etag_is_safe(const char *s)
{
	size_t		len = strlen(s);

	if (len == 0 || len > ETAG_MAX_LEN || s[0] == '.')
		return false;
	for (const char *p = s; *p; p++)
		if (!is_alnum(*p) && *p != '.' && *p != '_' && *p != '-')
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* TransformerLens aliases                                             */
/* ------------------------------------------------------------------ */

typedef struct HubAlias
{
	const char *alias;			/* a TransformerLens name */
	const char *repo;			/* the repo it loads */
	const char *legacy;			/* the repo's pre-2024 id without org, or NULL */
	int			n_ctx;			/* TransformerLens's context if it overrides the config */
} HubAlias;

/*
 * TransformerLens's names (loading_from_pretrained.py MODEL_ALIASES and
 * OFFICIAL_MODEL_NAMES) for the model families the engine runs.  The
 * GPT-2 repos moved under openai-community and distilbert in 2024; their
 * old ids (what TransformerLens still asks transformers for) redirect, and
 * are the cache folders of models fetched under the old name.
 */
static const HubAlias aliases[] = {
	{"gpt2", "openai-community/gpt2", "gpt2", 0},
	{"gpt2-small", "openai-community/gpt2", "gpt2", 0},
	{"gpt2-medium", "openai-community/gpt2-medium", "gpt2-medium", 0},
	{"gpt2-large", "openai-community/gpt2-large", "gpt2-large", 0},
	{"gpt2-xl", "openai-community/gpt2-xl", "gpt2-xl", 0},
	{"distilgpt2", "distilbert/distilgpt2", "distilgpt2", 0},
	{"distillgpt2", "distilbert/distilgpt2", "distilgpt2", 0},
	{"distill-gpt2", "distilbert/distilgpt2", "distilgpt2", 0},
	{"distil-gpt2", "distilbert/distilgpt2", "distilgpt2", 0},
	{"gpt2-xs", "distilbert/distilgpt2", "distilgpt2", 0},
	{"gpt-neo-125M", "EleutherAI/gpt-neo-125M", NULL, 0},
	{"gpt-neo-small", "EleutherAI/gpt-neo-125M", NULL, 0},
	{"neo-small", "EleutherAI/gpt-neo-125M", NULL, 0},
	{"neo", "EleutherAI/gpt-neo-125M", NULL, 0},
	{"gpt-neo-1.3B", "EleutherAI/gpt-neo-1.3B", NULL, 0},
	{"gpt-neo-medium", "EleutherAI/gpt-neo-1.3B", NULL, 0},
	{"neo-medium", "EleutherAI/gpt-neo-1.3B", NULL, 0},
	{"gpt-neo-2.7B", "EleutherAI/gpt-neo-2.7B", NULL, 0},
	{"gpt-neo-large", "EleutherAI/gpt-neo-2.7B", NULL, 0},
	{"neo-large", "EleutherAI/gpt-neo-2.7B", NULL, 0},
	{"tiny-stories-1M", "roneneldan/TinyStories-1M", NULL, 512},
	{"tiny-stories-3M", "roneneldan/TinyStories-3M", NULL, 512},
	{"tiny-stories-8M", "roneneldan/TinyStories-8M", NULL, 512},
	{"tiny-stories-28M", "roneneldan/TinyStories-28M", NULL, 512},
	{"tiny-stories-33M", "roneneldan/TinyStories-33M", NULL, 512},
	{"tiny-stories-instruct-1M", "roneneldan/TinyStories-Instruct-1M", NULL, 512},
	{"tiny-stories-instruct-3M", "roneneldan/TinyStories-Instruct-3M", NULL, 512},
	{"tiny-stories-instruct-8M", "roneneldan/TinyStories-Instruct-8M", NULL, 512},
	{"tiny-stories-instruct-28M", "roneneldan/TinyStories-Instruct-28M", NULL, 512},
	{"tiny-stories-instruct-33M", "roneneldan/TinyStories-Instruct-33M", NULL, 512},
	{"tiny-stories-1L-21M", "roneneldan/TinyStories-1Layer-21M", NULL, 512},
	{"tiny-stories-2L-33M", "roneneldan/TinyStories-2Layers-33M", NULL, 512},
	/* sic: the repo's name is misspelled on the hub */
	{"tiny-stories-instruct-1L-21M", "roneneldan/TinyStories-Instuct-1Layer-21M", NULL, 512},
	{"tiny-stories-instruct-2L-33M", "roneneldan/TinyStories-Instruct-2Layers-33M", NULL, 512},
};

/*
 * The row for an alias or an official repo id; case-insensitive because
 * TransformerLens lowercases names before it looks them up.
 */
static const HubAlias *
find_alias(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (strcasecmp(name, aliases[i].alias) == 0 || strcasecmp(name, aliases[i].repo) == 0)
			return &aliases[i];
	return NULL;
}

const char *
sae_hub_alias_repo(const char *name)
{
	const HubAlias *a = find_alias(name);

	return a ? a->repo : NULL;
}

int
sae_hub_alias_n_ctx(const char *name)
{
	const HubAlias *a = find_alias(name);

	return a ? a->n_ctx : 0;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

/* A regular file, after following symlinks: a dangling link is absent. */
static bool
is_file(const char *path)
{
	struct stat sb;

	return path != NULL && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* is_file on dir/file (false when out of memory). */
static bool
has_file(const char *dir, const char *file)
{
	char	   *path = str_printf("%s/%s", dir, file);
	bool		ok = is_file(path);

	free(path);
	return ok;
}

/* mkdir -p: the cache's folders appear on first use. */
static int
make_dirs(const char *path, SaeError *err)
{
	char	   *p = strdup(path);
	int			rc = SAE_OK;

	if (p == NULL)
		return oom(err);
	for (char *s = p + (p[0] != '\0'); rc == SAE_OK; s++)
	{
		bool		end = (*s == '\0');

		if (*s != '/' && !end)
			continue;
		*s = '\0';
		if (mkdir(p, 0777) != 0 && errno != EEXIST)
			rc = sae_error(err, SAE_ERR_IO, "could not create folder \"%.*s\": %s",
						   SHOWN, p, strerror(errno));
		if (end)
			break;
		*s = '/';
	}
	free(p);
	return rc;
}

/* make_dirs for the folder that holds path. */
static int
make_parent(const char *path, SaeError *err)
{
	char	   *dir = strdup(path);
	char	   *slash = dir ? strrchr(dir, '/') : NULL;
	int			rc = SAE_OK;

	if (dir == NULL)
		return oom(err);
	if (slash != NULL && slash != dir)
	{
		*slash = '\0';
		rc = make_dirs(dir, err);
	}
	free(dir);
	return rc;
}

/*
 * A whole small file (refs, token, index) as a NUL-terminated string;
 * *text NULL if it does not exist.  Errors are for files that exist and
 * cannot be read.
 */
static int
read_text(const char *path, long max, char **text, size_t *len, SaeError *err)
{
	FILE	   *fp = fopen(path, "rb");
	long		size;
	char	   *buf;

	*text = NULL;
	*len = 0;
	if (fp == NULL)
		return errno == ENOENT || errno == ENOTDIR ? SAE_OK :
			sae_error(err, SAE_ERR_IO, "could not open \"%.*s\": %s", SHOWN, path, strerror(errno));
	if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0 ||
		size > max)
	{
		fclose(fp);
		return sae_error(err, SAE_ERR_INVALID_DATA, "\"%.*s\" is not a readable file of at most %ld bytes",
						 SHOWN, path, max);
	}
	if ((buf = malloc((size_t) size + 1)) == NULL)
	{
		fclose(fp);
		return oom(err);
	}
	if (fread(buf, 1, (size_t) size, fp) != (size_t) size)
	{
		fclose(fp);
		free(buf);
		return sae_error(err, SAE_ERR_IO, "could not read \"%.*s\"", SHOWN, path);
	}
	fclose(fp);
	buf[size] = '\0';
	*text = buf;
	*len = (size_t) size;
	return SAE_OK;
}

/* The text without surrounding whitespace (in place; refs and tokens). */
static char *
trim(char *s)
{
	char	   *end = s + strlen(s);

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

/* Write text to path through a temporary file, so readers never see half. */
static int
write_file_atomic(const char *path, const char *text, SaeError *err)
{
	char	   *tmp = str_printf("%s.sae-tmp-%ld", path, (long) getpid());
	FILE	   *fp;
	int			rc = SAE_OK;

	if (tmp == NULL)
		return oom(err);
	if ((rc = make_parent(path, err)) == SAE_OK)
	{
		bool		ok = (fp = fopen(tmp, "wb")) != NULL;

		ok = ok && fputs(text, fp) >= 0;
		ok = (fp == NULL || fclose(fp) == 0) && ok && rename(tmp, path) == 0;
		if (!ok)
		{
			rc = sae_error(err, SAE_ERR_IO, "could not write \"%.*s\": %s", SHOWN, path, strerror(errno));
			unlink(tmp);
		}
	}
	free(tmp);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Options and the environment                                         */
/* ------------------------------------------------------------------ */

/* What one sae_hub_resolve works with, options and environment merged. */
typedef struct Hub
{
	const SaeHubOptions *opt;
	const char *name;			/* as the caller gave it */
	char	   *cache;			/* the hub cache folder */
	char	   *endpoint;		/* no trailing '/' */
	char	   *token;			/* NULL: none */
	const char *revision;
	bool		download;		/* allowed, and not turned off by $HF_HUB_OFFLINE */
	bool		offline_env;	/* $HF_HUB_OFFLINE turned downloads off */
	const char *repos[2];		/* repo ids to look for; downloads go to the first */
	int			n_repos;
} Hub;

/* An environment variable, with "" counting as unset. */
static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* huggingface_hub's HF_HOME: $HF_HOME, else under $XDG_CACHE_HOME or $HOME. */
static char *
hf_home(void)
{
	if (env("HF_HOME"))
		return strdup(env("HF_HOME"));
	if (env("XDG_CACHE_HOME"))
		return str_printf("%s/huggingface", env("XDG_CACHE_HOME"));
	if (env("HOME"))
		return str_printf("%s/.cache/huggingface", env("HOME"));
	return NULL;
}

/* The cache folder: the option, else the variables huggingface_hub reads. */
static int
find_cache(Hub *h, SaeError *err)
{
	char	   *home;

	if (h->opt->cache_dir != NULL && h->opt->cache_dir[0] != '\0')
		h->cache = strdup(h->opt->cache_dir);
	else if (env("HF_HUB_CACHE") || env("HUGGINGFACE_HUB_CACHE"))
		h->cache = strdup(env("HF_HUB_CACHE") ? env("HF_HUB_CACHE") : env("HUGGINGFACE_HUB_CACHE"));
	else if ((home = hf_home()) != NULL)
	{
		h->cache = str_printf("%s/hub", home);
		free(home);
	}
	else
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "cannot tell where the Hugging Face cache is: HOME is not set");
		return sae_error_hint(err, "Set HF_HUB_CACHE or HF_HOME in the server's environment.");
	}
	return h->cache ? SAE_OK : oom(err);
}

/* The endpoint without trailing '/'; only http(s) URLs. */
static int
find_endpoint(Hub *h, SaeError *err)
{
	const char *e = h->opt->endpoint ? h->opt->endpoint : env("HF_ENDPOINT") ? env("HF_ENDPOINT") : DEFAULT_ENDPOINT;
	size_t		len;

	if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0)
		return sae_error(err, SAE_ERR_INVALID_PARAMETER,
						 "the Hugging Face endpoint \"%.*s\" is not an http:// or https:// URL", SHOWN, e);
	if ((h->endpoint = strdup(e)) == NULL)
		return oom(err);
	len = strlen(h->endpoint);
	while (len > 0 && h->endpoint[len - 1] == '/')
		h->endpoint[--len] = '\0';
	return SAE_OK;
}

/* The token file huggingface_hub writes at login, if there is one. */
static int
read_token_file(Hub *h, SaeError *err)
{
	char	   *home = env("HF_TOKEN_PATH") ? NULL : hf_home();
	char	   *path = env("HF_TOKEN_PATH") ? strdup(env("HF_TOKEN_PATH")) :
		home ? str_printf("%s/token", home) : NULL;
	char	   *text = NULL;
	size_t		len;
	int			rc = SAE_OK;

	free(home);
	if (path != NULL)
		rc = read_text(path, SMALL_FILE_MAX, &text, &len, err);
	if (text != NULL && trim(text)[0] != '\0')
		h->token = strdup(trim(text));
	free(text);
	free(path);
	return rc;
}

/*
 * The token: the option ("" for none), else $HF_TOKEN, else the token
 * file.  It goes into an HTTP header, so only visible ASCII.
 */
static int
find_token(Hub *h, SaeError *err)
{
	int			rc = SAE_OK;

	if (h->opt->token != NULL || env("HF_TOKEN"))
	{
		const char *t = h->opt->token ? h->opt->token : env("HF_TOKEN");

		if (t[0] != '\0' && (h->token = strdup(t)) == NULL)
			return oom(err);
	}
	else if ((rc = read_token_file(h, err)) != SAE_OK)
		return rc;
	for (const char *p = h->token; p && *p; p++)
		if (*p <= ' ' || *p > '~')
			return sae_error(err, SAE_ERR_INVALID_PARAMETER,
							 "the Hugging Face token contains a character that cannot be sent in an HTTP header");
	return SAE_OK;
}

/* huggingface_hub's truthy values of HF_HUB_OFFLINE. */
static bool
env_is_true(const char *name)
{
	const char *v = env(name);

	return v != NULL && (strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0 ||
						 strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0);
}

/* Check the name and revision, and list the repo ids to look for. */
static int
find_repos(Hub *h, SaeError *err)
{
	const HubAlias *a = find_alias(h->name);

	if (!is_commit(h->revision) && !name_is_safe(h->revision))
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "invalid revision \"%.*s\"", SHOWN, h->revision);
		return sae_error_hint(err, "A revision is a branch, a tag or a commit sha: letters, digits and ._/- "
							  "without \"..\".");
	}
	if (a != NULL)
	{
		h->repos[h->n_repos++] = a->repo;
		if (a->legacy != NULL)
			h->repos[h->n_repos++] = a->legacy;
		return SAE_OK;
	}
	if (!repo_id_is_safe(h->name))
	{
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "invalid model name \"%.*s\"", SHOWN, h->name);
		return sae_error_hint(err, "Give a TransformerLens name such as gpt2 or tiny-stories-1L-21M, a Hugging "
							  "Face repo id (\"org/name\": letters, digits and ._- only), or the path of a "
							  "folder with the model files.");
	}
	h->repos[h->n_repos++] = h->name;
	return SAE_OK;
}

/* Merge options and environment; on error the caller still calls hub_free. */
static int
hub_init(Hub *h, const char *name, const SaeHubOptions *opt, SaeError *err)
{
	static const SaeHubOptions defaults;
	int			rc;

	memset(h, 0, sizeof(*h));
	h->opt = opt ? opt : &defaults;
	h->name = name ? name : "";
	h->revision = h->opt->revision && h->opt->revision[0] ? h->opt->revision : DEFAULT_REVISION;
	h->offline_env = h->opt->allow_download && env_is_true("HF_HUB_OFFLINE");
	h->download = h->opt->allow_download && !h->offline_env;
	if ((rc = find_repos(h, err)) != SAE_OK || (rc = find_cache(h, err)) != SAE_OK)
		return rc;
	if (!h->download)
		return SAE_OK;
	if ((rc = find_endpoint(h, err)) != SAE_OK)
		return rc;
	return find_token(h, err);
}

/* Everything hub_init allocated. */
static void
hub_free(Hub *h)
{
	free(h->cache);
	free(h->endpoint);
	free(h->token);
}

/* ------------------------------------------------------------------ */
/* The cache                                                           */
/* ------------------------------------------------------------------ */

/* <cache>/models--org--name: huggingface_hub's repo_folder_name. */
static char *
repo_dir(const char *cache, const char *repo)
{
	const char *slash = strchr(repo, '/');

	if (slash == NULL)
		return str_printf("%s/models--%s", cache, repo);
	return str_printf("%s/models--%.*s--%s", cache, (int) (slash - repo), repo, slash + 1);
}

/*
 * The commit a revision names in a cached repo: the revision itself when
 * it is a sha, else the content of refs/<revision>.  false when unknown.
 */
static bool
cached_commit(const char *dir, const char *revision, char commit[COMMIT_LEN + 1])
{
	char	   *path,
			   *text = NULL;
	size_t		len;
	bool		ok;

	if (is_commit(revision))
	{
		memcpy(commit, revision, COMMIT_LEN + 1);
		return true;
	}
	if ((path = str_printf("%s/refs/%s", dir, revision)) == NULL)
		return false;
	read_text(path, SMALL_FILE_MAX, &text, &len, NULL);
	ok = text != NULL && is_commit(trim(text));
	if (ok)
		memcpy(commit, trim(text), COMMIT_LEN + 1);
	free(text);
	free(path);
	return ok;
}

/* A list of malloc'd strings (the shards of an index). */
typedef struct StrList
{
	char	  **items;
	size_t		n;
} StrList;

/* Free the strings and the list. */
static void
strlist_free(StrList *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

/* Add s unless it is there already (a weight_map names each shard many times). */
static int
strlist_add_unique(StrList *l, const char *s, SaeError *err)
{
	char	  **grown;

	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], s) == 0)
			return SAE_OK;
	if ((grown = realloc(l->items, sizeof(char *) * (l->n + 1))) == NULL)
		return oom(err);
	l->items = grown;
	if ((l->items[l->n] = strdup(s)) == NULL)
		return oom(err);
	l->n++;
	return SAE_OK;
}

/* The distinct shard files of a parsed index, each a safe relative name. */
static int
weight_map_shards(const SaeJson *root, const char *path, StrList *out, SaeError *err)
{
	const SaeJson *map = root->type == SAE_JSON_OBJECT ? sae_json_get(root, "weight_map") : NULL;
	int			rc = SAE_OK;

	if (map == NULL || map->type != SAE_JSON_OBJECT || map->count == 0)
		return sae_error(err, SAE_ERR_INVALID_DATA, "\"%.*s\" has no \"weight_map\" object", SHOWN, path);
	for (size_t i = 0; i < map->count && rc == SAE_OK; i++)
	{
		const SaeJson *v = &map->items[i];

		if (v->type != SAE_JSON_STRING || strlen(v->string) != v->length || !name_is_safe(v->string))
			rc = sae_error(err, SAE_ERR_INVALID_DATA,
						   "\"%.*s\": the weight_map maps \"%.100s\" to a file name that is not a relative "
						   "path inside the repo", SHOWN, path, map->keys[i]);
		else
			rc = strlist_add_unique(out, v->string, err);
	}
	return rc;
}

/* The shards model.safetensors.index.json in dir names. */
static int
index_shards(const char *dir, StrList *out, SaeError *err)
{
	char	   *path = str_printf("%s/model.safetensors.index.json", dir);
	char	   *text = NULL;
	size_t		len = 0;
	SaeJson    *root = NULL;
	SaeError	jerr;
	int			rc;

	out->items = NULL;
	out->n = 0;
	if (path == NULL)
		return oom(err);
	rc = read_text(path, INDEX_MAX_BYTES, &text, &len, err);
	if (rc == SAE_OK && text == NULL)
		rc = sae_error(err, SAE_ERR_IO, "\"%.*s\" disappeared", SHOWN, path);
	if (rc == SAE_OK && (rc = sae_json_parse(text, len, &root, &jerr)) != SAE_OK)
		sae_error(err, (SaeErrCode) rc, "\"%.*s\": %s", SHOWN, path, jerr.message);
	if (rc == SAE_OK)
		rc = weight_map_shards(root, path, out, err);
	if (rc != SAE_OK)
		strlist_free(out);
	sae_json_free(root);
	free(text);
	free(path);
	return rc;
}

/* Does dir hold one complete set of weights?  *missing: a shard it lacks. */
static int
has_weights(const char *dir, bool *have, char *missing, size_t missing_size, SaeError *err)
{
	StrList		shards;
	int			rc;

	*have = has_file(dir, "model.safetensors") || has_file(dir, "pytorch_model.bin");
	if (*have || !has_file(dir, "model.safetensors.index.json"))
		return SAE_OK;
	if ((rc = index_shards(dir, &shards, err)) != SAE_OK)
		return rc;
	*have = true;
	for (size_t i = 0; i < shards.n && *have; i++)
		if (!has_file(dir, shards.items[i]))
		{
			*have = false;
			snprintf(missing, missing_size, "%s", shards.items[i]);
		}
	strlist_free(&shards);
	return SAE_OK;
}

/* Which of the three groups dir has, as HAVE_* bits. */
static int
snapshot_has(const char *dir, int *have, char *missing_shard, size_t size, SaeError *err)
{
	bool		weights = false;
	int			rc = has_weights(dir, &weights, missing_shard, size, err);

	*have = (has_file(dir, "config.json") ? HAVE_CONFIG : 0) | (weights ? HAVE_WEIGHTS : 0) |
		(has_file(dir, "tokenizer.json") ||
		 (has_file(dir, "vocab.json") && has_file(dir, "merges.txt")) ? HAVE_TOKENIZER : 0);
	return rc;
}

/* "config.json, the weights (...) and the tokenizer (...)": what lacks. */
static void
describe_missing(int have, const char *shard, char *out, size_t size)
{
	char		weights[SHOWN + 64];
	const char *parts[3];
	int			n = 0;

	if (shard[0] != '\0')
		snprintf(weights, sizeof(weights), "the weights (shard %.*s of model.safetensors.index.json)",
				 SHOWN / 2, shard);
	else
		snprintf(weights, sizeof(weights), "the weights (%s)", weight_files);
	if (!(have & HAVE_CONFIG))
		parts[n++] = "config.json";
	if (!(have & HAVE_WEIGHTS))
		parts[n++] = weights;
	if (!(have & HAVE_TOKENIZER))
		parts[n++] = "the tokenizer (tokenizer.json, or vocab.json and merges.txt)";
	snprintf(out, size, "%s%s%s%s%s", n > 0 ? parts[0] : "", n > 2 ? ", " : n > 1 ? " and " : "",
			 n > 1 ? parts[1] : "", n > 2 ? " and " : "", n > 2 ? parts[2] : "");
}

/* What the cache lookup found, for the error when nothing is complete. */
typedef struct Lookup
{
	char	   *snapshot;		/* the first snapshot seen (malloc'd), or NULL */
	int			have;			/* its HAVE_* bits */
	char		missing_shard[NAME_MAX_LEN + 1];
	char		places[512];	/* where we looked, for the detail */
} Lookup;

/* Note one folder looked at (as much as fits). */
static void
note_place(Lookup *lk, const char *dir, const char *state)
{
	size_t		used = strlen(lk->places);

	snprintf(lk->places + used, sizeof(lk->places) - used, "%s%.*s (%s)",
			 used ? "; " : "", SHOWN, dir, state);
}

/* Look at one repo's snapshot of the revision; *out_dir is set if it has everything. */
static int
look_in_repo(Hub *h, const char *repo, Lookup *lk, char **out_dir, SaeError *err)
{
	char	   *dir = repo_dir(h->cache, repo);
	char		commit[COMMIT_LEN + 1];
	char		shard[NAME_MAX_LEN + 1] = "";
	char	   *snap;
	int			have = 0,
				rc = SAE_OK;

	if (dir == NULL)
		return oom(err);
	if (!cached_commit(dir, h->revision, commit))
	{
		note_place(lk, dir, access(dir, F_OK) == 0 ? "no refs for this revision" : "not there");
		free(dir);
		return SAE_OK;
	}
	snap = str_printf("%s/snapshots/%s", dir, commit);
	free(dir);
	if (snap == NULL)
		return oom(err);
	if ((rc = snapshot_has(snap, &have, shard, sizeof(shard), err)) == SAE_OK && have == HAVE_ALL)
	{
		*out_dir = snap;
		return SAE_OK;
	}
	note_place(lk, snap, "incomplete");
	if (rc == SAE_OK && lk->snapshot == NULL)
	{
		lk->snapshot = snap;
		lk->have = have;
		memcpy(lk->missing_shard, shard, sizeof(shard));
	}
	else
		free(snap);
	return rc;
}

/* The first complete snapshot among the repos, or *out_dir NULL. */
static int
find_in_cache(Hub *h, Lookup *lk, char **out_dir, SaeError *err)
{
	int			rc = SAE_OK;

	for (int i = 0; i < h->n_repos && rc == SAE_OK && *out_dir == NULL; i++)
		rc = look_in_repo(h, h->repos[i], lk, out_dir, err);
	return rc;
}

/* The error for a model the cache lacks, when nothing may be downloaded. */
static int
missing_error(Hub *h, const Lookup *lk, SaeError *err)
{
	char		missing[512];

	if (lk->snapshot != NULL)
	{
		describe_missing(lk->have, lk->missing_shard, missing, sizeof(missing));
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "model \"%.*s\" is incomplete in the Hugging Face cache: "
				  "%.*s lacks %s", SHOWN / 2, h->name, SHOWN, lk->snapshot, missing);
	}
	else
		sae_error(err, SAE_ERR_INVALID_PARAMETER, "model \"%.*s\" (revision \"%.*s\") is not in the Hugging "
				  "Face cache %.*s", SHOWN / 2, h->name, SHOWN / 2, h->revision, SHOWN, h->cache);
	sae_error_detail(err, "Looked in: %s.", lk->places);
	if (h->offline_env)
		return sae_error_hint(err, "HF_HUB_OFFLINE is set in the server's environment, so nothing is "
							  "downloaded.  Unset it, or pass the path of a folder with config.json, "
							  "the weights and the tokenizer.");
	return sae_error_hint(err, "Set sae.allow_download = on to download it into the cache, or pass the "
						  "path of a folder with config.json, the weights and the tokenizer.");
}

/* ------------------------------------------------------------------ */
/* Downloading one file                                                */
/* ------------------------------------------------------------------ */

/* One resolve's downloads: the connection and the commit being filled. */
typedef struct Download
{
	Hub		   *hub;
	const char *repo;			/* the repo id downloaded from */
	char	   *repo_dir;		/* <cache>/models--org--name */
	char	   *lock_dir;		/* <cache>/.locks/models--org--name */
	CURL	   *curl;
	struct curl_slist *headers;
	char		errbuf[CURL_ERROR_SIZE];
	char		commit[COMMIT_LEN + 1];	/* "" until the first file arrived */
} Download;

/* The headers of one response that we use. */
typedef struct Headers
{
	char		commit[HEADER_MAX];		/* X-Repo-Commit */
	char		linked_etag[HEADER_MAX];	/* X-Linked-Etag */
	char		etag[HEADER_MAX];	/* ETag */
	char		linked_size[HEADER_MAX];	/* X-Linked-Size */
	char		error_code[HEADER_MAX];		/* X-Error-Code */
	char		error_message[HEADER_MAX];	/* X-Error-Message */
} Headers;

/* Why a transfer stopped early (or not). */
typedef enum Outcome
{
	OUT_RUNNING,
	OUT_HAVE_BLOB,				/* the blob is in the cache already */
	OUT_LOCK_BUSY,				/* another process is writing the blob */
	OUT_CANCELLED,				/* should_stop said so */
	OUT_ERROR					/* rc and err say what */
} Outcome;

/* One file's GET: headers seen so far, and the blob being written. */
typedef struct Transfer
{
	Download   *dl;
	const char *file;			/* repo-relative */
	char	   *url;
	long		status;			/* of the response being received */
	Headers		cur;			/* its headers */
	char		commit[HEADER_MAX];	/* from the first response that had one */
	char		etag[HEADER_MAX];	/* likewise, normalised */
	int64_t		size;			/* X-Linked-Size, or -1 */
	int			lock_fd;		/* flock'd lock file of the blob lock_etag, or -1 */
	char		lock_etag[HEADER_MAX];
	int			fd;				/* blobs/<etag>.incomplete, or -1 */
	char	   *incomplete;
	int64_t		written;
	int64_t		reported;		/* last progress reported */
	Outcome		outcome;
	int			rc;
	SaeError   *err;
} Transfer;

/* The caller's should_stop, if any. */
static bool
stop_requested(const Hub *h)
{
	return h->opt->should_stop != NULL && h->opt->should_stop(h->opt->stop_arg);
}

/* Percent-encode src for a URL path, keeping '/' if keep_slash. */
static char *
url_quote(const char *src, bool keep_slash)
{
	char	   *out = malloc(strlen(src) * 3 + 1);
	char	   *o = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *p = (const unsigned char *) src; *p; p++)
	{
		if (is_alnum((char) *p) || strchr("-._~", *p) != NULL || (keep_slash && *p == '/'))
			*o++ = (char) *p;
		else
			o += sprintf(o, "%%%02X", *p);
	}
	*o = '\0';
	return out;
}

/* {endpoint}/{repo}/resolve/{revision}/{file}, as huggingface_hub quotes it. */
static char *
file_url(const Download *d, const char *revision, const char *file)
{
	char	   *rev = url_quote(revision, false);
	char	   *name = url_quote(file, true);
	char	   *url = rev && name ? str_printf("%s/%s/resolve/%s/%s", d->hub->endpoint, d->repo, rev, name) : NULL;

	free(rev);
	free(name);
	return url;
}

/*
 * If line is "<name>: value" (name case-insensitive), copy the trimmed
 * value.  An over-long value becomes "?", which no check accepts, unless
 * cutting is harmless (messages).
 */
static void
header_value(const char *line, size_t len, const char *name, char *dst, bool may_cut)
{
	size_t		n = strlen(name);
	const char *v = line + n + 1,
			   *end = line + len;

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if ((size_t) (end - v) >= HEADER_MAX && !may_cut)
		snprintf(dst, HEADER_MAX, "?");
	else
		snprintf(dst, HEADER_MAX, "%.*s", (int) (end - v), v);
}

/* ETag values are quoted and may be weak: W/"abc" -> abc. */
static void
normalize_etag(const char *raw, char *out)
{
	size_t		len;

	if (strncmp(raw, "W/", 2) == 0)
		raw += 2;
	len = strlen(raw);
	if (len >= 2 && raw[0] == '"' && raw[len - 1] == '"')
		snprintf(out, HEADER_MAX, "%.*s", (int) len - 2, raw + 1);
	else
		snprintf(out, HEADER_MAX, "%s", raw);
}

/*
 * At the end of a response's headers: the commit and the etag are taken
 * from the first response that has them, which is the hub's own (a CDN
 * that a redirect leads to has an ETag of its own, not the blob's name).
 */
static void
end_of_headers(Transfer *t)
{
	const Headers *c = &t->cur;

	if (t->commit[0] == '\0' && c->commit[0] != '\0')
		memcpy(t->commit, c->commit, HEADER_MAX);
	if (t->etag[0] == '\0' && (c->linked_etag[0] != '\0' || c->etag[0] != '\0'))
	{
		normalize_etag(c->linked_etag[0] ? c->linked_etag : c->etag, t->etag);
		if (c->linked_etag[0] != '\0' && c->linked_size[0] != '\0')
		{
			char	   *end;
			long long	v = strtoll(c->linked_size, &end, 10);

			t->size = (*end == '\0' && v >= 0) ? (int64_t) v : -1;
		}
	}
}

/* CURLOPT_HEADERFUNCTION: status lines start a response, "" ends one. */
static size_t
on_header(char *buf, size_t size, size_t n, void *arg)
{
	Transfer   *t = arg;
	size_t		len = size * n;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0)
	{
		const char *sp = memchr(buf, ' ', len);

		memset(&t->cur, 0, sizeof(t->cur));
		t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
	}
	else if (len <= 2 && (len == 0 || buf[0] == '\r' || buf[0] == '\n'))
		end_of_headers(t);
	else
	{
		header_value(buf, len, "X-Repo-Commit", t->cur.commit, false);
		header_value(buf, len, "X-Linked-Etag", t->cur.linked_etag, false);
		header_value(buf, len, "ETag", t->cur.etag, false);
		header_value(buf, len, "X-Linked-Size", t->cur.linked_size, false);
		header_value(buf, len, "X-Error-Code", t->cur.error_code, true);
		header_value(buf, len, "X-Error-Message", t->cur.error_message, true);
	}
	return len;
}

/* Stop the transfer with an error (the callbacks cannot return one). */
static size_t
fail_transfer(Transfer *t, int rc)
{
	t->rc = rc;
	t->outcome = OUT_ERROR;
	return 0;
}

/* <repo_dir>/blobs/<etag> */
static char *
blob_path(const Transfer *t)
{
	return str_printf("%s/blobs/%s", t->dl->repo_dir, t->etag);
}

/*
 * Take the blob's lock without waiting (huggingface_hub's filelock is an
 * flock on the same file, so Python and we exclude each other).
 */
static int
try_lock(Transfer *t, bool *busy)
{
	char	   *path = str_printf("%s/%s.lock", t->dl->lock_dir, t->etag);
	int			rc = path ? make_parent(path, t->err) : oom(t->err);

	*busy = false;
	if (rc == SAE_OK && (t->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0)
		rc = sae_error(t->err, SAE_ERR_IO, "could not open lock file \"%.*s\": %s", SHOWN, path, strerror(errno));
	if (rc == SAE_OK && flock(t->lock_fd, LOCK_EX | LOCK_NB) == 0)
		memcpy(t->lock_etag, t->etag, HEADER_MAX);
	else if (rc == SAE_OK)
	{
		*busy = (errno == EWOULDBLOCK || errno == EINTR);
		if (!*busy)
			rc = sae_error(t->err, SAE_ERR_IO, "could not lock \"%.*s\": %s", SHOWN, path, strerror(errno));
		close(t->lock_fd);
		t->lock_fd = -1;
	}
	free(path);
	return rc;
}

/* The response's commit and etag must be usable as folder and file names. */
static int
check_identity(Transfer *t)
{
	if (!is_commit(t->commit))
		return sae_error(t->err, SAE_ERR_INVALID_DATA, "%.*s answered without a valid X-Repo-Commit header "
						 "(got \"%.64s\")", SHOWN, t->url, t->commit);
	if (t->dl->commit[0] != '\0' && strcmp(t->commit, t->dl->commit) != 0)
		return sae_error(t->err, SAE_ERR_INVALID_DATA, "%.*s answered with commit %s, not %s",
						 SHOWN, t->url, t->commit, t->dl->commit);
	if (!etag_is_safe(t->etag))
		return sae_error(t->err, SAE_ERR_INVALID_DATA, "%.*s answered without a usable ETag "
						 "(got \"%.64s\")", SHOWN, t->url, t->etag);
	return SAE_OK;
}

/* Open blobs/<etag>.incomplete for writing, under the blob's lock. */
static int
open_incomplete(Transfer *t, char *blob)
{
	int			rc = SAE_OK;

	if ((t->incomplete = str_printf("%s.incomplete", blob)) == NULL)
		return oom(t->err);
	if ((rc = make_parent(t->incomplete, t->err)) != SAE_OK)
		return rc;
	t->fd = open(t->incomplete, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (t->fd < 0)
	{
		rc = sae_error(t->err, SAE_ERR_IO, "could not create \"%.*s\": %s", SHOWN, t->incomplete,
					   strerror(errno));
		free(t->incomplete);
		t->incomplete = NULL;
	}
	return rc;
}

/*
 * The body starts: decide where it goes.  A blob that is already cached
 * (shared by another commit, or written meanwhile by another process)
 * ends the transfer; so does a lock someone else holds.
 */
static int
begin_blob(Transfer *t)
{
	char	   *blob;
	bool		busy = false;
	int			rc;

	if ((rc = check_identity(t)) != SAE_OK)
		return rc;
	if ((blob = blob_path(t)) == NULL)
		return oom(t->err);
	if (t->lock_fd >= 0 && strcmp(t->lock_etag, t->etag) != 0)
	{
		close(t->lock_fd);		/* a lock for another blob: the file changed meanwhile */
		t->lock_fd = -1;
	}
	if (is_file(blob))
		t->outcome = OUT_HAVE_BLOB;
	else if (t->lock_fd < 0 && (rc = try_lock(t, &busy)) == SAE_OK && busy)
		t->outcome = OUT_LOCK_BUSY;
	else if (rc == SAE_OK && is_file(blob))
		t->outcome = OUT_HAVE_BLOB;
	else if (rc == SAE_OK)
		rc = open_incomplete(t, blob);
	free(blob);
	return rc;
}

/* write(2) all of buf, through EINTR and short writes. */
static bool
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		w = write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		buf += w;
		len -= (size_t) w;
	}
	return true;
}

/* CURLOPT_WRITEFUNCTION: the body of a 200 goes into the blob. */
static size_t
on_body(char *buf, size_t size, size_t n, void *arg)
{
	Transfer   *t = arg;
	size_t		len = size * n;
	int			rc;

	if (t->status != 200)
		return len;				/* an error page: not kept */
	if (t->fd < 0)
	{
		if ((rc = begin_blob(t)) != SAE_OK)
			return fail_transfer(t, rc);
		if (t->outcome != OUT_RUNNING)
			return 0;
	}
	if (t->size >= 0 && t->written + (int64_t) len > t->size)
		return fail_transfer(t, sae_error(t->err, SAE_ERR_INVALID_DATA, "%.*s sent more than the %lld bytes "
										  "its X-Linked-Size announced", SHOWN, t->url, (long long) t->size));
	if (!write_all(t->fd, buf, len))
		return fail_transfer(t, sae_error(t->err, SAE_ERR_IO, "could not write \"%.*s\": %s",
										  SHOWN, t->incomplete, strerror(errno)));
	t->written += (int64_t) len;
	if (stop_requested(t->dl->hub))
	{
		t->outcome = OUT_CANCELLED;
		return 0;
	}
	return len;
}

/* CURLOPT_XFERINFOFUNCTION: poll should_stop, report progress. */
static int
on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	Transfer   *t = arg;
	const SaeHubOptions *opt = t->dl->hub->opt;

	if (stop_requested(t->dl->hub))
	{
		t->outcome = OUT_CANCELLED;
		return 1;
	}
	if (opt->progress != NULL && t->fd >= 0 && t->written != t->reported)
	{
		t->reported = t->written;
		opt->progress(opt->progress_arg, t->file, t->written,
					  t->size >= 0 ? t->size : dltotal > 0 ? (int64_t) dltotal : -1);
	}
	return 0;
}

/* Undo a transfer's partial state: no .incomplete survives, the lock goes. */
static void
transfer_cleanup(Transfer *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (t->incomplete != NULL)
		unlink(t->incomplete);
	free(t->incomplete);
	t->incomplete = NULL;
	if (t->lock_fd >= 0)
		close(t->lock_fd);		/* releases the flock */
	t->lock_fd = -1;
}

/*
 * Wait for another process's lock on the blob, polling should_stop, and
 * telling the progress callback (done = -1) that we are waiting, so a
 * session blocked behind another one's download can say why.
 */
static int
wait_for_lock(Transfer *t)
{
	const SaeHubOptions *opt = t->dl->hub->opt;
	struct timespec nap = {0, LOCK_POLL_NS};
	bool		busy = true;
	int			rc = SAE_OK;

	while (rc == SAE_OK && busy)
	{
		if (stop_requested(t->dl->hub))
			return sae_error(t->err, SAE_ERR_CANCELLED, "download of %.*s cancelled", SHOWN, t->url);
		if ((rc = try_lock(t, &busy)) != SAE_OK || !busy)
			break;
		if (opt->progress != NULL)
			opt->progress(opt->progress_arg, t->file, -1, t->size);
		nanosleep(&nap, NULL);
	}
	return rc;
}

/* One GET of t->url, with the per-response state reset. */
static CURLcode
perform(Transfer *t)
{
	CURL	   *c = t->dl->curl;

	t->status = 0;
	t->outcome = OUT_RUNNING;
	t->commit[0] = t->etag[0] = '\0';
	t->size = -1;
	t->written = t->reported = 0;
	memset(&t->cur, 0, sizeof(t->cur));
	t->dl->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, t->url);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
	return curl_easy_perform(c);
}

/*
 * snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per '/' in
 * file), made under a temporary name and renamed over any old link.
 */
static int
link_snapshot(const Download *d, const char *file, const char *etag, SaeError *err)
{
	char	   *pointer = str_printf("%s/snapshots/%s/%s", d->repo_dir, d->commit, file);
	char	   *tmp = pointer ? str_printf("%s.sae-tmp-%ld", pointer, (long) getpid()) : NULL;
	size_t		depth = 0;
	char	   *target;
	int			rc;

	for (const char *p = file; *p; p++)
		depth += (*p == '/');
	target = malloc(3 * depth + strlen(etag) + 16);
	if (pointer == NULL || tmp == NULL || target == NULL)
		rc = oom(err);
	else if ((rc = make_parent(pointer, err)) == SAE_OK)
	{
		strcpy(target, "../../");
		for (size_t i = 0; i < depth; i++)
			strcat(target, "../");
		strcat(strcat(target, "blobs/"), etag);
		unlink(tmp);
		if (symlink(target, tmp) != 0 || rename(tmp, pointer) != 0)
		{
			rc = sae_error(err, SAE_ERR_IO, "could not link \"%.*s\" to %s: %s", SHOWN, pointer, target,
						   strerror(errno));
			unlink(tmp);
		}
	}
	free(target);
	free(tmp);
	free(pointer);
	return rc;
}

/* The blob is in place: adopt the commit and link the file into the snapshot. */
static int
adopt_blob(Transfer *t, bool *found)
{
	int			rc;

	if (t->dl->commit[0] == '\0')
		memcpy(t->dl->commit, t->commit, COMMIT_LEN + 1);
	if ((rc = link_snapshot(t->dl, t->file, t->etag, t->err)) == SAE_OK)
		*found = true;
	return rc;
}

/* The whole body arrived: check its size, make it durable, rename it. */
static int
complete_blob(Transfer *t, bool *found)
{
	char	   *blob;
	int			rc = SAE_OK;

	if (t->fd < 0)
		return sae_error(t->err, SAE_ERR_INTERNAL, "%.*s: no blob was opened", SHOWN, t->url);
	if (t->size >= 0 && t->written != t->size)
		return sae_error(t->err, SAE_ERR_INVALID_DATA, "%.*s sent %lld bytes, its X-Linked-Size said %lld",
						 SHOWN, t->url, (long long) t->written, (long long) t->size);
	if ((blob = blob_path(t)) == NULL)
		return oom(t->err);
	if (fsync(t->fd) != 0 || close(t->fd) != 0 || rename(t->incomplete, blob) != 0)
		rc = sae_error(t->err, SAE_ERR_IO, "could not store \"%.*s\": %s", SHOWN, blob, strerror(errno));
	t->fd = -1;
	free(blob);
	if (rc == SAE_OK && t->dl->hub->opt->progress != NULL)
		t->dl->hub->opt->progress(t->dl->hub->opt->progress_arg, t->file, t->written, t->written);
	return rc == SAE_OK ? adopt_blob(t, found) : rc;
}

/*
 * huggingface_hub's ".no_exist/<commit>/<file>" marker, so that transformers
 * offline knows the file is absent rather than not yet downloaded.  Best
 * effort: the marker is a hint, not needed by us.
 */
static void
mark_absent(const Transfer *t)
{
	const char *commit = t->commit[0] ? t->commit : t->dl->commit;
	char	   *path;
	FILE	   *fp;

	if (!is_commit(commit) || (path = str_printf("%s/.no_exist/%s/%s", t->dl->repo_dir, commit, t->file)) == NULL)
		return;
	if (make_parent(path, NULL) == SAE_OK && (fp = fopen(path, "ab")) != NULL)
		fclose(fp);
	free(path);
}

/* A repo-level 404 (no such repo or revision) is an error, not a missing file. */
static bool
is_repo_error(const char *code)
{
	return strcmp(code, "RepositoryNotFound") == 0 || strcmp(code, "RevisionNotFound") == 0;
}

/* The error for an HTTP status other than 200 (and file-level 404). */
static int
http_error(Transfer *t, long status)
{
	const Hub  *h = t->dl->hub;
	SaeErrCode	code = (status == 401 || status == 403 || status == 404) ? SAE_ERR_INVALID_PARAMETER : SAE_ERR_IO;

	sae_error(t->err, code, "could not download %.*s: HTTP %ld%s%s", SHOWN * 2, t->url, status,
			  t->cur.error_code[0] ? " " : "", t->cur.error_code);
	if (t->cur.error_message[0] != '\0')
		sae_error_detail(t->err, "The server said: %s", t->cur.error_message);
	if (status == 401 || (status == 404 && strcmp(t->cur.error_code, "RepositoryNotFound") == 0))
		return sae_error_hint(t->err, h->token ? "Check the repo id; the token sent may lack access to it." :
							  "Check the repo id; a private or gated repo needs a token: set HF_TOKEN in the "
							  "server's environment, or log in with huggingface-cli as the server's user.");
	if (status == 403)
		return sae_error_hint(t->err, "The token has no access to this repo; for a gated model, accept its "
							  "conditions on the model's page first.");
	if (status == 404)
		return sae_error_hint(t->err, "Check the revision \"%.*s\".", SHOWN, h->revision);
	return sae_error_hint(t->err, "Try again later, or pass the path of a folder with the model files.");
}

/* The error for a transfer that failed below HTTP (DNS, connect, TLS, timeout). */
static int
network_error(Transfer *t, CURLcode code)
{
	sae_error(t->err, SAE_ERR_IO, "could not download %.*s: %s", SHOWN * 2, t->url,
			  t->dl->errbuf[0] ? t->dl->errbuf : curl_easy_strerror(code));
	return sae_error_hint(t->err, "Check that the database server can reach %.*s (HF_ENDPOINT selects a "
						  "mirror); or download the model elsewhere and pass the path of its folder.",
						  SHOWN, t->dl->hub->endpoint);
}

/* Turn a finished (or stopped) GET into found / absent / an error. */
static int
conclude(Transfer *t, CURLcode code, bool required, bool *found)
{
	long		status = 0;

	if (t->outcome == OUT_ERROR)
		return t->rc;
	if (t->outcome == OUT_CANCELLED)
		return sae_error(t->err, SAE_ERR_CANCELLED, "download of %.*s cancelled", SHOWN, t->url);
	if (t->outcome == OUT_HAVE_BLOB)
		return adopt_blob(t, found);
	if (code != CURLE_OK)
		return network_error(t, code);
	curl_easy_getinfo(t->dl->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200)
		return complete_blob(t, found);
	if (status != 404 || is_repo_error(t->cur.error_code))
		return http_error(t, status);
	mark_absent(t);
	if (!required)
		return SAE_OK;
	sae_error(t->err, SAE_ERR_INVALID_PARAMETER, "repo \"%.*s\" has no %.*s (revision \"%.*s\")",
			  SHOWN, t->dl->repo, SHOWN, t->file, SHOWN / 2, t->dl->hub->revision);
	return sae_error_detail(t->err, "%.*s answered 404.", SHOWN * 2, t->url);
}

/*
 * Download file into the cache and link it into the snapshot; *found
 * false when the repo has no such file (404) and it is not required.
 */
static int
fetch_file(Download *d, const char *file, bool required, bool *found, SaeError *err)
{
	Transfer	t;
	CURLcode	code = CURLE_OK;
	int			rc = SAE_OK;

	*found = false;
	if (!name_is_safe(file))	/* checked where names come in; once more where they become paths */
		return sae_error(err, SAE_ERR_INVALID_DATA, "refusing to download \"%.*s\": not a relative path "
						 "inside the repo", SHOWN, file);
	memset(&t, 0, sizeof(t));
	t.dl = d;
	t.file = file;
	t.err = err;
	t.fd = t.lock_fd = -1;
	if ((t.url = file_url(d, d->commit[0] ? d->commit : d->hub->revision, file)) == NULL)
		return oom(err);
	for (;;)
	{
		code = perform(&t);
		if (code == CURLE_OK && t.outcome == OUT_RUNNING && t.status == 200 && t.fd < 0 &&
			(t.rc = begin_blob(&t)) != SAE_OK)	/* an empty file has no body */
			t.outcome = OUT_ERROR;
		/* another process is writing this blob: wait, then look again */
		if (t.outcome != OUT_LOCK_BUSY || (rc = wait_for_lock(&t)) != SAE_OK)
			break;
	}
	if (rc == SAE_OK)
		rc = conclude(&t, code, required, found);
	transfer_cleanup(&t);
	free(t.url);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Downloading a snapshot                                              */
/* ------------------------------------------------------------------ */

static bool curl_ready;

/* libcurl's global state, set up once per process (backends are single-threaded). */
static int
curl_init_once(SaeError *err)
{
	if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return sae_error(err, SAE_ERR_INTERNAL, "could not initialise libcurl");
	curl_ready = true;
	return SAE_OK;
}

/*
 * The connection's options: follow redirects (LFS files live on a CDN) but
 * only to http(s), time out a dead connection, send the token (libcurl
 * drops it when a redirect leaves the host), and our callbacks.
 */
static void
set_curl_options(Download *d)
{
	CURL	   *c = d->curl;

	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SECONDS);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_SECONDS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "sae/1.0 (PostgreSQL extension; libcurl)");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, d->headers);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->errbuf);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

/* Paths and a libcurl handle for downloading h's first repo. */
static int
download_open(Download *d, Hub *h, SaeError *err)
{
	char	   *locks = str_printf("%s/.locks", h->cache);
	char	   *auth = h->token ? str_printf("Authorization: Bearer %s", h->token) : NULL;
	int			rc = curl_init_once(err);

	memset(d, 0, sizeof(*d));
	d->hub = h;
	d->repo = h->repos[0];
	d->repo_dir = repo_dir(h->cache, d->repo);
	d->lock_dir = locks ? repo_dir(locks, d->repo) : NULL;
	if (rc == SAE_OK && auth != NULL && (d->headers = curl_slist_append(NULL, auth)) == NULL)
		rc = oom(err);
	if (rc == SAE_OK && (d->repo_dir == NULL || d->lock_dir == NULL || (h->token && auth == NULL)))
		rc = oom(err);
	if (rc == SAE_OK && (d->curl = curl_easy_init()) == NULL)
		rc = sae_error(err, SAE_ERR_INTERNAL, "could not create a libcurl handle");
	if (rc == SAE_OK)
		set_curl_options(d);
	free(auth);
	free(locks);
	return rc;
}

/* Everything download_open made. */
static void
download_close(Download *d)
{
	if (d->curl != NULL)
		curl_easy_cleanup(d->curl);
	curl_slist_free_all(d->headers);
	free(d->repo_dir);
	free(d->lock_dir);
}

/* <repo_dir>/snapshots/<commit> */
static char *
snapshot_dir(const Download *d)
{
	return str_printf("%s/snapshots/%s", d->repo_dir, d->commit);
}

/* The file in the snapshot being filled: there already, or downloaded. */
static int
ensure(Download *d, const char *file, bool required, bool *found, SaeError *err)
{
	if (stop_requested(d->hub))
		return sae_error(err, SAE_ERR_CANCELLED, "download of \"%.*s\" cancelled", SHOWN, d->repo);
	if (d->commit[0] != '\0')
	{
		char	   *snap = snapshot_dir(d);

		if (snap == NULL)
			return oom(err);
		*found = has_file(snap, file);
		free(snap);
		if (*found)
			return SAE_OK;
	}
	return fetch_file(d, file, required, found, err);
}

/* Every shard the (downloaded) index names. */
static int
download_shards(Download *d, SaeError *err)
{
	char	   *snap = snapshot_dir(d);
	StrList		shards = {NULL, 0};
	bool		found;
	int			rc = snap ? index_shards(snap, &shards, err) : oom(err);

	for (size_t i = 0; i < shards.n && rc == SAE_OK; i++)
		rc = ensure(d, shards.items[i], true, &found, err);
	strlist_free(&shards);
	free(snap);
	return rc;
}

/* The weights: model.safetensors, else the index and its shards, else pytorch_model.bin. */
static int
download_weights(Download *d, SaeError *err)
{
	char	   *snap = snapshot_dir(d);
	char		shard[NAME_MAX_LEN + 1];
	bool		have = false,
				found = false;
	int			rc = snap ? has_weights(snap, &have, shard, sizeof(shard), err) : oom(err);

	free(snap);
	if (rc != SAE_OK || have)
		return rc;
	if ((rc = ensure(d, "model.safetensors", false, &found, err)) != SAE_OK || found)
		return rc;
	if ((rc = ensure(d, "model.safetensors.index.json", false, &found, err)) != SAE_OK)
		return rc;
	if (found)
		return download_shards(d, err);
	if ((rc = ensure(d, "pytorch_model.bin", false, &found, err)) != SAE_OK || found)
		return rc;
	sae_error(err, SAE_ERR_NOT_SUPPORTED, "repo \"%.*s\" (commit %s) has none of %s",
			  SHOWN, d->repo, d->commit, weight_files);
	return sae_error_hint(err, "sae reads safetensors checkpoints (single or sharded) and pytorch_model.bin.");
}

/* The tokenizer: tokenizer.json, else vocab.json and merges.txt. */
static int
download_tokenizer(Download *d, SaeError *err)
{
	char	   *snap = snapshot_dir(d);
	bool		have,
				found = false;
	int			rc;

	if (snap == NULL)
		return oom(err);
	have = has_file(snap, "tokenizer.json") || (has_file(snap, "vocab.json") && has_file(snap, "merges.txt"));
	free(snap);
	if (have || (rc = ensure(d, "tokenizer.json", false, &found, err)) != SAE_OK || found)
		return have ? SAE_OK : rc;
	if ((rc = ensure(d, "vocab.json", false, &found, err)) != SAE_OK)
		return rc;
	if (found)
		return ensure(d, "merges.txt", true, &found, err);
	return sae_error(err, SAE_ERR_NOT_SUPPORTED, "repo \"%.*s\" (commit %s) has no tokenizer: neither %s",
					 SHOWN, d->repo, d->commit, tokenizer_files);
}

/* refs/<revision> -> the commit, as huggingface_hub writes it (no newline). */
static int
write_ref(const Download *d, SaeError *err)
{
	char	   *path = str_printf("%s/refs/%s", d->repo_dir, d->hub->revision);
	int			rc = path ? write_file_atomic(path, d->commit, err) : oom(err);

	free(path);
	return rc;
}

/* Download what the snapshot lacks; *out_dir is the snapshot. */
static int
download_snapshot(Hub *h, char **out_dir, SaeError *err)
{
	Download	d;
	bool		found;
	int			rc = download_open(&d, h, err);

	if (rc == SAE_OK)
		rc = ensure(&d, "config.json", true, &found, err);
	if (rc == SAE_OK)
		rc = download_weights(&d, err);
	if (rc == SAE_OK)
		rc = download_tokenizer(&d, err);
	if (rc == SAE_OK && !is_commit(h->revision))
		rc = write_ref(&d, err);
	if (rc == SAE_OK && (*out_dir = snapshot_dir(&d)) == NULL)
		rc = oom(err);
	download_close(&d);
	return rc;
}

int
sae_hub_resolve(const char *name, const SaeHubOptions *opt, char **out_dir, SaeError *err)
{
	Hub			h;
	Lookup		lk;
	int			rc;

	*out_dir = NULL;
	memset(&lk, 0, sizeof(lk));
	rc = hub_init(&h, name, opt, err);
	if (rc == SAE_OK)
		rc = find_in_cache(&h, &lk, out_dir, err);
	if (rc == SAE_OK && *out_dir == NULL)
		rc = h.download ? download_snapshot(&h, out_dir, err) : missing_error(&h, &lk, err);
	if (rc != SAE_OK)
	{
		free(*out_dir);
		*out_dir = NULL;
	}
	free(lk.snapshot);
	hub_free(&h);
	return rc;
}
