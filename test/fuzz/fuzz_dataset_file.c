/*
 * fuzz_dataset_file.c — libFuzzer target for the token dataset file reader
 * (src/core/dataset_file.c): JSON lines, plain text and uint16 streams.
 *
 * The first byte picks the format; the rest is the file.  Every document
 * handed to the callbacks is read in full (ASan catches a length that
 * lies), and a failure must come with a message.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dataset_file.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
on_text(void *arg, const char *text, size_t len, int64_t line, SaeError *err)
{
	size_t	   *sum = arg;

	for (size_t i = 0; i < len; i++)
		*sum += (unsigned char) text[i];
	return SAE_OK;
}

static int
on_tokens(void *arg, const int32_t *ids, size_t n, int64_t line, SaeError *err)
{
	size_t	   *sum = arg;

	for (size_t i = 0; i < n; i++)
	{
		if (ids[i] < 0)
			abort();			/* the reader promises non-negative ids */
		*sum += (size_t) ids[i];
	}
	return SAE_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const formats[] = {"jsonl", "text", "uint16"};
	size_t		sum = 0;
	SaeDatasetCallbacks cb = {&sum, on_text, on_tokens};
	SaeError	err = {0};

	if (size < 1)
		return 0;
	if (sae_dataset_bytes_read((const char *) data + 1, size - 1, "fuzz", formats[data[0] % 3], &cb, &err) != SAE_OK &&
		err.message[0] == '\0')
		abort();
	return (int) (sum & 0);
}
