/*
 * cub/cub.cuh — the three CUB pieces the CUDA backend uses, on the CPU
 * (CUDA emulation for tests, see ../cuda_runtime.h).
 */
#ifndef SAE_CUDA_EMU_CUB_H
#define SAE_CUDA_EMU_CUB_H

#include "../cuda_runtime.h"

#include <algorithm>
#include <vector>

namespace cub
{

/* A block-wide exclusive prefix sum: every thread leaves its value, then sums those before it. */
template <typename T, int BLOCK_THREADS>
class BlockScan
{
public:
	struct TempStorage
	{
		T			v[BLOCK_THREADS];
	};

	explicit BlockScan(TempStorage &t) : tmp(t) {}

	void		ExclusiveSum(T in, T &out, T &aggregate)
	{
		tmp.v[threadIdx.x] = in;
		__syncthreads();
		out = 0;
		aggregate = 0;
		for (unsigned i = 0; i < blockDim.x; i++)
		{
			if (i < threadIdx.x)
				out += tmp.v[i];
			aggregate += tmp.v[i];
		}
		/* as in CUB, no barrier after: reusing tmp needs the caller's __syncthreads */
	}

private:
	TempStorage &tmp;
};

struct DeviceScan
{
	/* A first call with tmp NULL asks for the temporary size, as in CUB. */
	template <typename In, typename Out>
	static cudaError_t InclusiveSum(void *tmp, size_t &bytes, In in, Out out, int n)
	{
		if (tmp == NULL)
		{
			bytes = 16;
			return cudaSuccess;
		}
		for (int i = 0, s = 0; i < n; i++)
			out[i] = s += in[i];
		return cudaSuccess;
	}
};

struct DeviceRadixSort
{
	/* Stable, by the key bits [begin_bit, end_bit), as CUB's radix sort. */
	template <typename K, typename V>
	static cudaError_t SortPairs(void *tmp, size_t &bytes, const K *keys_in, K *keys_out,
								 const V *values_in, V *values_out, int n, int begin_bit, int end_bit)
	{
		std::vector<int> order(n);
		unsigned long long mask = end_bit - begin_bit >= 64 ? ~0ULL : (1ULL << (end_bit - begin_bit)) - 1;

		if (tmp == NULL)
		{
			bytes = 16;
			return cudaSuccess;
		}
		for (int i = 0; i < n; i++)
			order[i] = i;
		std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
			return (((unsigned long long) keys_in[a] >> begin_bit) & mask) <
				(((unsigned long long) keys_in[b] >> begin_bit) & mask);
		});
		std::vector<K> k(n);
		std::vector<V> v(n);
		for (int i = 0; i < n; i++)
		{
			k[i] = keys_in[order[i]];
			v[i] = values_in[order[i]];
		}
		std::copy(k.begin(), k.end(), keys_out);
		std::copy(v.begin(), v.end(), values_out);
		return cudaSuccess;
	}
};

}

#endif
