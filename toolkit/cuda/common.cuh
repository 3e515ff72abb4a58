// common.cuh: device code shared by every toolkit kernel (include it first in each <op>.cu).
//
// NVRTC finds it through -I<toolkit/cuda>; the host harness (toolkit/cuda/host) compiles the same file
// with g++ after cuda_host.h, so everything here must be plain CUDA C++17 without standard headers
// (NVRTC has none): use the tk:: helpers below instead of <cmath>, <limits> or <algorithm>.
//
// Conventions every kernel follows (see toolkit/cuda/README.md):
//   * template <typename T> __global__ void name(...), instantiated for T = float and double;
//   * element counts and flat indices are long long (arrays may exceed 2^31 elements);
//   * block reductions need a 1-D block whose size is a multiple of 32 (full warps), at most 1024.
#pragma once

namespace tk {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// ------------------------------------------------------------------ math in the precision of T
// float overloads call the single-precision functions, so float kernels never compute in double.
__device__ __forceinline__ float exp(float x) { return expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float log(float x) { return logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float abs(float x) { return fabsf(x); }
__device__ __forceinline__ double abs(double x) { return ::fabs(x); }

template <typename T> __device__ __forceinline__ T infinity();
template <> __device__ __forceinline__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double infinity<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}

// 1 / (1 + exp(-z)) evaluated so that exp only ever sees a non-positive argument: no overflow.
template <typename T>
__device__ __forceinline__ T sigmoid(T z) {
    if (z >= T(0)) return T(1) / (T(1) + tk::exp(-z));
    const T e = tk::exp(z);
    return e / (T(1) + e);
}

// ------------------------------------------------------------------ indexing
__device__ __forceinline__ long long global_thread_index() {
    return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() { return static_cast<long long>(blockDim.x) * gridDim.x; }

// for (long long i = first index of this thread; i < n; i += all threads of the grid): any grid size
// covers any n, so launchers may cap the number of blocks.
#define TK_GRID_STRIDE_LOOP(i, n) \
    for (long long i = ::tk::global_thread_index(); i < (n); i += ::tk::grid_stride())

// ------------------------------------------------------------------ reductions
struct Sum {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// NaN is not propagated by the comparison; callers that need NaN to win (softmax) get it from the
// later sum, which any NaN poisons.
struct Max {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return b > a ? b : a; }
};

// Every lane of the (full) warp ends with the reduction of the 32 values (butterfly exchange).
template <typename T, typename Op>
__device__ __forceinline__ T warp_all_reduce(T value, Op op) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        value = op(value, __shfl_xor_sync(kFullMask, value, offset));
    }
    return value;
}

// Every thread of the block ends with the reduction of one value per thread. All threads of the block
// must call it (it holds __syncthreads); blockDim.x must be a multiple of 32. `identity` fills the
// slots of the missing warps (0 for Sum, -infinity for Max).
template <typename T, typename Op>
__device__ T block_all_reduce(T value, Op op, T identity) {
    __shared__ T partial[kWarpSize];  // one slot per warp
    const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    const int warps = static_cast<int>(blockDim.x) / kWarpSize;
    value = warp_all_reduce(value, op);
    if (lane == 0) partial[warp] = value;
    __syncthreads();  // all partials written before any warp reads them
    value = warp_all_reduce(lane < warps ? partial[lane] : identity, op);  // each warp reduces them itself
    __syncthreads();  // all partials read before a later call overwrites them
    return value;
}

}  // namespace tk

// Dynamic shared memory (sized by the launch's shared_mem bytes), typed per kernel instantiation:
//     TK_DYNAMIC_SHARED(T, tile);   // T* tile
// Use this instead of `extern __shared__ T tile[];`, which conflicts between float and double
// instantiations and which the host harness cannot emulate. The host harness defines its own version.
#ifndef TK_DYNAMIC_SHARED
#define TK_DYNAMIC_SHARED(T, name)                                  \
    extern __shared__ __align__(16) unsigned char name##_bytes_[]; \
    T* name = reinterpret_cast<T*>(name##_bytes_)
#endif
