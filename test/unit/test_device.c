/*
 * test_device.c — device names, and what happens when the CUDA module
 * cannot be used: these run on every machine (test_cuda.c needs a GPU).
 */
#include "unit.h"

#include "device.h"

#include <string.h>

UNIT_TEST(device_names_parse)
{
	SaeDeviceRequest r;
	SaeError	err;
	const char *bad[] = {"", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "cuda:99999999999", "cpu ", NULL};

	CHECK(sae_device_parse("cpu", &r, &err) == SAE_OK && r.cpu && !r.automatic);
	CHECK(sae_device_parse("auto", &r, &err) == SAE_OK && r.automatic && !r.cpu);
	CHECK(sae_device_parse("cuda", &r, &err) == SAE_OK && !r.cpu && !r.automatic && r.index == 0);
	CHECK(sae_device_parse("cuda:3", &r, &err) == SAE_OK && !r.cpu && r.index == 3);
	for (int i = 0; bad[i]; i++)
	{
		CHECK_MSG(sae_device_parse(bad[i], &r, &err) == SAE_ERR_INVALID_PARAMETER,
				  "\"%s\" was accepted", bad[i]);
		CHECK(strstr(err.hint, "cuda:N") != NULL);
	}
}

/* A missing module, and a shared library that is not ours, are device errors that say so. */
UNIT_TEST(unusable_modules_are_errors)
{
	SaeDeviceInfo info;
	SaeError	err;
	int			n = -1;

	CHECK(sae_backend_cuda_create("/nonexistent/sae_cuda.so", 0, false, &err) == NULL);
	CHECK_INT_EQ(err.code, SAE_ERR_DEVICE);
	CHECK(strstr(err.message, "could not load the CUDA backend") != NULL);
	CHECK(strstr(err.detail, "/nonexistent/sae_cuda.so") != NULL);
	CHECK(strstr(err.hint, "\"device\": \"cpu\"") != NULL);

	CHECK(sae_cuda_devices("libm.so.6", &info, 1, &n, &err) == SAE_ERR_DEVICE);
	CHECK_INT_EQ(n, 0);
	CHECK(strstr(err.message, "does not match this sae.so") != NULL);
}
