// conv2d.cuh: the tiled matrix-product main loop behind every conv2d kernel (conv2d.cu).
//
// All three passes of a convolution are matrix products whose operands are never stored: they are
// gathered from the tensors on the fly (an "implicit GEMM"). This header holds the part they share,
// C[m, n] = sum_k A[m, k] B[k, n] for one kTileM x kTileN tile of C, and knows nothing about images:
// each kernel hands it two operand loaders (conv2d.cu) that fill registers with one k slice of A and B.
//
// Design (the classic register-blocked SGEMM, as toolkit/ops/dense/dense.cu):
//   * a block of 256 threads (16 x 16) owns a 128 x kTileN tile of C, kTileN = 128 ("wide") or 64
//     ("narrow", for products with few columns: Cout or Cin <= 64 would leave half a wide tile idle);
//   * the k loop walks slices of 8; each slice of A (8 x 128) and B (8 x kTileN) is staged in shared
//     memory k-major ([k][i]) whatever the operand's memory layout, so the inner product reads four
//     consecutive elements of a shared row at once (one 128-bit load for float);
//   * each thread accumulates an 8 x 8 (wide) or 8 x 4 (narrow) micro-tile in registers: rows ty*4 + {0..3}
//     and 64 + ty*4 + {0..3}, columns likewise with tx (wide) or tx*4 + {0..3} (narrow);
//   * double buffering: the next slice is gathered from global memory into registers while the current
//     one is multiplied, then stored into the other shared buffer: one __syncthreads per k step;
//   * shared rows are padded by 4 elements, so the transposing stores of a "lanes along k" operand hit 32
//     different banks (row kk of lane l starts at bank 4 kk mod 32).
// Float kernels multiply and accumulate in float, as cuDNN does: a k-term dot product's rounding error is
// bounded by k eps sum|a b| whatever the summation order (the tests hold the kernels to that bound).
#pragma once

#include "common.cuh"

#ifdef TK_HOST_EMULATION
#define CONV_UNROLL
#else
#define CONV_UNROLL _Pragma("unroll")
#endif

namespace conv {

constexpr int kTileM = 128;          // rows of C per block (gpu.TILE_M)
constexpr int kWide = 128;           // columns of C per block, wide variant (gpu.TILE_N_WIDE)
constexpr int kNarrow = 64;          // ... narrow variant (gpu.TILE_N_NARROW)
constexpr int kTileK = 8;            // depth of one k step (gpu.TILE_K)
constexpr int kThreads = 256;        // gpu.GEMM_THREADS: 16 x 16 threads
constexpr int kThreadsPerSide = 16;
constexpr int kQuad = 4;             // a thread's rows come in groups of 4 consecutive ...
constexpr int kMicroM = 8;           // ... two groups, 64 apart: 8 rows
constexpr int kPad = 4;              // shared row padding (bank spread, keeps rows 16/32-byte aligned)
constexpr int kGroupRows = 8;        // tile-rows per L2-friendly group of tiles

// How a block's 256 threads share the loads of one slice (8 deep, kExtent wide) of an operand; each
// thread fetches kExtent / 32 elements (4 for 128, 2 for 64). The choice follows the operand's memory
// layout so that a warp's loads are coalesced:
//   lanes along i (kAlongI): thread t takes i = t % kExtent and kk = t / kExtent + (256 / kExtent) j:
//                            for an operand whose i index is contiguous in memory (weights w[k, co]).
//   lanes along k (kAlongK): thread t takes kk = t % 8 and i = t / 8 + 32 j: for an operand whose k index
//                            is contiguous (the channels of a pixel in an im2col row): a warp reads 4 rows
//                            of 8 consecutive elements (4 full 32-byte sectors when aligned).
enum Lanes { kAlongI, kAlongK };

template <int kExtent>
struct Slice {
    static constexpr int kLoads = kExtent * kTileK / kThreads;
    static constexpr int kStride = kExtent + kPad;
    static_assert(kExtent % 32 == 0 && kLoads >= 1, "a slice needs whole warps of loads");
};

// Coordinates (kk in [0, 8), i in [0, kExtent)) of load j of this thread.
template <int kExtent, Lanes kLanes>
__device__ __forceinline__ int slice_k(int j) {
    const int t = static_cast<int>(threadIdx.x);
    return kLanes == kAlongI ? t / kExtent + (kThreads / kExtent) * j : t % kTileK;
}

template <int kExtent, Lanes kLanes>
__device__ __forceinline__ int slice_i(int j) {
    const int t = static_cast<int>(threadIdx.x);
    return kLanes == kAlongI ? t % kExtent : t / kTileK + (kThreads / kTileK) * j;
}

// The registers of one slice into shared memory, k-major: s[kk * kStride + i].
template <typename T, int kExtent, Lanes kLanes>
__device__ __forceinline__ void store_slice(T* __restrict__ s, const T (&r)[Slice<kExtent>::kLoads]) {
    CONV_UNROLL
    for (int j = 0; j < Slice<kExtent>::kLoads; ++j) {
        s[slice_k<kExtent, kLanes>(j) * Slice<kExtent>::kStride + slice_i<kExtent, kLanes>(j)] = r[j];
    }
}

// Four consecutive elements of a shared row, read in one go (16-byte aligned: a 128-bit load for float).
template <typename T>
struct alignas(kQuad * sizeof(T)) Quad {
    T v[kQuad];
};

// Micro-tile index q of thread coordinate t -> row (or column) of the tile. Groups of 4 consecutive
// indices, 64 apart (a narrow tile's thread has only the first group).
template <int kExtent>
__device__ __forceinline__ int micro_offset(int t, int q) {
    return (q / kQuad) * (kExtent / 2) + t * kQuad + q % kQuad;
}

template <typename T, int kExtent>
__device__ __forceinline__ void read_micro(const T* __restrict__ row, int t, T (&out)[kExtent / kThreadsPerSide]) {
    CONV_UNROLL
    for (int g = 0; g < kExtent / kThreadsPerSide / kQuad; ++g) {
        const Quad<T> quad = *reinterpret_cast<const Quad<T>*>(row + g * (kExtent / 2) + t * kQuad);
        CONV_UNROLL
        for (int q = 0; q < kQuad; ++q) out[g * kQuad + q] = quad.v[q];
    }
}

// Tile number -> (tile row, tile column), grouped: kGroupRows tile-rows are swept column by column, so
// blocks running at the same time share panels of both operands in the L2 cache.
__device__ __forceinline__ void tile_coordinates(long long tile, long long tiles_m, long long tiles_n,
                                                 long long& tm, long long& tn) {
    const long long per_group = kGroupRows * tiles_n;
    const long long first = (tile / per_group) * kGroupRows;
    const long long rows_here = min(tiles_m - first, static_cast<long long>(kGroupRows));
    const long long in_group = tile % per_group;
    tm = first + in_group % rows_here;
    tn = in_group / rows_here;
}

// Shared memory of the main loop: two buffers (double buffering) of an A slice and a B slice.
template <typename T, int kTileN>
struct alignas(32) Stage {
    T a[2][kTileK * Slice<kTileM>::kStride];
    T b[2][kTileK * Slice<kTileN>::kStride];
};

// acc += A B over `steps` k slices. LoadA / LoadB provide
//     static constexpr Lanes kLanes;                            the thread layout of their slices
//     void load(T (&r)[Slice<extent>::kLoads]);               this thread's elements of the next slice
// where every load() call moves on to the following slice (so gathers can update indices incrementally
// instead of dividing). Out-of-range elements (past the matrix or in the padding) load as 0: partial
// tiles add nothing. Every thread of the block must call this (it holds barriers); steps is uniform.
// On return the block has passed a barrier after its last read of `stage`: the caller may reuse it.
template <typename T, int kTileN, class LoadA, class LoadB>
__device__ __forceinline__ void multiply_tiles(LoadA& load_a, LoadB& load_b, long long steps, Stage<T, kTileN>& stage,
                                               T (&acc)[kMicroM][kTileN / kThreadsPerSide]) {
    constexpr int kMicroN = kTileN / kThreadsPerSide;
    const int tx = static_cast<int>(threadIdx.x) % kThreadsPerSide;
    const int ty = static_cast<int>(threadIdx.x) / kThreadsPerSide;
    CONV_UNROLL
    for (int i = 0; i < kMicroM; ++i) {
        CONV_UNROLL
        for (int j = 0; j < kMicroN; ++j) acc[i][j] = T(0);
    }
    if (steps <= 0) return;
    T ra[Slice<kTileM>::kLoads], rb[Slice<kTileN>::kLoads];
    load_a.load(ra);
    load_b.load(rb);
    store_slice<T, kTileM, LoadA::kLanes>(stage.a[0], ra);
    store_slice<T, kTileN, LoadB::kLanes>(stage.b[0], rb);
    __syncthreads();  // slice 0 complete before anyone multiplies it
    int current = 0;
    for (long long step = 0; step < steps; ++step) {
        const bool more = step + 1 < steps;  // the same for every thread: the barrier below is uniform
        if (more) {  // issue the next slice's global loads now; they complete while we multiply
            load_a.load(ra);
            load_b.load(rb);
        }
        const T* as = stage.a[current];
        const T* bs = stage.b[current];
        CONV_UNROLL
        for (int kk = 0; kk < kTileK; ++kk) {
            T a[kMicroM], b[kMicroN];
            read_micro<T, kTileM>(as + kk * Slice<kTileM>::kStride, ty, a);
            read_micro<T, kTileN>(bs + kk * Slice<kTileN>::kStride, tx, b);
            CONV_UNROLL
            for (int i = 0; i < kMicroM; ++i) {
                CONV_UNROLL
                for (int j = 0; j < kMicroN; ++j) acc[i][j] += a[i] * b[j];
            }
        }
        if (more) {
            // The other buffer was last read in the previous step, which ended with a barrier: safe to fill.
            store_slice<T, kTileM, LoadA::kLanes>(stage.a[current ^ 1], ra);
            store_slice<T, kTileN, LoadB::kLanes>(stage.b[current ^ 1], rb);
        }
        __syncthreads();  // next buffer written and current buffer read by all, before the roles swap
        current ^= 1;
    }
}

// Calls store(row, col, value) for every element of this thread's micro-tile that lies inside the
// rows x cols matrix C (the tile starts at m0, n0).
template <typename T, int kTileN, class Store>
__device__ __forceinline__ void store_tile(const T (&acc)[kMicroM][kTileN / kThreadsPerSide], long long m0,
                                           long long n0, long long rows, long long cols, Store store) {
    const int tx = static_cast<int>(threadIdx.x) % kThreadsPerSide;
    const int ty = static_cast<int>(threadIdx.x) / kThreadsPerSide;
    CONV_UNROLL
    for (int i = 0; i < kMicroM; ++i) {
        const long long row = m0 + micro_offset<kTileM>(ty, i);
        if (row >= rows) continue;
        CONV_UNROLL
        for (int j = 0; j < kTileN / kThreadsPerSide; ++j) {
            const long long col = n0 + micro_offset<kTileN>(tx, j);
            if (col < cols) store(row, col, acc[i][j]);
        }
    }
}

}  // namespace conv
