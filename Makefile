# PGXS build of the sae extension.
#   make                  build sae.so (engine in src/core, glue in src/pg)
#   make install          install into the PostgreSQL found by pg_config
#   make unittest         build and run the engine unit tests (no server needed)
#   make emutest          the CUDA tests against the kernels emulated on the CPU
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

EXTRA_CLEAN = test/unit/run_tests test/unit/*.o kernels/*.o kernels/sae_cuda.so test/cuda_emu/gen \
              test/cuda_emu/sae_cuda_emu.so

# The CUDA backend (kernels/, its own Makefile), built wherever nvcc is found
# (PATH, else /usr/local/cuda) into sae_cuda.so, which sae.so opens on first use.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The engine is plain C11 and never sees a PostgreSQL header.
# -O3: the hot loops are the engine's, and GCC vectorises them only at -O3.
$(CORE_OBJS): CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -Wsign-compare -Wmissing-field-initializers
$(CORE_OBJS): src/core/*.h
$(OBJS): $(wildcard src/pg/*.h src/core/*.h)

ifneq ($(NVCC),)
all: kernels/sae_cuda.so
install: install-cuda

# cudart is linked statically, so the module loads (and then says "no
# device") on machines without a driver; cuBLAS comes from the toolkit.
.PHONY: kernels/sae_cuda.so install-cuda
kernels/sae_cuda.so:
	$(MAKE) -C kernels NVCC=$(NVCC) WERROR=$(WERROR)

install-cuda: kernels/sae_cuda.so
	$(INSTALL_SHLIB) kernels/sae_cuda.so '$(DESTDIR)$(pkglibdir)/sae_cuda.so'
endif

# Engine unit tests: the same engine sources, linked into a plain C test runner.
UNIT_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -fopenmp -Wall -Wextra -Wno-unused-parameter \
              -Isrc/core -I$(BLAS_INC) $(if $(filter 1,$(WERROR)),-Werror)
test/unit/run_tests: $(CORE_SRCS) $(wildcard src/core/*.h) $(wildcard test/unit/*.c test/unit/*.h)
	$(CC) $(UNIT_CFLAGS) -o $@ $(CORE_SRCS) $(wildcard test/unit/*.c) $(BLAS_LIB) -lm -lcurl

.PHONY: unittest emutest
unittest: test/unit/run_tests $(if $(NVCC),kernels/sae_cuda.so)
	cd test/unit && SAE_CUDA_MODULE=$(CURDIR)/kernels/sae_cuda.so ./run_tests

# The CUDA tests again, against the kernels emulated on the CPU (test/cuda_emu; no GPU or CUDA needed).
emutest: test/unit/run_tests
	$(MAKE) -C test/cuda_emu WERROR=$(WERROR)
	cd test/unit && SAE_CUDA_MODULE=$(CURDIR)/test/cuda_emu/sae_cuda_emu.so UNIT_FILTER=cuda ./run_tests
