/*
 * module.c — module entry point, GUCs, engine errors and backends.
 */
#include "sae_pg.h"

#include <limits.h>
#include <math.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "device.h"

PG_MODULE_MAGIC;

int			sae_max_memory_kb = 4 * 1024 * 1024;
int			sae_progress_every = 100;
int			sae_threads = 0;
bool		sae_allow_download = false;
char	   *sae_hub_cache = NULL;
char	   *sae_hub_endpoint = NULL;
char	   *sae_device = NULL;
char	   *sae_cuda_module = NULL;

void		_PG_init(void);

/* sae.device must name a device sae_device_parse accepts. */
static bool
check_device(char **newval, void **extra, GucSource source)
{
	SaeDeviceRequest req;
	SaeError	err;

	if (sae_device_parse(*newval, &req, &err) == SAE_OK)
		return true;
	GUC_check_errdetail("%s", err.hint);
	return false;
}

/* Register the sae.* settings. */
void
_PG_init(void)
{
	DefineCustomIntVariable("sae.max_memory",
							"Memory one training run may use (SAE, optimizer state, batch buffers, shuffle buffer).",
							"Checked before anything is allocated.",
							&sae_max_memory_kb, 4 * 1024 * 1024, 1024, INT_MAX,
							PGC_USERSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("sae.progress_every",
							"Steps between progress NOTICEs of sae_train (0 turns them off).",
							NULL, &sae_progress_every, 100, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sae.threads",
							"CPU threads for training (0: all cores).",
							NULL, &sae_threads, 0, 0, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("sae.allow_download",
							 "Let sae_load_model download missing model files from the Hugging Face hub.",
							 "Only a superuser can turn it on: the server writes what it downloads into the hub cache.",
							 &sae_allow_download, false, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("sae.hub_cache",
							   "The Hugging Face hub cache sae_load_model reads (empty: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub of the server).",
							   NULL, &sae_hub_cache, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("sae.hub_endpoint",
							   "The Hugging Face hub to download from (empty: HF_ENDPOINT of the server, or https://huggingface.co).",
							   NULL, &sae_hub_endpoint, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("sae.device",
							   "The device of training runs whose config names none, and of model passes (sae_analyze, sae_evaluate, sae_top_logits, sae_run_with_hooks ...).",
							   "\"cpu\", \"cuda\", \"cuda:N\" (the N-th GPU) or \"auto\" (CUDA where it works, else the CPU).",
							   &sae_device, "cpu", PGC_USERSET, 0, check_device, NULL, NULL);
	DefineCustomStringVariable("sae.cuda_module",
							   "The CUDA backend module to open (empty: sae_cuda.so beside sae.so).",
							   "Only a superuser can change it: the server loads the file. The tests point it at the CPU emulation of the kernels.",
							   &sae_cuda_module, "", PGC_SUSET, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("sae");
}

/* Which SQLSTATE each engine error code becomes. */
static int
sqlstate_for(SaeErrCode code)
{
	switch (code)
	{
		case SAE_ERR_INVALID_PARAMETER:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case SAE_ERR_INVALID_DATA:
			return ERRCODE_DATA_EXCEPTION;
		case SAE_ERR_NO_DATA:
			return ERRCODE_NO_DATA_FOUND;
		case SAE_ERR_OUT_OF_MEMORY:
			return ERRCODE_OUT_OF_MEMORY;
		case SAE_ERR_LIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case SAE_ERR_NOT_SUPPORTED:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case SAE_ERR_CANCELLED:
			return ERRCODE_QUERY_CANCELED;
		case SAE_ERR_IO:
			return ERRCODE_IO_ERROR;
		case SAE_ERR_DEVICE:
			return ERRCODE_SYSTEM_ERROR;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}

void
SaeReportError(const SaeError *err)
{
	ereport(ERROR,
			(errcode(sqlstate_for(err->code)),
			 errmsg("%s", err->message),
			 err->detail[0] ? errdetail("%s", err->detail) : 0,
			 err->hint[0] ? errhint("%s", err->hint) : 0));
	pg_unreachable();
}

/*
 * The engine's should_stop callback where a pending cancel, timeout or
 * terminate may be raised at once: the engine holds nothing at that point
 * that a memory-context reset does not free.
 */
bool
SaeStopIfInterrupted(void *arg)
{
	CHECK_FOR_INTERRUPTS();
	return false;
}

static void
destroy_backend(void *arg)
{
	SaeBackend *be = arg;

	be->destroy(be);
}

/* The CUDA module: sae.cuda_module, or sae_cuda.so where make install put it, beside sae.so. */
const char *
SaeCudaModulePath(void)
{
	static char path[MAXPGPATH];

	if (sae_cuda_module[0] != '\0')
		return sae_cuda_module;
	snprintf(path, sizeof(path), "%s/sae_cuda.so", pkglib_path);
	return path;
}

/*
 * The device a call runs on, from a device name ("auto" resolved here: the
 * first GPU if the CUDA backend can see one, else the CPU with a NOTICE
 * saying why).
 */
SaeDevice
SaeResolveDevice(const char *name)
{
	SaeDeviceRequest req;
	SaeDeviceInfo info;
	SaeDevice	dev = {false, 0};
	SaeError	err;
	int			n;

	if (sae_device_parse(name, &req, &err) != SAE_OK)
		SaeReportError(&err);
	if (req.cpu)
		return dev;
	if (req.automatic)
	{
		/* asked once per session and module: the answer and its NOTICE do not repeat per call */
		static char asked_module[MAXPGPATH];
		static bool gpu_seen;

		if (strcmp(asked_module, SaeCudaModulePath()) != 0)
		{
			bool		usable = sae_cuda_devices(SaeCudaModulePath(), &info, 1, &n, &err) == SAE_OK;

			gpu_seen = usable && n > 0;
			strlcpy(asked_module, SaeCudaModulePath(), sizeof(asked_module));
			if (!gpu_seen)
				ereport(NOTICE,
						(errmsg("device \"auto\": %s; using the CPU",
								usable ? "the server sees no GPU" : err.message)));
		}
		if (!gpu_seen)
			return dev;
	}
	dev.cuda = true;
	dev.index = req.index;
	return dev;
}

/* sae.device, resolved: where model passes of this session run. */
SaeDevice
SaeSessionDevice(void)
{
	return SaeResolveDevice(sae_device);
}

/* "cpu" or "cuda:N", as runs record it. */
const char *
SaeDeviceName(SaeDevice dev)
{
	return dev.cuda ? psprintf("cuda:%d", dev.index) : "cpu";
}

/* A new backend on dev, or an ERROR saying why there is none. */
SaeBackend *
SaeBackendCreate(SaeDevice dev, bool tf32)
{
	SaeBackend *be;
	SaeError	err;

	if (!dev.cuda)
	{
		be = sae_backend_cpu_create(sae_threads);
		if (be == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		return be;
	}
	be = sae_backend_cuda_create(SaeCudaModulePath(), dev.index, tf32, &err);
	if (be == NULL)
		SaeReportError(&err);
	return be;
}

/*
 * A backend on dev, destroyed (with every buffer still on it: on the GPU,
 * device memory) when ctx is reset or deleted, so an ERROR or a cancel
 * anywhere in the call frees it.
 */
SaeBackend *
SaeBackendForContext(MemoryContext ctx, SaeDevice dev, bool tf32)
{
	SaeBackend *be = SaeBackendCreate(dev, tf32);
	MemoryContextCallback *cb;

	cb = MemoryContextAlloc(ctx, sizeof(MemoryContextCallback));
	cb->func = destroy_backend;
	cb->arg = be;
	MemoryContextRegisterResetCallback(ctx, cb);
	return be;
}

/* A float4[] from C floats. */
ArrayType *
SaeFloatArray(const float *values, int n)
{
	ArrayType  *arr;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Size		nbytes = ARR_OVERHEAD_NONULLS(1) + sizeof(float4) * (Size) n;

	arr = (ArrayType *) palloc(nbytes);
	SET_VARSIZE(arr, nbytes);
	arr->ndim = 1;
	arr->dataoffset = 0;
	arr->elemtype = FLOAT4OID;
	memcpy(ARR_DIMS(arr), dims, sizeof(dims));
	memcpy(ARR_LBOUND(arr), lbs, sizeof(lbs));
	memcpy(ARR_DATA_PTR(arr), values, sizeof(float4) * (Size) n);
	return arr;
}

/* The floats of a one-dimensional real[] without NULLs, NaN or Inf. */
float *
SaeArrayToFloats(ArrayType *arr, int *n, const char *what)
{
	float	   *out;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not contain NULLs", what)));
	*n = ARR_NDIM(arr) == 0 ? 0 : ARR_DIMS(arr)[0];
	out = palloc(sizeof(float) * (*n > 0 ? *n : 1));
	memcpy(out, ARR_DATA_PTR(arr), sizeof(float) * *n);
	for (int i = 0; i < *n; i++)
		if (isnan(out[i]) || isinf(out[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s has a non-finite value at position %d", what, i + 1)));
	return out;
}
