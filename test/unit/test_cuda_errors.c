/*
 * test_cuda_errors.c — a fault on the GPU: the CUDA backend keeps the first
 * error, does nothing more, reports it as SAE_ERR_DEVICE with CUDA's
 * message, and its destroy still hands back every allocation it holds (on
 * a real GPU a fault also loses the process's CUDA context, whose memory
 * returns when the session ends).  A real GPU cannot fault on request, so
 * this runs only against the emulation (test/cuda_emu), whose
 * sae_cuda_emu_fail_after makes a launch fail as a kernel fault does.
 */
#include "unit.h"
#include "helpers.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "trainer.h"

/* Device memory in use, as the module reports it. */
static int64_t
used_bytes(const char *path)
{
	SaeDeviceInfo info;
	SaeError	err;
	int			n = 0;

	if (sae_cuda_devices(path, &info, 1, &n, &err) != SAE_OK || n == 0)
		return -1;
	return info.total_bytes - info.free_bytes;
}

UNIT_TEST(a_fault_is_an_error_and_everything_is_freed)
{
	const char *path = getenv("SAE_CUDA_MODULE");
	void		(*fail_after) (int) = NULL;
	void	   *handle = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
	SaeConfig	cfg;
	SaeBackend *be;
	SaeTrainer *t = NULL;
	SaeStepStats st;
	SaeError	err;
	int64_t		before;
	float	   *x,
			   *host;
	int			B = 64,
				d = 16;

	if (handle)
		*(void **) &fail_after = dlsym(handle, "sae_cuda_emu_fail_after");
	if (fail_after == NULL)
	{
		unit_skip("needs the CUDA emulation (SAE_CUDA_MODULE=test/cuda_emu/sae_cuda_emu.so)");
		if (handle)
			dlclose(handle);
		return;
	}
	before = used_bytes(path);
	be = sae_backend_cuda_create(path, 0, false, &err);
	REQUIRE(be != NULL);
	cfg_base(&cfg);
	REQUIRE(cfg_num(&cfg, "d_in", d) && cfg_num(&cfg, "d_sae", 64) &&
			cfg_num(&cfg, "train_batch_size", B) && cfg_finish(&cfg));
	REQUIRE(sae_trainer_create(&cfg, be, B, &t, &err) == SAE_OK);
	REQUIRE(sae_trainer_init_params(t, &err) == SAE_OK);
	host = calloc((size_t) B * d, sizeof(float));
	x = be->alloc(be, sizeof(float) * B * d);
	REQUIRE(host && x);
	for (int i = 0; i < B * d; i++)
		host[i] = (float) ((i * 7919) % 13) - 6;
	be->to_device(be, x, host, sizeof(float) * B * d);
	sae_trainer_step(t, x, B, &st);
	CHECK_INT_EQ(sae_backend_check(be, &err), SAE_OK);
	CHECK(used_bytes(path) > before);

	fail_after(3);				/* the step's third launch faults */
	sae_trainer_step(t, x, B, &st);
	CHECK_INT_EQ(sae_backend_check(be, &err), SAE_ERR_DEVICE);
	CHECK_MSG(strstr(err.message, "unspecified launch failure") != NULL, "message: %s", err.message);
	CHECK(strstr(err.hint, "reconnect") != NULL);
	CHECK(be->alloc(be, 64) == NULL);	/* nothing runs after a fault */
	sae_trainer_step(t, x, B, &st);	/* and nothing crashes */
	CHECK_INT_EQ(sae_backend_check(be, &err), SAE_ERR_DEVICE);

	sae_trainer_destroy(t);
	be->free(be, x);
	be->destroy(be);
	fail_after(-1);				/* a fresh device, as a new process would have */
	CHECK_MSG(used_bytes(path) == before, "device bytes in use: %lld before, %lld after",
			  (long long) before, (long long) used_bytes(path));
	free(host);
	dlclose(handle);
}
