// Dense layer on the GPU: the same products as reference.py / cpu.py, all in our own kernels.
//
//   forward   y  = x W + b      gemm(A = x,  B = W,   bias = b)    A (N, in) row-major, B (in, out) row-major
//   backward  dx = dy W^T       gemm(A = dy, B = W^T)              B read from W's (in, out) storage: transposed
//             dW = x^T dy       gemm(A = x^T, B = dy)              A read from x's (N, in) storage: transposed
//             db = sum_n dy     column_sums_partial + column_sums_finish (reduce.cuh: deterministic, float64
//                               accumulator)
//
// gemm computes C (m, n) = A (m, k) B (k, n) (+ bias broadcast over the rows). Transposed operands are read
// in place through a flag, never materialised. Design (the classic register-blocked SGEMM):
//   * a block of 256 threads owns a 128 x 128 tile of C and walks k in steps of 8;
//   * each step stages an 8 x 128 slice of A and of B in shared memory, stored k-major ([k][i]) whatever
//     the operand's layout, so the inner product reads 4 consecutive elements of a row (one 128-bit load);
//   * each thread accumulates an 8 x 8 micro-tile of C in registers: rows ty*4 + {0..3} and 64 + ty*4 + {0..3},
//     columns likewise with tx: 64 fused multiply-adds per 16 shared-memory reads;
//   * double buffering: the next slice is fetched from global memory into registers while the current one
//     is multiplied, then stored into the other shared buffer: one __syncthreads per k step;
//   * the global loads are coalesced for both layouts (lanes along the contiguous dimension), and the shared
//     rows are padded by 4 so the transposing stores are free of bank conflicts;
//   * tiles are visited in groups of 8 tile-rows (row-major inside a group) so that blocks running at the
//     same time share panels of A and B in the L2 cache;
//   * split-k (gpu.py decides, from the shape only): when C has few tiles but k is deep, `splits` blocks
//     share a tile, each multiplies one k range into its own slice of a workspace, and sum_slices
//     (reduce.cuh) adds the slices in a fixed order (deterministic: no atomics).
// Float kernels multiply and accumulate in float (the FMA rounding error of a k-term dot product is
// bounded by k eps sum|a b|, the same bound as any BLAS); db accumulates in double like cpu.py.
#include "common.cuh"
#include "reduce.cuh"

#ifdef TK_HOST_EMULATION
#define DENSE_UNROLL
#else
#define DENSE_UNROLL _Pragma("unroll")
#endif

namespace dense {

constexpr int kTile = 128;                 // rows and columns of C per block
constexpr int kTileK = 8;                  // depth of one k step
constexpr int kThreads = 256;              // gpu.GEMM_THREADS: 16 x 16 threads
constexpr int kThreadsPerSide = 16;
constexpr int kQuad = 4;                   // a thread's rows (and columns) come in 2 groups of 4 ...
constexpr int kHalf = kTile / 2;           // ... 64 apart
constexpr int kMicro = 2 * kQuad;          // 8 x 8 accumulators per thread
constexpr int kStride = kTile + 4;         // shared row length: padding 4 spreads the transposing stores over banks
constexpr int kLoads = kTile * kTileK / kThreads;  // elements of each operand a thread fetches per k step (4)
constexpr int kGroupRows = 8;              // tile-rows per L2-friendly group

// Four consecutive elements of a shared row, read in one go (16-byte aligned: a 128-bit load for float).
template <typename T>
struct alignas(4 * sizeof(T)) Quad {
    T v[kQuad];
};

// One operand's slice of a k step, elements (kk, i) with kk < kTileK and i < kTile, into kLoads registers.
// k_major: element (kk, i) sits at p[(k0 + kk) * ld + i0 + i] (A^T storage of dW, B of y = x W): the lanes run
//          along i, so a warp reads 32 consecutive elements of one row.
// else:    element (kk, i) sits at p[(i0 + i) * ld + k0 + kk] (A of y = x W, W^T for dx): 8 lanes run along k,
//          so a warp reads 4 rows of 8 consecutive elements (4 full 32-byte sectors).
// Outside [0, extent) x [0, depth) the value is 0: partial tiles add nothing.
template <typename T>
__device__ __forceinline__ void load_slice(const T* __restrict__ p, long long ld, long long extent, long long i0,
                                           long long depth, long long k0, int k_major, T (&r)[kLoads]) {
    const int tid = static_cast<int>(threadIdx.x);
    if (k_major) {
        const long long i = i0 + tid % kTile;
        DENSE_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const long long kk = k0 + tid / kTile + 2 * j;
            r[j] = (i < extent && kk < depth) ? p[kk * ld + i] : T(0);
        }
    } else {
        const long long kk = k0 + tid % kTileK;
        DENSE_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const long long i = i0 + tid / kTileK + (kThreads / kTileK) * j;
            r[j] = (i < extent && kk < depth) ? p[i * ld + kk] : T(0);
        }
    }
}

// The registers of load_slice into the shared slice s[kk * kStride + i] (the same element mapping).
template <typename T>
__device__ __forceinline__ void store_slice(T* __restrict__ s, int k_major, const T (&r)[kLoads]) {
    const int tid = static_cast<int>(threadIdx.x);
    DENSE_UNROLL
    for (int j = 0; j < kLoads; ++j) {
        if (k_major) {
            s[(tid / kTile + 2 * j) * kStride + tid % kTile] = r[j];
        } else {
            s[(tid % kTileK) * kStride + tid / kTileK + (kThreads / kTileK) * j] = r[j];
        }
    }
}

template <typename T>
__device__ __forceinline__ void read_quads(const T* __restrict__ row, int offset, T (&out)[kMicro]) {
    const Quad<T> lo = *reinterpret_cast<const Quad<T>*>(row + offset);
    const Quad<T> hi = *reinterpret_cast<const Quad<T>*>(row + kHalf + offset);
    DENSE_UNROLL
    for (int q = 0; q < kQuad; ++q) {
        out[q] = lo.v[q];
        out[kQuad + q] = hi.v[q];
    }
}

// acc += (the 8 x 128 slice of A)^T-column block times (the 8 x 128 slice of B), for this thread's 8 x 8.
template <typename T>
__device__ __forceinline__ void multiply_slice(const T* __restrict__ as, const T* __restrict__ bs, int tx, int ty,
                                               T (&acc)[kMicro][kMicro]) {
    DENSE_UNROLL
    for (int kk = 0; kk < kTileK; ++kk) {
        T a[kMicro], b[kMicro];
        read_quads(as + kk * kStride, ty * kQuad, a);
        read_quads(bs + kk * kStride, tx * kQuad, b);
        DENSE_UNROLL
        for (int i = 0; i < kMicro; ++i) {
            DENSE_UNROLL
            for (int j = 0; j < kMicro; ++j) acc[i][j] += a[i] * b[j];
        }
    }
}

// Row (or column) of the tile that micro-tile index q (0..7) of thread coordinate t covers.
__device__ __forceinline__ int micro_offset(int t, int q) {
    return (q < kQuad ? 0 : kHalf) + t * kQuad + q % kQuad;
}

// Tile number -> (tile row, tile column), grouped: kGroupRows tile-rows are swept column by column.
__device__ __forceinline__ void tile_coordinates(long long tile, long long tiles_m, long long tiles_n,
                                                 long long& tm, long long& tn) {
    const long long per_group = kGroupRows * tiles_n;
    const long long first = (tile / per_group) * kGroupRows;
    const long long rows_here = min(tiles_m - first, static_cast<long long>(kGroupRows));
    const long long in_group = tile % per_group;
    tm = first + in_group % rows_here;
    tn = in_group / rows_here;
}

}  // namespace dense

// C = A B (+ bias) with A (m, k) and B (k, n); a_transposed: A is stored as A^T (k, m) row-major;
// b_transposed: B is stored as B^T (n, k) row-major. Work item = (split, tile); with splits > 1, split s
// multiplies k range [s k_per_split, (s + 1) k_per_split) into c + s m n (then bias must be off).
// `bias` is never read when has_bias == 0 (the launcher then passes any array).
template <typename T>
__global__ void __launch_bounds__(dense::kThreads)
gemm(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias, T* __restrict__ c, long long m,
     long long n, long long k, long long k_per_split, int splits, int a_transposed, int b_transposed, int has_bias) {
    using namespace dense;
    __shared__ __align__(32) T as[2][kTileK][kStride];
    __shared__ __align__(32) T bs[2][kTileK][kStride];
    const long long tiles_m = (m + kTile - 1) / kTile;
    const long long tiles_n = (n + kTile - 1) / kTile;
    const long long tiles = tiles_m * tiles_n;
    const long long lda = a_transposed ? m : k;
    const long long ldb = b_transposed ? k : n;
    const int a_k_major = a_transposed;   // A^T (k, m): element (kk, i) at kk * m + i
    const int b_k_major = !b_transposed;  // B (k, n): element (kk, j) at kk * n + j
    const int tx = static_cast<int>(threadIdx.x) % kThreadsPerSide;
    const int ty = static_cast<int>(threadIdx.x) / kThreadsPerSide;
    for (long long item = blockIdx.x; item < tiles * splits; item += gridDim.x) {  // uniform over the block
        const long long split = item / tiles;
        long long tm, tn;
        tile_coordinates(item % tiles, tiles_m, tiles_n, tm, tn);
        const long long m0 = tm * kTile, n0 = tn * kTile;
        const long long k_begin = split * k_per_split;
        const long long k_end = min(k, k_begin + k_per_split);
        T acc[kMicro][kMicro];
        DENSE_UNROLL
        for (int i = 0; i < kMicro; ++i) {
            DENSE_UNROLL
            for (int j = 0; j < kMicro; ++j) acc[i][j] = T(0);
        }
        T ra[kLoads], rb[kLoads];
        load_slice(a, lda, m, m0, k_end, k_begin, a_k_major, ra);
        load_slice(b, ldb, n, n0, k_end, k_begin, b_k_major, rb);
        store_slice(&as[0][0][0], a_k_major, ra);
        store_slice(&bs[0][0][0], b_k_major, rb);
        __syncthreads();  // slice 0 complete before anyone multiplies it
        int current = 0;
        for (long long k0 = k_begin; k0 < k_end; k0 += kTileK) {
            const bool more = k0 + kTileK < k_end;  // the same for every thread: the barrier below is uniform
            if (more) {  // issue the next slice's global loads now; they complete while we multiply
                load_slice(a, lda, m, m0, k_end, k0 + kTileK, a_k_major, ra);
                load_slice(b, ldb, n, n0, k_end, k0 + kTileK, b_k_major, rb);
            }
            multiply_slice(&as[current][0][0], &bs[current][0][0], tx, ty, acc);
            if (more) {
                // The other buffer was last read in the previous step, which ended with a barrier: safe to fill.
                store_slice(&as[current ^ 1][0][0], a_k_major, ra);
                store_slice(&bs[current ^ 1][0][0], b_k_major, rb);
            }
            __syncthreads();  // next buffer written, current buffer read by all, before the roles swap
            current ^= 1;
        }
        T* out = c + split * m * n;
        DENSE_UNROLL
        for (int i = 0; i < kMicro; ++i) {
            const long long row = m0 + micro_offset(ty, i);
            if (row >= m) continue;
            DENSE_UNROLL
            for (int j = 0; j < kMicro; ++j) {
                const long long col = n0 + micro_offset(tx, j);
                if (col < n) out[row * n + col] = has_bias ? acc[i][j] + bias[col] : acc[i][j];
            }
        }
    }
}
