/*
 * cublas_v2.h — the two cuBLAS products the CUDA backend calls, on the CPU
 * (CUDA emulation for tests, see cuda_runtime.h).  Column-major, as cuBLAS
 * defines them.
 */
#ifndef SAE_CUDA_EMU_CUBLAS_H
#define SAE_CUDA_EMU_CUBLAS_H

#include "cuda_runtime.h"

typedef struct cublasContext *cublasHandle_t;

typedef enum
{
	CUBLAS_STATUS_SUCCESS = 0,
	CUBLAS_STATUS_INVALID_VALUE = 7
} cublasStatus_t;

typedef enum
{
	CUBLAS_OP_N, CUBLAS_OP_T
} cublasOperation_t;

typedef enum
{
	CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH
} cublasMath_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
const char *cublasGetStatusString(cublasStatus_t s);
const char *cublasGetStatusName(cublasStatus_t s);

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
						   const float *alpha, const float *A, int lda, const float *B, int ldb,
						   const float *beta, float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
										 int m, int n, int k, const float *alpha,
										 const float *A, int lda, long long strideA,
										 const float *B, int ldb, long long strideB,
										 const float *beta, float *C, int ldc, long long strideC,
										 int batch);

#endif
