// Loss functions on the GPU: the same definitions, clip and conventions as reference.py / cpu.py.
//
// Every loss but softmax cross-entropy is factor * sum_i term(y_i, t_i) (reference.scale gives the factor),
// one integer code picks the term (the order of losses::Code, as gpu.CODE and cpu.py's codes):
//   forward   loss_partial_sums: the flat arrays are cut into fixed chunks of `chunk` elements; a block
//             sums one chunk (each thread a strided share, then a block reduction) into partial[chunk];
//             loss_finish: one block adds the partials and writes factor * total, rounded once to T.
//   backward  loss_term_derivatives: dy_i = factor * d term / dy_i, one grid-stride pass.
// Deterministic: the chunks depend on n only and every sum runs in a fixed order, so the loss has the same
// bits whatever the grid size (no atomics). The terms are computed in T; the sums accumulate in double,
// as cpu.py does: a float accumulator over n terms drifts by O(n eps) (1e-3 relative for a million terms).
//
// Softmax cross-entropy (logits z, classes along the last axis after gpu.py moved them there): per row,
// max, exp-sum, p = softmax(z) (kept for the backward pass) and -sum_c t_c ((z_c - max) - log sum) in one
// kernel. Rows of at most gpu.WARP_ROW_MAX_CLASSES classes are one warp's work (8 rows at a time per block),
// wider rows one block's. The rows are cut into fixed chunks, each block sums the losses of a chunk in a
// fixed order into partial[chunk], and loss_finish adds the partials: deterministic as above.
// Backward: dz = factor (p sum_c t_c - t) per row (factor (p - t) when the targets sum to 1).
#include "common.cuh"

namespace losses {

enum Code : int { kSquared = 0, kCategorical, kBinary, kBinaryLogits, kMape };

__device__ __forceinline__ float log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p(double x) { return ::log1p(x); }

// clip(y, lo, hi) with NaN falling through as NaN (both comparisons are false).
template <typename T>
__device__ __forceinline__ T clip(T y, T lo, T hi) {
    if (y < lo) return lo;
    if (y > hi) return hi;
    return y;
}

// The per-element term; lo = eps and hi = 1 - eps in T (1 - 1e-7 rounds to 1 - 2^-23 in float, as in NumPy).
template <typename T>
__device__ __forceinline__ T term(int code, T y, T t, T lo, T hi) {
    switch (code) {
        case kSquared: {
            const T d = y - t;
            return d * d;
        }
        case kCategorical: return -t * tk::log(clip(y, lo, hi));
        case kBinary: {
            const T c = clip(y, lo, hi);
            return -(t * tk::log(c) + (T(1) - t) * tk::log(T(1) - c));
        }
        case kBinaryLogits: {  // max(z, 0) - z t + log1p(exp(-|z|)): exp never sees a positive number
            const T relu = y > T(0) ? y : T(0);
            return relu - y * t + losses::log1p(tk::exp(-tk::abs(y)));
        }
        default: {  // MAPE: |t - y| / max(|t|, eps); a NaN t stays NaN (the comparison is false)
            T floor = tk::abs(t);
            if (floor < lo) floor = lo;
            return tk::abs((t - y) / floor);
        }
    }
}

// d term / dy. Outside the clip range the clip is flat: exactly 0 (a NaN is never outside: it stays NaN).
template <typename T>
__device__ __forceinline__ T term_derivative(int code, T y, T t, T lo, T hi) {
    switch (code) {
        case kSquared: {
            const T d = y - t;
            return d + d;
        }
        case kCategorical:
        case kBinary:
            if (y < lo || y > hi) return T(0);
            if (code == kCategorical) return -t / y;
            return -t / y + (T(1) - t) / (T(1) - y);
        case kBinaryLogits: return tk::sigmoid(y) - t;  // tk::sigmoid never overflows
        default: {  // MAPE: sign(y - t) / max(|t|, eps), sign(0) = 0, sign(NaN) = NaN
            T floor = tk::abs(t);
            if (floor < lo) floor = lo;
            const T d = y - t;
            if (d > T(0)) return T(1) / floor;
            if (d < T(0)) return T(-1) / floor;
            return d / floor;
        }
    }
}

// The lanes that share one row: a warp, or the whole block. all_reduce must be called by every lane.
struct WarpGroup {
    __device__ __forceinline__ int lane() const { return static_cast<int>(threadIdx.x) % tk::kWarpSize; }
    __device__ __forceinline__ int size() const { return tk::kWarpSize; }
    template <typename V, typename Op>
    __device__ __forceinline__ V all_reduce(V v, Op op, V) const { return tk::warp_all_reduce(v, op); }
};

struct BlockGroup {
    __device__ __forceinline__ int lane() const { return static_cast<int>(threadIdx.x); }
    __device__ __forceinline__ int size() const { return static_cast<int>(blockDim.x); }
    template <typename V, typename Op>
    __device__ __forceinline__ V all_reduce(V v, Op op, V identity) const {
        return tk::block_all_reduce(v, op, identity);
    }
};

// One row: p = softmax(z), returns -sum_c t_c log p_c (to every lane) with log p = (z - max) - log sum exp(z - max):
// exp only sees non-positive numbers. A NaN or +inf logit makes the row NaN (NaN sum, or inf - inf), as in
// the reference; a -inf logit with target 0 gives 0 * -inf = NaN, also as in the reference. The exp-sum is
// a tree reduction in T (accurate enough: C terms in [0, 1]); the loss accumulates in double.
template <typename T, typename Group>
__device__ double row_crossentropy(const T* __restrict__ z, const T* __restrict__ t, T* __restrict__ p,
                                   long long classes, Group g) {
    T m = -tk::infinity<T>();
    for (long long j = g.lane(); j < classes; j += g.size()) m = tk::Max()(m, z[j]);
    m = g.all_reduce(m, tk::Max(), -tk::infinity<T>());
    T s = T(0);
    for (long long j = g.lane(); j < classes; j += g.size()) s += tk::exp(z[j] - m);
    s = g.all_reduce(s, tk::Sum(), T(0));
    const T log_s = tk::log(s);
    const T inv = T(1) / s;
    double loss = 0.0;
    for (long long j = g.lane(); j < classes; j += g.size()) {
        const T shifted = z[j] - m;
        p[j] = tk::exp(shifted) * inv;  // recomputing exp is cheaper than writing and re-reading it
        loss -= static_cast<double>(t[j] * (shifted - log_s));
    }
    return g.all_reduce(loss, tk::Sum(), 0.0);
}

// One row of the backward pass: dz = factor (p sum_c t_c - t); the target sum accumulates in double.
template <typename T, typename Group>
__device__ void row_crossentropy_backward(const T* __restrict__ p, const T* __restrict__ t, T* __restrict__ dz,
                                          long long classes, T factor, Group g) {
    double total = 0.0;
    for (long long j = g.lane(); j < classes; j += g.size()) total += static_cast<double>(t[j]);
    const T sum_t = static_cast<T>(g.all_reduce(total, tk::Sum(), 0.0));
    for (long long j = g.lane(); j < classes; j += g.size()) dz[j] = factor * (p[j] * sum_t - t[j]);
}

}  // namespace losses

// partial[c] = sum of term(y_i, t_i) over chunk c = [c chunk, (c + 1) chunk) of the flat arrays, in double.
template <typename T>
__global__ void loss_partial_sums(const T* __restrict__ y, const T* __restrict__ t, double* __restrict__ partial,
                                  long long n, long long chunk, int code, T lo, T hi) {
    const long long chunks = (n + chunk - 1) / chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {  // uniform over the block: the reduction is safe
        const long long end = min(n, (c + 1) * chunk);
        double s = 0.0;
        for (long long i = c * chunk + threadIdx.x; i < end; i += blockDim.x) {
            s += static_cast<double>(losses::term(code, y[i], t[i], lo, hi));
        }
        s = tk::block_all_reduce(s, tk::Sum(), 0.0);
        if (threadIdx.x == 0) partial[c] = s;
    }
}

// loss = factor * sum of partial[0 .. count), one block (launched alone), rounded once to T. factor is a
// double (1/n exactly as cpu.py computes it; a T factor would round 1/n before the product).
template <typename T>
__global__ void loss_finish(const double* __restrict__ partial, long long count, double factor, T* __restrict__ loss) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = tk::block_all_reduce(s, tk::Sum(), 0.0);
    if (threadIdx.x == 0 && blockIdx.x == 0) loss[0] = static_cast<T>(factor * s);
}

// dy_i = factor * d term(y_i, t_i) / dy_i.
template <typename T>
__global__ void loss_term_derivatives(const T* __restrict__ y, const T* __restrict__ t, T* __restrict__ dy,
                                      long long n, int code, T factor, T lo, T hi) {
    TK_GRID_STRIDE_LOOP(i, n) { dy[i] = factor * losses::term_derivative(code, y[i], t[i], lo, hi); }
}

// Softmax cross-entropy forward, one warp per row. Chunk c = rows [c rows_per_chunk, (c + 1) rows_per_chunk):
// warp w takes rows w, w + warps, ... of it and sums their losses; the block then adds the warps' sums.
template <typename T>
__global__ void softmax_crossentropy_forward_warps(const T* __restrict__ z, const T* __restrict__ t,
                                                   T* __restrict__ p, double* __restrict__ partial, long long rows,
                                                   long long classes, long long rows_per_chunk) {
    const int warp = static_cast<int>(threadIdx.x) / tk::kWarpSize;
    const int warps = static_cast<int>(blockDim.x) / tk::kWarpSize;
    const long long chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long end = min(rows, (c + 1) * rows_per_chunk);
        double acc = 0.0;  // the same in every lane of the warp
        for (long long r = c * rows_per_chunk + warp; r < end; r += warps) {  // uniform within the warp
            acc += losses::row_crossentropy(z + r * classes, t + r * classes, p + r * classes, classes,
                                            losses::WarpGroup{});
        }
        acc = tk::block_all_reduce(threadIdx.x % tk::kWarpSize == 0 ? acc : 0.0, tk::Sum(), 0.0);
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

// Softmax cross-entropy forward, one block per row (wide rows): the block walks the rows of a chunk in order.
template <typename T>
__global__ void softmax_crossentropy_forward_blocks(const T* __restrict__ z, const T* __restrict__ t,
                                                    T* __restrict__ p, double* __restrict__ partial, long long rows,
                                                    long long classes, long long rows_per_chunk) {
    const long long chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long end = min(rows, (c + 1) * rows_per_chunk);
        double acc = 0.0;  // the same in every thread of the block
        for (long long r = c * rows_per_chunk; r < end; ++r) {
            acc += losses::row_crossentropy(z + r * classes, t + r * classes, p + r * classes, classes,
                                            losses::BlockGroup{});
        }
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

// Softmax cross-entropy backward, one warp per row (rows grid-strided over all warps of the grid).
template <typename T>
__global__ void softmax_crossentropy_backward_warps(const T* __restrict__ p, const T* __restrict__ t,
                                                    T* __restrict__ dz, long long rows, long long classes,
                                                    T factor) {
    const long long warps = static_cast<long long>(gridDim.x) * (blockDim.x / tk::kWarpSize);
    for (long long r = tk::global_thread_index() / tk::kWarpSize; r < rows; r += warps) {
        losses::row_crossentropy_backward(p + r * classes, t + r * classes, dz + r * classes, classes, factor,
                                          losses::WarpGroup{});
    }
}

// Softmax cross-entropy backward, one block per row (wide rows).
template <typename T>
__global__ void softmax_crossentropy_backward_blocks(const T* __restrict__ p, const T* __restrict__ t,
                                                     T* __restrict__ dz, long long rows, long long classes,
                                                     T factor) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        losses::row_crossentropy_backward(p + r * classes, t + r * classes, dz + r * classes, classes, factor,
                                          losses::BlockGroup{});
    }
}
