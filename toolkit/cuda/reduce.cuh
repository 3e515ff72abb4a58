// reduce.cuh: deterministic reductions shared by several ops (their launchers: toolkit/cuda/reduce.py).
//
//   column_sums_partial + column_sums_finish   sums[j] = sum over the rows of x (rows, cols)[r, j]:
//       the bias gradients of dense, conv2d (dy as (N*OH*OW, Cout)), rnn and lstm;
//   sum_slices   c = partial[0] + partial[1] + ... (+ bias over the rows) (+ addend): the second pass of
//       a split-k matrix product (dense, conv2d's dw, the recurrent layers' products).
//
// No atomics: every output element is one thread's sum in an order fixed by the shapes (never by the grid
// or the device), so a result is the same bits on every run and every GPU.
//
// These are kernels, not device helpers: an op launches them by these names from its own module, and the
// kernel list of an op (toolkit/cuda/sources.py) includes the kernels of the project headers its .cu
// includes, so `#include "reduce.cuh"` is all an op needs.
#pragma once

#include "common.cuh"

// Column sums, stage 1: partial[chunk, j] = sum of x[r, j] over the rows r of the chunk, in double (a float
// running sum over a large batch, or N*OH*OW pixels, or N*T steps, drifts by O(rows eps); cpu.py
// accumulates in double too). Work item = (row chunk, 32 columns): the 32 lanes of each warp take
// consecutive columns (coalesced), the warps of the block take every (blockDim.x / 32)-th row of the
// chunk, then warp 0 adds the warps' sums in warp order. blockDim.x: a multiple of 32, at most 1024.
template <typename T>
__global__ void column_sums_partial(const T* __restrict__ x, double* __restrict__ partial, long long rows,
                                    long long cols, long long rows_per_chunk) {
    __shared__ double warp_sums[tk::kWarpSize][tk::kWarpSize];  // [warp][lane]
    const int lane = static_cast<int>(threadIdx.x) % tk::kWarpSize;
    const int warp = static_cast<int>(threadIdx.x) / tk::kWarpSize;
    const int warps = static_cast<int>(blockDim.x) / tk::kWarpSize;
    const long long chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    const long long column_groups = (cols + tk::kWarpSize - 1) / tk::kWarpSize;
    for (long long item = blockIdx.x; item < chunks * column_groups; item += gridDim.x) {  // uniform over the block
        const long long chunk = item / column_groups;
        const long long col = (item % column_groups) * tk::kWarpSize + lane;
        const long long end = min(rows, (chunk + 1) * rows_per_chunk);
        double s = 0.0;
        if (col < cols) {
            for (long long r = chunk * rows_per_chunk + warp; r < end; r += warps) s += x[r * cols + col];
        }
        warp_sums[warp][lane] = s;
        __syncthreads();  // every warp's sums written before warp 0 adds them
        if (warp == 0 && col < cols) {
            double total = 0.0;
            for (int w = 0; w < warps; ++w) total += warp_sums[w][lane];
            partial[chunk * cols + col] = total;
        }
        __syncthreads();  // warp 0 done reading before the next item overwrites warp_sums
    }
}

// Column sums, stage 2: sums[j] = the chunks' partial sums added in chunk order, rounded once to T.
template <typename T>
__global__ void column_sums_finish(const double* __restrict__ partial, T* __restrict__ sums, long long chunks,
                                   long long cols) {
    TK_GRID_STRIDE_LOOP(j, cols) {
        double s = 0.0;
        for (long long chunk = 0; chunk < chunks; ++chunk) s += partial[chunk * cols + j];
        sums[j] = static_cast<T>(s);
    }
}

// c (size elements, rows of n) = partial[0] + partial[1] + ... + partial[splits - 1], added in slice order,
// then + bias[e % n] (has_bias) and + addend[e] (has_addend), in T. bias / addend are never read when
// their flag is 0 (the launcher then passes any array).
template <typename T>
__global__ void sum_slices(const T* __restrict__ partial, const T* __restrict__ bias, const T* __restrict__ addend,
                           T* __restrict__ c, long long size, long long n, int splits, int has_bias, int has_addend) {
    TK_GRID_STRIDE_LOOP(e, size) {
        T v = partial[e];
        for (int s = 1; s < splits; ++s) v += partial[s * size + e];
        if (has_bias) v += bias[e % n];
        if (has_addend) v += addend[e];
        c[e] = v;
    }
}
