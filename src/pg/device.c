/*
 * device.c — sae_device_info(): the GPUs the CUDA backend sees.
 */
#include "sae_pg.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "device.h"

PG_FUNCTION_INFO_V1(sae_device_info);

#define MAX_LISTED 64

/* "13.0" from CUDA's 1000 * major + 10 * minor. */
static Datum
cuda_version(int v)
{
	return CStringGetTextDatum(psprintf("%d.%d", v / 1000, (v % 1000) / 10));
}

/*
 * One row per GPU.  Where the CUDA backend cannot be used (not built, no
 * driver, no GPU) there are no rows and a NOTICE says which: a query over
 * the devices is not an error on a CPU-only server.
 */
Datum
sae_device_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SaeDeviceInfo *info = palloc(sizeof(SaeDeviceInfo) * MAX_LISTED);
	SaeError	err;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (sae_cuda_devices(SaeCudaModulePath(), info, MAX_LISTED, &n, &err) != SAE_OK)
	{
		ereport(NOTICE, (errmsg("%s", err.message), err.detail[0] ? errdetail("%s", err.detail) : 0));
		return (Datum) 0;
	}
	for (int i = 0; i < n; i++)
	{
		const SaeDeviceInfo *d = &info[i];
		Datum		v[8];
		bool		nulls[8] = {0};

		v[0] = CStringGetTextDatum(psprintf("cuda:%d", d->index));
		v[1] = CStringGetTextDatum(d->name);
		v[2] = CStringGetTextDatum(psprintf("%d.%d", d->major, d->minor));
		v[3] = Int32GetDatum(d->multiprocessors);
		v[4] = Int64GetDatum(d->total_bytes >> 20);
		v[5] = Int64GetDatum(d->free_bytes >> 20);
		v[6] = cuda_version(d->driver_version);
		v[7] = cuda_version(d->runtime_version);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
