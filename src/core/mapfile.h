/*
 * mapfile.h — a model file mapped read-only into memory.
 *
 * The safetensors and torch readers both parse a whole file in place; this
 * opens, checks and maps it for them, with the file's kind in every error.
 */
#ifndef SAE_MAPFILE_H
#define SAE_MAPFILE_H

#include <stddef.h>

#include "error.h"

/*
 * Map the regular file at path.  A file shorter than min_size is not
 * mapped: *base is NULL and *size its length, so the caller can say why
 * that is too short for its format.  Unmap with sae_unmap_file.
 */
int			sae_map_file(const char *path, const char *kind, size_t min_size,
						 const void **base, size_t *size, SaeError *err);
void		sae_unmap_file(const void *base, size_t size);

#endif
