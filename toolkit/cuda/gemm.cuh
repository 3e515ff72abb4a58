// gemm.cuh: the small linear-algebra core of the recurrent layers (rnn.cu, lstm.cu include it): a tiled
// shared-memory matrix product C = op(A) op(B) for one tile of C (the per-step kernels call it and fuse
// their nonlinearity into its epilogue), the `matmul` kernel over whole matrices (split-k finished by
// reduce.cuh's sum_slices), and the `shift_states` kernel that lines h_{t-1} up with step t. Launchers:
// toolkit/cuda/gemm.py. The kernels defined here are part of every op whose .cu includes this header
// (toolkit/cuda/sources.py reads them from here), and every cache key (CuPy's source comment, the NVRTC
// check, the host build) hashes the headers of toolkit/cuda, so an edit here recompiles both ops.
//
// The product, for one BM x BN tile of C whose top-left corner is (row0, column map):
//   * operands are read in place in either layout (a `transposed` flag and a leading dimension), so
//     x^T delta, delta W^T or "rows of h spaced T*H apart" need no copy;
//   * the columns of B (and of the tile) go through a column map: plain consecutive columns, or (LSTM)
//     the same hidden units of the four gates i, f, c, o side by side, so that one tile holds every gate
//     of its units and the cell update can run in the same kernel;
//   * k is walked in slices of BK: each slice of A (BM x BK) and B (BK x BN) is fetched with the lanes
//     of a warp along the operand's contiguous index (coalesced), stored k-major in shared memory
//     ([kk][i], rows padded by 1 so the transposing stores spread over the banks), then every thread
//     multiplies its MR x MC micro-tile: rows ty + (BM / MR) r, columns tx + (BN / MC) c, so the 16 lanes
//     of a half-warp read 16 consecutive shared words of B and broadcast one of A;
//   * the next slice is fetched into registers before the current one is multiplied (its global loads
//     are in flight during the arithmetic): one shared buffer, two barriers per slice;
//   * outside [0, m) x [0, k) and past the last column the operands read as 0: partial tiles add nothing.
// Every element of C is one thread's sum over k in a fixed order: no atomics, the same bits on every run.
// Float products accumulate in float (the rounding error of a k-term dot product is at most about
// k eps sum|a b| in any order, the bound BLAS gives too).
#pragma once

#include "common.cuh"
#include "reduce.cuh"

#ifdef TK_HOST_EMULATION
#define GEMM_UNROLL
#else
#define GEMM_UNROLL _Pragma("unroll")
#endif

namespace gemm {

// BM x BN tile, k slices of BK, each thread an MR x MC micro-tile; (BM / MR) x (BN / MC) threads.
template <int BM, int BN, int BK, int MR, int MC>
struct Tiling {
    static constexpr int kRows = BM;
    static constexpr int kCols = BN;
    static constexpr int kDepth = BK;
    static constexpr int kMicroRows = MR;
    static constexpr int kMicroCols = MC;
    static constexpr int kThreadRows = BM / MR;
    static constexpr int kThreadCols = BN / MC;
    static constexpr int kThreads = kThreadRows * kThreadCols;
    static constexpr int kLoadsA = BM * BK / kThreads;  // elements of a slice each thread fetches
    static constexpr int kLoadsB = BK * BN / kThreads;
    static_assert(BM % MR == 0 && BN % MC == 0, "the micro-tiles must cover the tile");
    static_assert(kLoadsA * kThreads == BM * BK && kLoadsB * kThreads == BK * BN,
                  "every thread fetches the same number of elements: each slice is written completely");
    static_assert(kThreads % 32 == 0, "whole warps");
};

// The per-time-step products (N x H outputs, batches are often small): many small tiles.
using StepTiling = Tiling<32, 32, 16, 2, 2>;
// The products over all N*T rows at once (x W before the loop, the weight gradients after it).
using WideTiling = Tiling<64, 64, 16, 4, 4>;
constexpr int kThreads = 256;  // both tilings; gemm.py GEMM_THREADS
static_assert(StepTiling::kThreads == kThreads && WideTiling::kThreads == kThreads, "gpu.py launches 256");

// A matrix operand read in place: element (r, s) of the logical matrix is p[r * ld + s], or p[s * ld + r]
// when the memory holds its transpose.
template <typename T>
struct Operand {
    const T* p;
    long long ld;
    int transposed;

    __device__ __forceinline__ T at(long long r, long long s) const {
        return transposed ? p[s * ld + r] : p[r * ld + s];
    }
    // Is the logical column index s the contiguous one in memory? (Decides the lanes of a load.)
    __device__ __forceinline__ bool columns_contiguous() const { return !transposed; }
};

// Tile column q -> column of B and C: first + q while it is below n, else -1 (no such column).
struct PlainColumns {
    long long first;
    long long n;
    __device__ __forceinline__ long long operator()(int q) const { return first + q < n ? first + q : -1; }
};

// This thread's micro-tile coordinates inside a tile of Tl.
template <typename Tl>
__device__ __forceinline__ int tile_row(int r) {
    return static_cast<int>(threadIdx.x) / Tl::kThreadCols + Tl::kThreadRows * r;
}
template <typename Tl>
__device__ __forceinline__ int tile_col(int c) {
    return static_cast<int>(threadIdx.x) % Tl::kThreadCols + Tl::kThreadCols * c;
}

// Slice k0 of A (rows row0 .. row0 + BM) into registers: load l of this thread is element (i, kk) with
// e = threadIdx.x + l * threads, the lanes along whichever of i and kk is contiguous in memory.
template <typename Tl, typename T>
__device__ __forceinline__ void fetch_a(const Operand<T>& a, long long m, long long k, long long row0, long long k0,
                                        T (&r)[Tl::kLoadsA]) {
    GEMM_UNROLL
    for (int l = 0; l < Tl::kLoadsA; ++l) {
        const int e = static_cast<int>(threadIdx.x) + l * Tl::kThreads;
        const bool along_k = a.columns_contiguous();
        const long long i = row0 + (along_k ? e / Tl::kDepth : e % Tl::kRows);
        const long long kk = k0 + (along_k ? e % Tl::kDepth : e / Tl::kRows);
        r[l] = (i < m && kk < k) ? a.at(i, kk) : T(0);
    }
}

template <typename Tl, typename T>
__device__ __forceinline__ void stash_a(const Operand<T>& a, T (*as)[Tl::kRows + 1], const T (&r)[Tl::kLoadsA]) {
    GEMM_UNROLL
    for (int l = 0; l < Tl::kLoadsA; ++l) {
        const int e = static_cast<int>(threadIdx.x) + l * Tl::kThreads;
        const bool along_k = a.columns_contiguous();
        as[along_k ? e % Tl::kDepth : e / Tl::kRows][along_k ? e / Tl::kDepth : e % Tl::kRows] = r[l];
    }
}

// Slice k0 of B (tile columns through the column map), like fetch_a.
template <typename Tl, typename T, typename Columns>
__device__ __forceinline__ void fetch_b(const Operand<T>& b, long long k, const Columns& columns, long long k0,
                                        T (&r)[Tl::kLoadsB]) {
    GEMM_UNROLL
    for (int l = 0; l < Tl::kLoadsB; ++l) {
        const int e = static_cast<int>(threadIdx.x) + l * Tl::kThreads;
        const bool along_q = b.columns_contiguous();
        const long long column = columns(along_q ? e % Tl::kCols : e / Tl::kDepth);
        const long long kk = k0 + (along_q ? e / Tl::kCols : e % Tl::kDepth);
        r[l] = (column >= 0 && kk < k) ? b.at(kk, column) : T(0);
    }
}

template <typename Tl, typename T>
__device__ __forceinline__ void stash_b(const Operand<T>& b, T (*bs)[Tl::kCols + 1], const T (&r)[Tl::kLoadsB]) {
    GEMM_UNROLL
    for (int l = 0; l < Tl::kLoadsB; ++l) {
        const int e = static_cast<int>(threadIdx.x) + l * Tl::kThreads;
        const bool along_q = b.columns_contiguous();
        bs[along_q ? e / Tl::kCols : e % Tl::kDepth][along_q ? e % Tl::kCols : e / Tl::kDepth] = r[l];
    }
}

// acc = A[row0 .. row0 + BM, k_begin .. k] B[k_begin .. k, columns] for this thread's micro-tile (see
// tile_row / tile_col). Every thread of the block must call it with the same arguments (it holds
// __syncthreads); it ends with a barrier, so the caller may reuse shared memory or start the next tile.
// An empty k range is allowed: acc is 0 and neither operand is read.
template <typename Tl, typename T, typename Columns>
__device__ void multiply_tile(const Operand<T>& a, const Operand<T>& b, long long m, long long k, long long row0,
                              const Columns& columns, T (&acc)[Tl::kMicroRows][Tl::kMicroCols],
                              long long k_begin = 0) {
    __shared__ T as[Tl::kDepth][Tl::kRows + 1];
    __shared__ T bs[Tl::kDepth][Tl::kCols + 1];
    GEMM_UNROLL
    for (int r = 0; r < Tl::kMicroRows; ++r) {
        GEMM_UNROLL
        for (int c = 0; c < Tl::kMicroCols; ++c) acc[r][c] = T(0);
    }
    if (k_begin >= k) return;  // uniform over the block: no barrier is skipped by part of it
    T ra[Tl::kLoadsA], rb[Tl::kLoadsB];
    fetch_a<Tl>(a, m, k, row0, k_begin, ra);
    fetch_b<Tl>(b, k, columns, k_begin, rb);
    for (long long k0 = k_begin; k0 < k; k0 += Tl::kDepth) {
        stash_a<Tl>(a, as, ra);
        stash_b<Tl>(b, bs, rb);
        __syncthreads();  // the slice is complete before anyone multiplies it
        if (k0 + Tl::kDepth < k) {  // the next slice's loads overlap the arithmetic below
            fetch_a<Tl>(a, m, k, row0, k0 + Tl::kDepth, ra);
            fetch_b<Tl>(b, k, columns, k0 + Tl::kDepth, rb);
        }
        GEMM_UNROLL
        for (int kk = 0; kk < Tl::kDepth; ++kk) {
            T av[Tl::kMicroRows], bv[Tl::kMicroCols];
            GEMM_UNROLL
            for (int r = 0; r < Tl::kMicroRows; ++r) av[r] = as[kk][tile_row<Tl>(r)];
            GEMM_UNROLL
            for (int c = 0; c < Tl::kMicroCols; ++c) bv[c] = bs[kk][tile_col<Tl>(c)];
            GEMM_UNROLL
            for (int r = 0; r < Tl::kMicroRows; ++r) {
                GEMM_UNROLL
                for (int c = 0; c < Tl::kMicroCols; ++c) acc[r][c] += av[r] * bv[c];
            }
        }
        __syncthreads();  // everyone has read the slice before the next one overwrites it
    }
}

// C (m, n) = op(A) op(B) (+ bias[j]) (+ addend[i, j]) over all tiles, grid-strided (row-major tile order:
// blocks running together share a row panel of A). bias / addend are never read when their flag is 0.
// Split-k (a weight gradient sums over all N*T rows into a few tiles: too few blocks for the GPU): work
// item = (split s, tile); split s multiplies k range [s k_per_split, (s + 1) k_per_split) into slice s of
// c (splits m n elements; then bias and addend are off and sum_slices finishes).
template <typename T>
__device__ void product(const Operand<T>& a, const Operand<T>& b, const T* __restrict__ bias,
                        const T* __restrict__ addend, T* __restrict__ c, long long m, long long n, long long k,
                        long long k_per_split, int splits, int has_bias, int has_addend) {
    using Tl = WideTiling;
    const long long tiles_n = (n + Tl::kCols - 1) / Tl::kCols;
    const long long tiles = (m + Tl::kRows - 1) / Tl::kRows * tiles_n;
    for (long long item = blockIdx.x; item < tiles * splits; item += gridDim.x) {  // uniform over the block
        const long long split = item / tiles;
        const long long tile = item % tiles;
        const long long row0 = tile / tiles_n * Tl::kRows;
        const long long col0 = tile % tiles_n * Tl::kCols;
        T acc[Tl::kMicroRows][Tl::kMicroCols];
        multiply_tile<Tl>(a, b, m, min(k, (split + 1) * k_per_split), row0, PlainColumns{col0, n}, acc,
                          split * k_per_split);
        T* out = c + split * m * n;
        GEMM_UNROLL
        for (int r = 0; r < Tl::kMicroRows; ++r) {
            const long long i = row0 + tile_row<Tl>(r);
            if (i >= m) continue;
            GEMM_UNROLL
            for (int q = 0; q < Tl::kMicroCols; ++q) {
                const long long j = col0 + tile_col<Tl>(q);
                if (j >= n) continue;
                T v = acc[r][q];
                if (has_bias) v += bias[j];
                if (has_addend) v += addend[i * n + j];
                out[i * n + j] = v;
            }
        }
    }
}

}  // namespace gemm

// c (m, n) = op(a) op(b) (+ bias over the rows) (+ addend (m, n)); op = transpose where flagged. a is
// (m, k) with rows lda apart, or its transpose (k, m) with rows lda apart; likewise b with ldb. With
// splits > 1, c is a (splits, m, n) workspace of partial products over k ranges (gemm::product), which
// sum_slices (reduce.cuh) adds in slice order.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
matmul(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias, const T* __restrict__ addend,
       T* __restrict__ c, long long m, long long n, long long k, long long lda, long long ldb, int a_transposed,
       int b_transposed, long long k_per_split, int splits, int has_bias, int has_addend) {
    gemm::product(gemm::Operand<T>{a, lda, a_transposed}, gemm::Operand<T>{b, ldb, b_transposed}, bias, addend, c,
                  m, n, k, k_per_split, splits, has_bias, has_addend);
}

// previous (N, T, width)[n, t] = states[n, t - 1], and initial[n] at t = 0: the state each step started
// from, in the layout of the steps, so that a weight gradient sum_t prev_t^T d_t is one product over N*T rows.
template <typename T>
__global__ void shift_states(const T* __restrict__ initial, const T* __restrict__ states, T* __restrict__ previous,
                             long long batch, long long steps, long long width) {
    TK_GRID_STRIDE_LOOP(e, batch * steps * width) {
        const long long j = e % width;
        const long long t = e / width % steps;
        const long long n = e / (width * steps);
        previous[e] = t == 0 ? initial[n * width + j] : states[e - width];
    }
}
