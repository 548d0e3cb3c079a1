/*
 * error.h — how the engine reports failure.
 *
 * The engine never exits and never longjmps: a failing call fills a SaeError
 * and returns its code.  The PostgreSQL glue maps the code to a SQLSTATE and
 * the three strings to errmsg/errdetail/errhint.
 */
#ifndef SAE_ERROR_H
#define SAE_ERROR_H

typedef enum SaeErrCode
{
	SAE_OK = 0,
	SAE_ERR_INVALID_PARAMETER,	/* a config key has a bad value */
	SAE_ERR_INVALID_DATA,		/* activations: NaN, wrong length, ... */
	SAE_ERR_NO_DATA,			/* the source produced no rows */
	SAE_ERR_OUT_OF_MEMORY,
	SAE_ERR_LIMIT,				/* over the memory budget or a size limit */
	SAE_ERR_NOT_SUPPORTED,
	SAE_ERR_CANCELLED,			/* the should_stop callback said so */
	SAE_ERR_IO,					/* a download or a write into the model cache failed */
	SAE_ERR_DEVICE,				/* the GPU, its driver or the CUDA libraries failed */
	SAE_ERR_INTERNAL
} SaeErrCode;

typedef struct SaeError
{
	SaeErrCode	code;
	char		message[512];
	char		detail[512];
	char		hint[512];
} SaeError;

/* Fill err (if not NULL) with a printf-style message; returns code. */
int			sae_error(SaeError *err, SaeErrCode code, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Add a detail or hint sentence to an error already set; returns its code. */
int			sae_error_detail(SaeError *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
int			sae_error_hint(SaeError *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

#endif
