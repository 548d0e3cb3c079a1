# PGXS build of the sae extension.
#   make                  build sae.so (engine in src/core, glue in src/pg)
#   make install          install into the PostgreSQL found by pg_config
#   make unittest         build and run the engine unit tests (no server needed)
#   make installcheck     pg_regress tests against a running server
#   make WERROR=1 ...     treat warnings as errors (CI does)

EXTENSION  = sae
MODULE_big = sae
DATA       = sae--1.0.sql

CORE_SRCS  = $(sort $(wildcard src/core/*.c))
PG_SRCS    = $(sort $(wildcard src/pg/*.c))
CORE_OBJS  = $(CORE_SRCS:.c=.o)
OBJS       = $(CORE_OBJS) $(PG_SRCS:.c=.o)

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)

# OpenBLAS's OpenMP build, so BLAS and the engine's own OpenMP loops share
# one thread pool (two spinning pools on the same cores slow both down).
BLAS_INC   ?= /usr/include/x86_64-linux-gnu/openblas-pthread
BLAS_DIR   ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_LIB   ?= $(BLAS_DIR)/libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR)
PG_CPPFLAGS = -I$(srcdir)/src/core -I$(BLAS_INC)
PG_CFLAGS   = -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# libcurl: downloading models from the Hugging Face hub (src/core/hub.c).
SHLIB_LINK  = $(BLAS_LIB) -fopenmp -lm -lcurl
ifeq ($(WERROR),1)
PG_CFLAGS  += -Werror
endif

# No LLVM bitcode: the engine is not a JIT target.
override with_llvm = no

EXTRA_CLEAN = test/unit/run_tests test/unit/*.o

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The engine is plain C11 and never sees a PostgreSQL header.
# -O3: the hot loops are the engine's, and GCC vectorises them only at -O3.
$(CORE_OBJS): CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -Wsign-compare -Wmissing-field-initializers
$(CORE_OBJS): src/core/*.h
$(OBJS): $(wildcard src/pg/*.h src/core/*.h)

# Engine unit tests: the same engine sources, linked into a plain C test runner.
UNIT_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -fopenmp -Wall -Wextra -Wno-unused-parameter \
              -Isrc/core -I$(BLAS_INC) $(if $(filter 1,$(WERROR)),-Werror)
test/unit/run_tests: $(CORE_SRCS) $(wildcard src/core/*.h) $(wildcard test/unit/*.c test/unit/*.h)
	$(CC) $(UNIT_CFLAGS) -o $@ $(CORE_SRCS) $(wildcard test/unit/*.c) $(BLAS_LIB) -lm -lcurl

.PHONY: unittest
unittest: test/unit/run_tests
	cd test/unit && ./run_tests
