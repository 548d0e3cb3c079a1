/*
 * run_tests.c — the test runner: registry, TAP output, main().
 *
 * Diagnostics of a test are collected while it runs and printed after its
 * ok / not ok line, each prefixed with "# ", so the TAP stream stays valid
 * however many lines a failure explains itself with.
 */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 256
#define DIAG_BYTES 32768

typedef struct UnitTest
{
	const char *file;
	int			line;
	char		name[128];		/* "config/defaults" */
	UnitFn		fn;
} UnitTest;

static UnitTest tests[MAX_TESTS];
static int	n_tests;
static bool current_failed;
static char skip_reason[256];
static char diag[DIAG_BYTES];
static size_t diag_used;

/* "…/test_config.c" -> "config" */
static void
short_file(const char *file, char *out, size_t size)
{
	const char *base = strrchr(file, '/');
	size_t		len;

	base = base ? base + 1 : file;
	if (strncmp(base, "test_", 5) == 0)
		base += 5;
	len = strcspn(base, ".");
	snprintf(out, size, "%.*s", (int) len, base);
}

/* Called by each UNIT_TEST constructor before main. */
void
unit_register(const char *file, int line, const char *name, UnitFn fn)
{
	char		shortname[64];

	if (n_tests >= MAX_TESTS)
	{
		fprintf(stderr, "unit: more than %d tests; raise MAX_TESTS\n", MAX_TESTS);
		exit(2);
	}
	short_file(file, shortname, sizeof(shortname));
	tests[n_tests].file = file;
	tests[n_tests].line = line;
	tests[n_tests].fn = fn;
	snprintf(tests[n_tests].name, sizeof(tests[n_tests].name), "%s/%s", shortname, name);
	n_tests++;
}

/* Append one diagnostic line to the current test's buffer. */
static void
diag_vappend(const char *prefix, const char *fmt, va_list ap)
{
	int			n;

	if (diag_used >= sizeof(diag) - 2)
		return;
	n = snprintf(diag + diag_used, sizeof(diag) - diag_used, "%s", prefix);
	if (n > 0)
		diag_used += (size_t) n;
	if (diag_used >= sizeof(diag) - 2)
		return;
	n = vsnprintf(diag + diag_used, sizeof(diag) - diag_used, fmt, ap);
	if (n > 0)
		diag_used += (size_t) n;
	if (diag_used > sizeof(diag) - 2)
		diag_used = sizeof(diag) - 2;
	diag[diag_used++] = '\n';
	diag[diag_used] = '\0';
}

/* Mark the current test failed and keep the message for its diagnostics. */
void
unit_fail(const char *file, int line, const char *fmt,...)
{
	char		prefix[256];
	const char *base = strrchr(file, '/');
	va_list		ap;

	current_failed = true;
	snprintf(prefix, sizeof(prefix), "FAIL %s:%d: ", base ? base + 1 : file, line);
	va_start(ap, fmt);
	diag_vappend(prefix, fmt, ap);
	va_end(ap);
}

/* A diagnostic line printed whether or not the test fails. */
void
unit_note(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	diag_vappend("", fmt, ap);
	va_end(ap);
}

void
unit_skip(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(skip_reason, sizeof(skip_reason), fmt, ap);
	va_end(ap);
}

/* Has the current test failed so far? */
bool
unit_current_failed(void)
{
	return current_failed;
}

/* For code that may crash: fork, run, report how the child ended. */
bool
unit_survives(UnitFn fn)
{
	pid_t		pid;
	int			status = 0;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0)
	{
		fn();
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Sort by file, then by line: the order the tests are written in. */
static int
compare_tests(const void *a, const void *b)
{
	const UnitTest *x = a,
			   *y = b;
	int			c = strcmp(x->file, y->file);

	return c != 0 ? c : x->line - y->line;
}

/* Monotonic clock, for the per-test times. */
static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Print the buffered diagnostics, one "# " line each. */
static void
flush_diag(void)
{
	char	   *line = diag;

	while (*line)
	{
		char	   *end = strchr(line, '\n');

		if (end == NULL)
			end = line + strlen(line);
		printf("# %.*s\n", (int) (end - line), line);
		line = *end ? end + 1 : end;
	}
	diag_used = 0;
	diag[0] = '\0';
}

/* Run the (filtered) tests in file order; exit 1 if any failed. */
int
main(void)
{
	const char *filter = getenv("UNIT_FILTER");
	int			selected = 0,
				passed = 0,
				failed = 0,
				skipped = 0,
				number = 0;
	double		start_all = seconds_now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	qsort(tests, n_tests, sizeof(UnitTest), compare_tests);
	for (int i = 0; i < n_tests; i++)
		selected += (filter == NULL || strstr(tests[i].name, filter) != NULL);
	printf("1..%d\n", selected);
	for (int i = 0; i < n_tests; i++)
	{
		double		start;

		if (filter != NULL && strstr(tests[i].name, filter) == NULL)
			continue;
		current_failed = false;
		skip_reason[0] = '\0';
		diag_used = 0;
		diag[0] = '\0';
		start = seconds_now();
		tests[i].fn();
		number++;
		if (skip_reason[0] && !current_failed)
			printf("ok %d - %s # SKIP %s\n", number, tests[i].name, skip_reason);
		else
			printf("%s %d - %s\n", current_failed ? "not ok" : "ok", number, tests[i].name);
		if (seconds_now() - start > 0.5)
			unit_note("time %.2f s", seconds_now() - start);
		flush_diag();
		if (current_failed)
			failed++;
		else if (skip_reason[0])
			skipped++;
		else
			passed++;
	}
	printf("# total time %.1f s\n", seconds_now() - start_all);
	printf("# %d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed > 0 ? 1 : 0;
}
