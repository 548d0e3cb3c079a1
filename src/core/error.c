/*
 * error.c — filling SaeError structs.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
sae_error(SaeError *err, SaeErrCode code, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return code;
	memset(err, 0, sizeof(*err));
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

int
sae_error_detail(SaeError *err, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return SAE_ERR_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	return err->code;
}

int
sae_error_hint(SaeError *err, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return SAE_ERR_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
	va_end(ap);
	return err->code;
}
