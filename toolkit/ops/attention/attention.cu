// Scaled dot-product attention on the GPU, fused (flash-attention style): the same formulas, masking and
// IEEE conventions as reference.py / cpu.py, without ever writing the (Tq, Tk) scores to global memory.
//
//   forward   one block per (batch n, tile of 64 queries, chunk of 64 output features). It walks the keys in
//             tiles of 64: S = q k^T * s for the tile (registers), an online softmax per query row (running
//             max m and running sum l of exp(S - m), the partial output rescaled by exp(m_old - m_new) when
//             the max grows), then out += P v through a shared-memory P tile. It saves m and l per query row
//             (N, Tq): memory linear in the sequence length. Any weight is then W_ij = exp(S_ij - m_i) / l_i.
//   backward  recomputes P from (m, l) instead of reading a (Tq, Tk) weights matrix; D_i = rowsum(dout * out)
//             (attention_row_dot) replaces the reference's sum_j dW_ij W_ij (they are equal: sum_j W_ij v_j = out_i).
//             Two kernels, each owning the rows it writes, so no atomics and deterministic results:
//               attention_backward_keys     per (n, tile of 64 keys, feature chunk): loops over the query tiles,
//                                           dv += P^T dout and dk += dS^T q * s, with dS = P * (dout v^T - D);
//               attention_backward_queries  per (n, tile of 64 queries, feature chunk): loops over the key
//                                           tiles, dq += dS k * s.
//   attention_tile_scores  writes the scores (-inf where masked: attention_scores) or the weights from (m, l)
//             (the cache's weights, materialised only when a learner asks): the one kernel that is quadratic.
//
// Every product is a 64 x 64 register tile: 256 threads (16 x 16), each accumulating a 4 x 4 piece; the
// operands go through shared memory in slices of 16 along the contraction, stored contraction-major ([t][r])
// so each thread reads 4 consecutive values at once. Features d and dv of any size are covered by looping the
// contraction in slices (S = q k^T, dP = dout v^T) and by 64-wide output chunks on separate blocks (each
// chunk recomputes S: gpu.MAX_FEATURES bounds that cost).
//
// Conventions (as reference.py): a masked key gets weight exactly 0 and takes part in P v as 0 * v (so a NaN
// or inf value still poisons the output as in a matrix product); a query with every key masked has all-zero
// weights, output 0 * v and zero gradients; a row whose allowed scores hold NaN, +inf, or are all -inf is NaN.
// float kernels compute and accumulate in float, like cpu.py's float32 GEMMs: the dot products run over d
// (or dv, or one tile of 64), and the row sums l are a 16-lane tree per tile added tile after tile (Tk / 64
// terms), with every exponential <= 1. cpu.py's float64 row sums are not needed for the tolerance here.
#include "common.cuh"

#ifdef TK_HOST_EMULATION
#define ATTN_UNROLL
#else
#define ATTN_UNROLL _Pragma("unroll")
#endif

namespace attn {

constexpr int kTile = 64;                       // queries, keys and output features per tile (gpu.TILE)
constexpr int kChunk = 16;                      // contraction depth staged in shared memory per step
constexpr int kMicro = 4;                       // each thread owns kMicro x kMicro elements of a tile
constexpr int kSide = kTile / kMicro;           // 16 threads along each side of a tile
constexpr int kThreads = kSide * kSide;         // 256 threads per block (gpu.THREADS)
constexpr int kStride = kTile + 4;              // shared row length: 16-byte aligned rows, +4 spreads the
                                                // transposing stores of stage() over the banks
constexpr int kLoads = kTile * kChunk / kThreads;  // elements of a slice each thread fetches (4)
constexpr int kShared = (kTile + kChunk) * kStride;  // the P (or dS) tile, then one slice; the other slice
                                                     // lives inside the P tile (never needed at the same time)

enum MaskMode : int { kNoMask = 0, kSharedMask = 1, kPerBatchMask = 2 };

template <typename T>
struct alignas(kMicro * sizeof(T)) Quad {
    T v[kMicro];
};

template <typename T>
using Micro = T[kMicro][kMicro];

template <typename T>
__device__ __forceinline__ T quiet_nan();
template <>
__device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <>
__device__ __forceinline__ double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }

// One matrix of one batch element, seen as elements (r, t): r a row of the tile (query, key or feature), t the
// contraction index. t_contiguous: (r, t) sits at p[r * ld + t] (q k^T reads q and k so), else at p[t * ld + r]
// (P v reads v so). Elements with r >= rows or t >= depth read as 0: partial tiles add nothing.
template <typename T>
struct Operand {
    const T* p;
    long long ld;
    long long rows;
    long long depth;
    int t_contiguous;
};

__device__ __forceinline__ int tx() { return static_cast<int>(threadIdx.x) % kSide; }  // column group
__device__ __forceinline__ int ty() { return static_cast<int>(threadIdx.x) / kSide; }  // row group

// s[t * kStride + r] = element (r0 + r, t0 + t) of x, for r < kTile and t < kChunk.
template <typename T>
__device__ __forceinline__ void stage(T* __restrict__ s, const Operand<T>& x, long long r0, long long t0) {
    const int tid = static_cast<int>(threadIdx.x);
    if (x.t_contiguous) {  // 16 lanes read 16 consecutive elements of one row (coalesced), stores transpose
        const int t = tid % kChunk;
        const long long gt = t0 + t;
        ATTN_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int r = tid / kChunk + (kThreads / kChunk) * j;
            const long long gr = r0 + r;
            s[t * kStride + r] = (gr < x.rows && gt < x.depth) ? x.p[gr * x.ld + gt] : T(0);
        }
    } else {  // 64 lanes read 64 consecutive elements of one row of the storage
        const int r = tid % kTile;
        const long long gr = r0 + r;
        ATTN_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int t = tid / kTile + (kThreads / kTile) * j;
            const long long gt = t0 + t;
            s[t * kStride + r] = (gr < x.rows && gt < x.depth) ? x.p[gt * x.ld + gr] : T(0);
        }
    }
}

// acc[a][b] += sum_{t < kChunk} xs[t][ty*4 + a] * ys[t][tx*4 + b]
template <typename T>
__device__ __forceinline__ void multiply(const T* __restrict__ xs, const T* __restrict__ ys, Micro<T>& acc) {
    const int row = ty() * kMicro, col = tx() * kMicro;
    ATTN_UNROLL
    for (int t = 0; t < kChunk; ++t) {
        const Quad<T> a = *reinterpret_cast<const Quad<T>*>(xs + t * kStride + row);
        const Quad<T> b = *reinterpret_cast<const Quad<T>*>(ys + t * kStride + col);
        ATTN_UNROLL
        for (int i = 0; i < kMicro; ++i) {
            ATTN_UNROLL
            for (int j = 0; j < kMicro; ++j) acc[i][j] += a.v[i] * b.v[j];
        }
    }
}

template <typename T>
__device__ __forceinline__ void zero(Micro<T>& acc) {
    ATTN_UNROLL
    for (int i = 0; i < kMicro; ++i) {
        ATTN_UNROLL
        for (int j = 0; j < kMicro; ++j) acc[i][j] = T(0);
    }
}

// acc[a][b] = sum_t x(x0 + ty*4 + a, t) * y(y0 + tx*4 + b, t) over the whole (shared) depth, both operands
// from global memory. Ends with a barrier: the slices (and the P tile they alias) are free afterwards.
template <typename T>
__device__ void product(T* __restrict__ xs, T* __restrict__ ys, const Operand<T>& x, long long x0,
                        const Operand<T>& y, long long y0, Micro<T>& acc) {
    zero(acc);
    for (long long t0 = 0; t0 < x.depth; t0 += kChunk) {  // the same trip count for the whole block
        stage(xs, x, x0, t0);
        stage(ys, y, y0, t0);
        __syncthreads();  // both slices complete before anyone multiplies
        multiply(xs, ys, acc);
        __syncthreads();  // both slices read by everyone before the next step overwrites them
    }
}

// acc[a][b] += sum_{t < kTile} ps[t][ty*4 + a] * y(c0 + tx*4 + b, t_base + t): a shared tile (P or dS, stored
// contraction-major) times an operand from global memory. The caller may store the tile right before the
// call (after a barrier that freed it): the first barrier here publishes it. Ends with a barrier.
template <typename T>
__device__ void accumulate(const T* __restrict__ ps, T* __restrict__ ys, const Operand<T>& y, long long c0,
                           long long t_base, Micro<T>& acc) {
    for (int t0 = 0; t0 < kTile; t0 += kChunk) {
        if (t_base + t0 >= y.depth) break;  // past the last key (query): the P entries there are 0; uniform
        stage(ys, y, c0, t_base + t0);
        __syncthreads();  // the slice complete (on the first step also the P tile the caller just stored)
        multiply(ps + t0 * kStride, ys, acc);
        __syncthreads();  // the slice read by everyone before the next step overwrites it
    }
}

// The (transposed) micro tile into a shared tile stored [column][row]: ps[(tx*4 + b)][ty*4 + a] = m[a][b],
// i.e. what `accumulate` reads as x(row, t = column).
template <typename T>
__device__ __forceinline__ void store_transposed(T* __restrict__ ps, const Micro<T>& m) {
    const int row = ty() * kMicro, col = tx() * kMicro;
    ATTN_UNROLL
    for (int b = 0; b < kMicro; ++b) {
        Quad<T> column;
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) column.v[a] = m[a][b];
        *reinterpret_cast<Quad<T>*>(ps + (col + b) * kStride + row) = column;
    }
}

// Reductions over one row of a tile: the 16 threads of a row group are 16 consecutive lanes of one warp.
template <typename T, typename Op>
__device__ __forceinline__ T row_reduce(T value, Op op) {
    ATTN_UNROLL
    for (int offset = kSide / 2; offset > 0; offset /= 2) {
        value = op(value, __shfl_xor_sync(tk::kFullMask, value, offset));
    }
    return value;
}

struct Or {
    __device__ __forceinline__ int operator()(int a, int b) const { return a | b; }
};

// May query i attend to key j? Out-of-range positions never may.
__device__ __forceinline__ bool allowed(const bool* __restrict__ mask, int mask_mode, long long i, long long j,
                                        long long tq, long long tk) {
    return i < tq && j < tk && (mask_mode == kNoMask || mask[i * tk + j]);
}

__device__ __forceinline__ const bool* mask_of(const bool* mask, int mask_mode, long long n, long long tq,
                                               long long tk) {
    return mask_mode == kPerBatchMask ? mask + n * tq * tk : mask;
}

// P_ij from the forward's statistics: exp(x - m_i) / l_i where allowed, else exactly 0.
template <typename T>
__device__ __forceinline__ T probability(bool ok, T x, T m, T l) {
    return ok ? tk::exp(x - m) / l : T(0);
}

// Work item -> (batch element, tile, chunk), chunks fastest: the blocks of one tile run side by side.
__device__ __forceinline__ void split_item(long long item, long long tiles, long long chunks, long long& n,
                                           long long& tile, long long& chunk) {
    chunk = item % chunks;
    tile = (item / chunks) % tiles;
    n = item / (chunks * tiles);
}

__device__ __forceinline__ long long tiles_of(long long extent) { return (extent + kTile - 1) / kTile; }

}  // namespace attn

// out = softmax(q k^T * scale, masked) v, fused; row_max/row_sum (N, Tq) = m, l of each query row
// (a fully masked row: m = -inf, l = 0; a row that is NaN by the IEEE rules: l = NaN).
// Blocks: (n, query tile, output chunk of 64 of the dv features), grid-strided.
template <typename T>
__global__ void __launch_bounds__(attn::kThreads)
attention_forward(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  const bool* __restrict__ mask, T* __restrict__ out, T* __restrict__ row_max,
                  T* __restrict__ row_sum, long long batch, long long tq, long long tk, int d, int dv,
                  int mask_mode, T scale) {
    using namespace attn;
    __shared__ __align__(32) T smem[kShared];
    T* const ps = smem;                     // P tile [key][query]
    T* const xs = smem;                     // the q slice of S = q k^T (aliases the P tile)
    T* const ys = smem + kTile * kStride;   // the k slice of S, the v slice of P v
    const T neg_inf = -tk::infinity<T>();
    const long long q_tiles = tiles_of(tq), chunks = tiles_of(dv);
    for (long long item = blockIdx.x; item < batch * q_tiles * chunks; item += gridDim.x) {  // uniform
        long long n, tile, chunk;
        split_item(item, q_tiles, chunks, n, tile, chunk);
        const long long i0 = tile * kTile, c0 = chunk * kTile;
        const Operand<T> qo{q + n * tq * d, d, tq, d, 1};
        const Operand<T> ko{k + n * tk * d, d, tk, d, 1};
        const Operand<T> vo{v + n * tk * dv, dv, dv, tk, 0};  // (feature, key): P v contracts the keys
        const bool* mrow = mask_of(mask, mask_mode, n, tq, tk);
        T m[kMicro], l[kMicro];
        int seen[kMicro];  // any allowed key so far
        Micro<T> acc;
        zero(acc);
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            m[a] = neg_inf;
            l[a] = T(0);
            seen[a] = 0;
        }
        for (long long j0 = 0; j0 < tk; j0 += kTile) {
            Micro<T> s;
            product(xs, ys, qo, i0, ko, j0, s);  // s[a][b] = q_i . k_j, i = i0 + ty*4 + a, j = j0 + tx*4 + b
            ATTN_UNROLL
            for (int a = 0; a < kMicro; ++a) {
                const long long i = i0 + ty() * kMicro + a;
                bool ok[kMicro];
                T tile_max = neg_inf;
                int any = 0;
                ATTN_UNROLL
                for (int b = 0; b < kMicro; ++b) {
                    ok[b] = allowed(mrow, mask_mode, i, j0 + tx() * kMicro + b, tq, tk);
                    s[a][b] *= scale;
                    if (ok[b]) {
                        tile_max = tk::Max()(tile_max, s[a][b]);  // NaN ignored here; it poisons l below
                        any = 1;
                    }
                }
                tile_max = row_reduce(tile_max, tk::Max());
                any = row_reduce(any, Or());
                const T m_new = tk::Max()(m[a], tile_max);
                // Rescale what was summed against the old max. Before any finite max nothing but 0 * v
                // was summed (factor 0 keeps a NaN there); inf - inf (an infinite max) is NaN, as IEEE says.
                const T correction = m[a] == neg_inf ? T(0) : tk::exp(m[a] - m_new);
                // While every allowed score is -inf, exp(-inf - 0) = 0 instead of -inf - -inf = NaN: a later
                // finite score may still make the row valid (the end of the row decides).
                const T shift = m_new == neg_inf ? T(0) : m_new;
                T sum = T(0);
                ATTN_UNROLL
                for (int b = 0; b < kMicro; ++b) {
                    s[a][b] = ok[b] ? tk::exp(s[a][b] - shift) : T(0);
                    sum += s[a][b];
                }
                sum = row_reduce(sum, tk::Sum());
                l[a] = l[a] * correction + sum;
                ATTN_UNROLL
                for (int b = 0; b < kMicro; ++b) acc[a][b] *= correction;
                m[a] = m_new;
                seen[a] |= any;
            }
            // product() ended with a barrier: nobody reads the q slice any more. accumulate()'s first
            // barrier publishes the P tile before anyone reads it.
            store_transposed(ps, s);
            accumulate(ps, ys, vo, c0, j0, acc);
        }
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            const long long i = i0 + ty() * kMicro + a;
            if (i >= tq) continue;
            // Every allowed score -inf: -inf - -inf = NaN in the reference's softmax.
            const T total = (seen[a] && m[a] == neg_inf) ? quiet_nan<T>() : l[a];
            ATTN_UNROLL
            for (int b = 0; b < kMicro; ++b) {
                const long long c = c0 + tx() * kMicro + b;
                // A fully masked row keeps acc = sum of 0 * v: 0, or NaN where v is not finite.
                if (c < dv) out[(n * tq + i) * dv + c] = seen[a] ? acc[a][b] / total : acc[a][b];
            }
            if (chunk == 0 && tx() == 0) {
                row_max[n * tq + i] = m[a];
                row_sum[n * tq + i] = total;
            }
        }
    }
}

// weights = 0: out (N, Tq, Tk) = q k^T * scale, -inf where masked (attention_scores).
// weights = 1: out = the attention weights exp(S - m) / l from the forward's statistics (0 where masked).
// Blocks: (n, query tile, key tile), grid-strided.
template <typename T>
__global__ void __launch_bounds__(attn::kThreads)
attention_tile_scores(const T* __restrict__ q, const T* __restrict__ k, const bool* __restrict__ mask,
                      const T* __restrict__ row_max, const T* __restrict__ row_sum, T* __restrict__ out,
                      long long batch, long long tq, long long tk, int d, int mask_mode, T scale, int weights) {
    using namespace attn;
    __shared__ __align__(32) T smem[2 * kChunk * kStride];
    T* const xs = smem;
    T* const ys = smem + kChunk * kStride;
    const long long q_tiles = tiles_of(tq), k_tiles = tiles_of(tk);
    for (long long item = blockIdx.x; item < batch * q_tiles * k_tiles; item += gridDim.x) {
        long long n, tile, key_tile;
        split_item(item, q_tiles, k_tiles, n, tile, key_tile);
        const long long i0 = tile * kTile, j0 = key_tile * kTile;
        const Operand<T> qo{q + n * tq * d, d, tq, d, 1};
        const Operand<T> ko{k + n * tk * d, d, tk, d, 1};
        const bool* mrow = mask_of(mask, mask_mode, n, tq, tk);
        Micro<T> s;
        product(xs, ys, qo, i0, ko, j0, s);
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            const long long i = i0 + ty() * kMicro + a;
            if (i >= tq) continue;
            const T m = weights ? row_max[n * tq + i] : T(0);
            const T l = weights ? row_sum[n * tq + i] : T(1);
            ATTN_UNROLL
            for (int b = 0; b < kMicro; ++b) {
                const long long j = j0 + tx() * kMicro + b;
                if (j >= tk) continue;
                const bool ok = allowed(mrow, mask_mode, i, j, tq, tk);
                const T x = s[a][b] * scale;
                out[(n * tq + i) * tk + j] = weights ? probability(ok, x, m, l) : (ok ? x : -tk::infinity<T>());
            }
        }
    }
}

// out[r] = sum_c a[r, c] * b[r, c] for the rows of two (rows, n) matrices: D = rowsum(dout * out).
// One warp per row, rows grid-strided; blockDim.x a multiple of 32.
template <typename T>
__global__ void attention_row_dot(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                  long long rows, long long n) {
    const int lane = static_cast<int>(threadIdx.x) % tk::kWarpSize;
    const long long warps = tk::grid_stride() / tk::kWarpSize;
    for (long long r = tk::global_thread_index() / tk::kWarpSize; r < rows; r += warps) {  // warp-uniform
        T sum = T(0);
        for (long long c = lane; c < n; c += tk::kWarpSize) sum += a[r * n + c] * b[r * n + c];
        sum = tk::warp_all_reduce(sum, tk::Sum());
        if (lane == 0) out[r] = sum;
    }
}

// dk = dS^T q * scale and dv = P^T dout for one tile of 64 keys and one 64-wide chunk of the features
// (dk's chunk of d where chunk * 64 < d, dv's chunk of dv where chunk * 64 < dv), looping over the query tiles:
//   S^T = k q^T, P^T = exp(S^T * scale - m) / l, dP^T = v dout^T, dS^T = P^T * (dP^T - D).
// Each block owns its rows of dk and dv: no atomics, the same bits for any grid.
template <typename T>
__global__ void __launch_bounds__(attn::kThreads)
attention_backward_keys(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                        const bool* __restrict__ mask, const T* __restrict__ dout, const T* __restrict__ row_max,
                        const T* __restrict__ row_sum, const T* __restrict__ delta, T* __restrict__ dk,
                        T* __restrict__ dv_out, long long batch, long long tq, long long tk, int d, int dv,
                        int mask_mode, T scale) {
    using namespace attn;
    __shared__ __align__(32) T smem[kShared];
    T* const ps = smem;                    // P tile, then dS tile, stored [query][key]
    T* const xs = smem;                    // the first slice of the products (aliases the tile)
    T* const ys = smem + kTile * kStride;
    const long long k_tiles = tiles_of(tk);
    const long long chunks = tiles_of(d > dv ? d : dv);
    for (long long item = blockIdx.x; item < batch * k_tiles * chunks; item += gridDim.x) {
        long long n, tile, chunk;
        split_item(item, k_tiles, chunks, n, tile, chunk);
        const long long j0 = tile * kTile, c0 = chunk * kTile;
        const bool need_dk = c0 < d, need_dv = c0 < dv;  // uniform over the block
        const Operand<T> k_rows{k + n * tk * d, d, tk, d, 1};
        const Operand<T> q_rows{q + n * tq * d, d, tq, d, 1};
        const Operand<T> v_rows{v + n * tk * dv, dv, tk, dv, 1};
        const Operand<T> dout_rows{dout + n * tq * dv, dv, tq, dv, 1};
        const Operand<T> dout_cols{dout + n * tq * dv, dv, dv, tq, 0};  // (feature, query)
        const Operand<T> q_cols{q + n * tq * d, d, d, tq, 0};
        const bool* mrow = mask_of(mask, mask_mode, n, tq, tk);
        Micro<T> dk_acc, dv_acc;
        zero(dk_acc);
        zero(dv_acc);
        for (long long i0 = 0; i0 < tq; i0 += kTile) {
            Micro<T> p, dp;  // [a][b]: key j = j0 + ty*4 + a, query i = i0 + tx*4 + b
            product(xs, ys, k_rows, j0, q_rows, i0, p);
            if (need_dk) product(xs, ys, v_rows, j0, dout_rows, i0, dp);
            ATTN_UNROLL
            for (int b = 0; b < kMicro; ++b) {
                const long long i = i0 + tx() * kMicro + b;
                const bool row = i < tq;
                const T m = row ? row_max[n * tq + i] : T(0);
                const T l = row ? row_sum[n * tq + i] : T(1);
                const T dd = (row && need_dk) ? delta[n * tq + i] : T(0);
                ATTN_UNROLL
                for (int a = 0; a < kMicro; ++a) {
                    const bool ok = allowed(mrow, mask_mode, i, j0 + ty() * kMicro + a, tq, tk);
                    p[a][b] = probability(ok, p[a][b] * scale, m, l);
                    if (need_dk) dp[a][b] = p[a][b] * (dp[a][b] - dd);  // dS^T
                }
            }
            // The products ended with a barrier (the tile is free); accumulate() publishes the tile with
            // its first barrier and ends with one (the tile read by all before it is overwritten).
            if (need_dv) {
                store_transposed(ps, p);
                accumulate(ps, ys, dout_cols, c0, i0, dv_acc);
            }
            if (need_dk) {
                store_transposed(ps, dp);
                accumulate(ps, ys, q_cols, c0, i0, dk_acc);
            }
        }
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            const long long j = j0 + ty() * kMicro + a;
            if (j >= tk) continue;
            ATTN_UNROLL
            for (int b = 0; b < kMicro; ++b) {
                const long long c = c0 + tx() * kMicro + b;
                if (need_dk && c < d) dk[(n * tk + j) * d + c] = dk_acc[a][b] * scale;
                if (need_dv && c < dv) dv_out[(n * tk + j) * dv + c] = dv_acc[a][b];
            }
        }
    }
}

// dq = dS k * scale for one tile of 64 queries and one 64-wide chunk of d, looping over the key tiles:
//   S = q k^T, P = exp(S * scale - m) / l, dP = dout v^T, dS = P * (dP - D).
template <typename T>
__global__ void __launch_bounds__(attn::kThreads)
attention_backward_queries(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                           const bool* __restrict__ mask, const T* __restrict__ dout,
                           const T* __restrict__ row_max, const T* __restrict__ row_sum,
                           const T* __restrict__ delta, T* __restrict__ dq, long long batch, long long tq,
                           long long tk, int d, int dv, int mask_mode, T scale) {
    using namespace attn;
    __shared__ __align__(32) T smem[kShared];
    T* const ps = smem;                    // dS tile, stored [key][query]
    T* const xs = smem;
    T* const ys = smem + kTile * kStride;
    const long long q_tiles = tiles_of(tq), chunks = tiles_of(d);
    for (long long item = blockIdx.x; item < batch * q_tiles * chunks; item += gridDim.x) {
        long long n, tile, chunk;
        split_item(item, q_tiles, chunks, n, tile, chunk);
        const long long i0 = tile * kTile, c0 = chunk * kTile;
        const Operand<T> q_rows{q + n * tq * d, d, tq, d, 1};
        const Operand<T> k_rows{k + n * tk * d, d, tk, d, 1};
        const Operand<T> dout_rows{dout + n * tq * dv, dv, tq, dv, 1};
        const Operand<T> v_rows{v + n * tk * dv, dv, tk, dv, 1};
        const Operand<T> k_cols{k + n * tk * d, d, d, tk, 0};  // (feature, key)
        const bool* mrow = mask_of(mask, mask_mode, n, tq, tk);
        T m[kMicro], l[kMicro], dd[kMicro];
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            const long long i = i0 + ty() * kMicro + a;
            m[a] = i < tq ? row_max[n * tq + i] : T(0);
            l[a] = i < tq ? row_sum[n * tq + i] : T(1);
            dd[a] = i < tq ? delta[n * tq + i] : T(0);
        }
        Micro<T> dq_acc;
        zero(dq_acc);
        for (long long j0 = 0; j0 < tk; j0 += kTile) {
            Micro<T> ds, dp;  // [a][b]: query i = i0 + ty*4 + a, key j = j0 + tx*4 + b
            product(xs, ys, q_rows, i0, k_rows, j0, ds);
            product(xs, ys, dout_rows, i0, v_rows, j0, dp);
            ATTN_UNROLL
            for (int a = 0; a < kMicro; ++a) {
                const long long i = i0 + ty() * kMicro + a;
                ATTN_UNROLL
                for (int b = 0; b < kMicro; ++b) {
                    const bool ok = allowed(mrow, mask_mode, i, j0 + tx() * kMicro + b, tq, tk);
                    ds[a][b] = probability(ok, ds[a][b] * scale, m[a], l[a]) * (dp[a][b] - dd[a]);
                }
            }
            store_transposed(ps, ds);  // the products ended with a barrier: the tile is free
            accumulate(ps, ys, k_cols, c0, j0, dq_acc);  // its first barrier publishes dS
        }
        ATTN_UNROLL
        for (int a = 0; a < kMicro; ++a) {
            const long long i = i0 + ty() * kMicro + a;
            if (i >= tq) continue;
            ATTN_UNROLL
            for (int b = 0; b < kMicro; ++b) {
                const long long c = c0 + tx() * kMicro + b;
                if (c < d) dq[(n * tq + i) * d + c] = dq_acc[a][b] * scale;
            }
        }
    }
}
