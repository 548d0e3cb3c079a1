/*
 * device.c — device names, and the CUDA module opened on first use
 * (see device.h).
 */
#include "device.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The module last opened, and from where: kept for the life of the process, as dlopen intends. */
static const SaeCudaModule *cuda_module;
static char cuda_module_path[4096];

int
sae_device_parse(const char *name, SaeDeviceRequest *out, SaeError *err)
{
	memset(out, 0, sizeof(*out));
	if (strcmp(name, "cpu") == 0)
		out->cpu = true;
	else if (strcmp(name, "auto") == 0)
		out->automatic = true;
	else if (strcmp(name, "cuda") == 0)
		out->index = 0;
	else if (strncmp(name, "cuda:", 5) == 0 && name[5] >= '0' && name[5] <= '9')
	{
		char	   *end;
		long		v;

		errno = 0;
		v = strtol(name + 5, &end, 10);
		if (*end != '\0' || errno != 0 || v > INT_MAX)
			goto bad;
		out->index = (int) v;
	}
	else
		goto bad;
	return SAE_OK;
bad:
	sae_error(err, SAE_ERR_INVALID_PARAMETER, "invalid device \"%.100s\"", name);
	return sae_error_hint(err, "Use \"cpu\", \"cuda\", \"cuda:N\" (the N-th GPU) or \"auto\".");
}

/* Open the module at path and check that it was built with this engine. */
static int
load_module(const char *path, SaeError *err)
{
	void	   *handle;
	const SaeCudaModule *(*entry) (void);
	const SaeCudaModule *m;

	if (cuda_module != NULL && strcmp(path, cuda_module_path) == 0)
		return SAE_OK;
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL)
	{
		sae_error(err, SAE_ERR_DEVICE, "could not load the CUDA backend \"%.200s\"", path);
		sae_error_detail(err, "%.400s", dlerror());
		return sae_error_hint(err, "The extension was built without CUDA (no nvcc), or the CUDA libraries "
							  "are not installed on this server. Train with \"device\": \"cpu\".");
	}
	*(void **) &entry = dlsym(handle, SAE_CUDA_MODULE_SYMBOL);
	m = entry ? entry() : NULL;
	if (m == NULL || m->abi_version != SAE_CUDA_ABI_VERSION || m->backend_size != sizeof(SaeBackend))
	{
		dlclose(handle);
		sae_error(err, SAE_ERR_DEVICE, "the CUDA backend \"%.200s\" does not match this sae.so", path);
		return sae_error_hint(err, "Rebuild and reinstall the extension (make && make install).");
	}
	cuda_module = m;
	snprintf(cuda_module_path, sizeof(cuda_module_path), "%s", path);
	return SAE_OK;
}

/* How many GPUs the module at path sees; an error if it cannot be used at all. */
static int
count_devices(const char *path, int *n, SaeError *err)
{
	char		msg[512] = "";

	*n = 0;
	if (load_module(path, err) != SAE_OK)
		return err->code;
	if (!cuda_module->device_count(n, msg, sizeof(msg)))
	{
		sae_error(err, SAE_ERR_DEVICE, "no CUDA device is usable: %s", msg);
		return sae_error_hint(err, "Check that the server sees a GPU and its driver (nvidia-smi), "
							  "or train with \"device\": \"cpu\".");
	}
	return SAE_OK;
}

int
sae_cuda_devices(const char *path, SaeDeviceInfo *out, int max, int *n, SaeError *err)
{
	char		msg[512] = "";
	int			count;

	*n = 0;
	if (count_devices(path, &count, err) != SAE_OK)
		return err->code;
	for (int i = 0; i < count && i < max; i++)
	{
		if (!cuda_module->device_info(i, &out[i], msg, sizeof(msg)))
			return sae_error(err, SAE_ERR_DEVICE, "could not query CUDA device %d: %s", i, msg);
		*n = i + 1;
	}
	return SAE_OK;
}

SaeBackend *
sae_backend_cuda_create(const char *path, int index, bool tf32, SaeError *err)
{
	SaeBackend *be;
	char		msg[512] = "";
	int			n;

	if (count_devices(path, &n, err) != SAE_OK)
		return NULL;
	if (index >= n)
	{
		sae_error(err, SAE_ERR_DEVICE, "there is no CUDA device %d: this server sees %d", index, n);
		sae_error_hint(err, "Use \"cuda\" or \"cuda:N\" with N below %d; sae_device_info() lists them.", n);
		return NULL;
	}
	be = cuda_module->create(index, tf32, msg, sizeof(msg));
	if (be == NULL)
	{
		sae_error(err, SAE_ERR_DEVICE, "could not start the CUDA backend on device %d: %s", index, msg);
		sae_error_hint(err, "Another process may hold the GPU's memory (nvidia-smi shows which).");
	}
	return be;
}

bool
sae_backends_share_memory(const SaeBackend *a, const SaeBackend *b)
{
	return a->device_index == b->device_index && a->copy == b->copy;
}

int
sae_backend_check(SaeBackend *be, SaeError *err)
{
	const char *msg = be->device_error ? be->device_error(be) : NULL;

	if (msg == NULL)
		return SAE_OK;
	sae_error(err, SAE_ERR_DEVICE, "CUDA error on the %s backend: %s", be->name, msg);
	return sae_error_hint(err, "The GPU state of this session may be lost: reconnect to start afresh.");
}
