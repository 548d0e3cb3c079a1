/*
 * unit.h — a very small TAP test framework for the engine.
 *
 * A test is a function declared with UNIT_TEST(name); a constructor
 * registers it, so adding a test is writing it, nothing else.  run_tests.c
 * runs the registered tests (sorted by file, then line), prints
 * "ok N - file/name" or "not ok N - file/name" with "# ..." diagnostics,
 * and exits 1 if any failed.  UNIT_FILTER=substr runs only the tests whose
 * "file/name" contains substr.
 *
 * CHECK-style macros record a failure and carry on; REQUIRE also returns
 * from the test (for preconditions whose failure makes the rest
 * meaningless).  Every failure message shows the numbers involved.
 */
#ifndef UNIT_H
#define UNIT_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef void (*UnitFn) (void);

void		unit_register(const char *file, int line, const char *name, UnitFn fn);
void		unit_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
void		unit_note(const char *fmt,...) __attribute__((format(printf, 1, 2)));
bool		unit_current_failed(void);

/* Skip the current test (TAP "# SKIP reason"): for tests this machine cannot run. */
void		unit_skip(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* Run fn in a child process; true if the child ended normally with status 0. */
bool		unit_survives(UnitFn fn);

#define UNIT_TEST(fn) \
	static void fn(void); \
	__attribute__((constructor)) static void fn##_register_(void) \
	{ \
		unit_register(__FILE__, __LINE__, #fn, fn); \
	} \
	static void fn(void)

#define CHECK(cond) \
	do { \
		if (!(cond)) \
			unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
	} while (0)

#define CHECK_MSG(cond, ...) \
	do { \
		if (!(cond)) \
			unit_fail(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#define REQUIRE(cond) \
	do { \
		if (!(cond)) \
		{ \
			unit_fail(__FILE__, __LINE__, "REQUIRE(%s) failed; test stopped", #cond); \
			return; \
		} \
	} while (0)

#define CHECK_INT_EQ(a, b) \
	do { \
		long long	unit_a_ = (long long) (a), \
					unit_b_ = (long long) (b); \
		if (unit_a_ != unit_b_) \
			unit_fail(__FILE__, __LINE__, "%s == %s: got %lld, want %lld", \
					  #a, #b, unit_a_, unit_b_); \
	} while (0)

#define CHECK_STR_EQ(a, b) \
	do { \
		const char *unit_a_ = (a), \
				   *unit_b_ = (b); \
		if (strcmp(unit_a_, unit_b_) != 0) \
			unit_fail(__FILE__, __LINE__, "%s == %s: got \"%s\", want \"%s\"", \
					  #a, #b, unit_a_, unit_b_); \
	} while (0)

#define CHECK_CONTAINS(hay, needle) \
	do { \
		const char *unit_h_ = (hay), \
				   *unit_n_ = (needle); \
		if (strstr(unit_h_, unit_n_) == NULL) \
			unit_fail(__FILE__, __LINE__, "%s contains \"%s\": got \"%s\"", \
					  #hay, unit_n_, unit_h_); \
	} while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol) \
	do { \
		double		unit_a_ = (a), \
					unit_b_ = (b), \
					unit_t_ = (tol); \
		if (!(fabs(unit_a_ - unit_b_) <= unit_t_)) \
			unit_fail(__FILE__, __LINE__, "%s ~ %s: got %.17g, want %.17g (|diff| %.3g > %.3g)", \
					  #a, #b, unit_a_, unit_b_, fabs(unit_a_ - unit_b_), unit_t_); \
	} while (0)

/* |a - b| <= rtol * max(|b|, abs_floor) */
#define CHECK_REL(a, b, rtol, abs_floor) \
	do { \
		double		unit_a_ = (a), \
					unit_b_ = (b), \
					unit_s_ = fmax(fabs(unit_b_), (abs_floor)); \
		if (!(fabs(unit_a_ - unit_b_) <= (rtol) * unit_s_)) \
			unit_fail(__FILE__, __LINE__, "%s ~ %s: got %.17g, want %.17g (rel err %.3g > %.3g)", \
					  #a, #b, unit_a_, unit_b_, fabs(unit_a_ - unit_b_) / unit_s_, (double) (rtol)); \
	} while (0)

#endif
