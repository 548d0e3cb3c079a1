/*
 * dataset_file.h — reading token datasets from files on the server:
 *
 *   "jsonl"   one JSON object per line: {"text": "..."} is a document to
 *             tokenize; {"input_ids": [...]} or {"tokens": [...]} is one
 *             already tokenized row (HF datasets' exports; SAELens's
 *             pretokenized datasets);
 *   "text"    plain UTF-8 text, one document per line (empty lines skipped);
 *   "uint16"  a stream of little-endian uint16 token ids (nanoGPT's .bin
 *             files), one long document.
 *
 * The file is mapped and walked once; each document goes to a callback.
 */
#ifndef SAE_DATASET_FILE_H
#define SAE_DATASET_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct SaeDatasetCallbacks
{
	void	   *arg;
	/* a text document (UTF-8, not NUL-terminated); line is 1-based, 0 for none */
	int			(*text) (void *arg, const char *text, size_t len, int64_t line, SaeError *err);
	/* an already tokenized row, or (uint16) the whole token stream */
	int			(*tokens) (void *arg, const int32_t *ids, size_t n, int64_t line, SaeError *err);
} SaeDatasetCallbacks;

/* Whether format is one of the names above. */
int			sae_dataset_format_check(const char *format, SaeError *err);

int			sae_dataset_file_read(const char *path, const char *format,
								  const SaeDatasetCallbacks *cb, SaeError *err);

/* The same over len bytes in memory (name stands for the file in errors; for fuzzing). */
int			sae_dataset_bytes_read(const char *data, size_t len, const char *name,
								   const char *format, const SaeDatasetCallbacks *cb, SaeError *err);

#endif
