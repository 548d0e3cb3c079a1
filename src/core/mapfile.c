/*
 * mapfile.c — mapping model files read-only (see mapfile.h).
 */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* at most this many bytes of a path in a message */
#define PATH_SHOWN 200

int
sae_map_file(const char *path, const char *kind, size_t min_size,
			 const void **base, size_t *size, SaeError *err)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	void	   *p;

	*base = NULL;
	*size = 0;
	if (fd < 0)
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "could not open %s \"%.*s\": %s",
						 kind, PATH_SHOWN, path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
	{
		close(fd);
		return sae_error(err, SAE_ERR_INVALID_PARAMETER, "%s \"%.*s\" is not a regular file",
						 kind, PATH_SHOWN, path);
	}
	*size = (size_t) sb.st_size;
	if (*size < min_size)
	{
		close(fd);
		return SAE_OK;
	}
	p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return sae_error(err, SAE_ERR_OUT_OF_MEMORY, "could not map %s \"%.*s\": %s",
						 kind, PATH_SHOWN, path, strerror(errno));
	*base = p;
	return SAE_OK;
}

void
sae_unmap_file(const void *base, size_t size)
{
	if (base != NULL)
		munmap((void *) base, size);
}
