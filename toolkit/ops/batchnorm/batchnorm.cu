// Batch normalisation on the GPU: the same formulas, two-pass statistics and accumulation precision as
// reference.py / cpu.py. x is a (rows, features) matrix (features = the last axis, contiguous in memory).
//
// Per-feature reductions (mean, variance, dbeta, dgamma) are deterministic two-stage column reductions,
// no atomics:
//   stage 1  the rows are cut into chunks of chunk_rows (gpu.py picks it from the shape only); a "tile" is
//            one chunk times `width` consecutive features. A block of (width, 256 / width) threads takes a
//            tile: threadIdx.x walks the features (a warp reads 32 / width whole rows of `width` consecutive
//            values: coalesced), threadIdx.y the rows of the chunk; each thread sums its rows in double, a
//            shared-memory tree adds the blockDim.y row groups in a fixed order, and the tile writes one
//            double per feature to partial[chunk][feature].
//   stage 2  a block per tile of features adds the chunks' partials the same way (fixed order).
// Tiles are grid-strided, so any grid (capped or not) gives the same bits: the summation order depends on
// the shape only. Statistics are two-pass like cpu.py: pass one sums x, pass two sums (x - mean)^2 around
// the double mean, because E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std.
// Float32 inputs accumulate in double (a float sum over rows = N*H*W values loses about log2(rows) bits);
// the per-feature results are rounded once to T. The elementwise passes (normalise, input gradient) stay
// in T. Running statistics are updated in double and rounded to T, as cpu.py does.
#include "common.cuh"

namespace bn {

constexpr int kThreads = 256;  // threads of a reduction block (gpu.REDUCE_THREADS): width * row groups

// The column totals of one tile: every thread holds the sum of its rows for feature threadIdx.x; the
// threadIdx.y == 0 threads get the total over the blockDim.y row groups (a power of two), added as a tree
// in a fixed order (the other threads get 0). `sums` holds kThreads doubles. All threads of the block must
// call it.
__device__ __forceinline__ double sum_row_groups(double value, double* sums) {
    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const int width = static_cast<int>(blockDim.x);
    sums[ty * width + tx] = value;
    __syncthreads();  // every group's value written before any is read
    for (int half = static_cast<int>(blockDim.y) / 2; half > 0; half /= 2) {
        if (ty < half) sums[ty * width + tx] += sums[(ty + half) * width + tx];
        __syncthreads();  // this level complete before the next level (or the caller's next tile) touches it
    }
    // Only row group 0 reads, its own slot: every other slot's last read was before the barrier above and
    // nobody else writes slot (0, tx), so the caller's next tile may start writing without another barrier.
    return ty == 0 ? sums[tx] : 0.0;
}

// The feature a thread covers in tile `tile` of `column_tiles`, and the chunk the tile covers.
struct Tile {
    long long chunk;
    long long feature;
};

__device__ __forceinline__ Tile tile_of(long long tile, long long column_tiles) {
    return {tile / column_tiles, (tile % column_tiles) * blockDim.x + threadIdx.x};
}

// The feature of element i in a flat (rows, features) grid-stride loop: i % features, kept up to date
// by adding stride % features (one division per thread, not one per element).
struct Column {
    long long value;
    long long step;
    long long features;
    __device__ __forceinline__ void advance() {
        value += step;
        if (value >= features) value -= features;  // value, step < features: one subtraction suffices
    }
};

__device__ __forceinline__ Column column_of(long long i, long long features) {
    return {i % features, tk::grid_stride() % features, features};
}

}  // namespace bn

// Stage 1 of a column reduction over a (rows, features) matrix:
//   partial[chunk][c] = sum over the chunk's rows r of (a[r][c] - center[c])^2   (square != 0)
//                     = sum over the chunk's rows r of  a[r][c]                  (square == 0; center unread)
// in double.
template <typename T>
__global__ void batchnorm_column_sums(const T* __restrict__ a, const double* __restrict__ center,
                                      double* __restrict__ partial, long long rows, long long features,
                                      long long chunk_rows, int square) {
    __shared__ double sums[bn::kThreads];
    const long long column_tiles = (features + blockDim.x - 1) / blockDim.x;
    const long long tiles = (rows + chunk_rows - 1) / chunk_rows * column_tiles;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform over the block
        const bn::Tile t = bn::tile_of(tile, column_tiles);
        double s = 0.0;
        if (t.feature < features) {
            const long long end = min(rows, (t.chunk + 1) * chunk_rows);
            const long long first = t.chunk * chunk_rows + threadIdx.y;
            if (square) {
                const double mu = center[t.feature];
                for (long long r = first; r < end; r += blockDim.y) {
                    const double d = static_cast<double>(a[r * features + t.feature]) - mu;
                    s += d * d;
                }
            } else {
                for (long long r = first; r < end; r += blockDim.y) {
                    s += static_cast<double>(a[r * features + t.feature]);
                }
            }
        }
        s = bn::sum_row_groups(s, sums);
        if (threadIdx.y == 0 && t.feature < features) partial[t.chunk * features + t.feature] = s;
    }
}

// Stage 1 of the backward reductions, both at once over the chunk's rows, in double:
//   partial[0][chunk][c] = sum dy[r][c]               (-> dbeta)
//   partial[1][chunk][c] = sum dy[r][c] * x_hat[r][c] (-> dgamma)
template <typename T>
__global__ void batchnorm_gradient_sums(const T* __restrict__ dy, const T* __restrict__ x_hat,
                                        double* __restrict__ partial, long long rows, long long features,
                                        long long chunk_rows) {
    __shared__ double sums_dy[bn::kThreads];
    __shared__ double sums_dy_xhat[bn::kThreads];
    const long long chunks = (rows + chunk_rows - 1) / chunk_rows;
    const long long column_tiles = (features + blockDim.x - 1) / blockDim.x;
    for (long long tile = blockIdx.x; tile < chunks * column_tiles; tile += gridDim.x) {
        const bn::Tile t = bn::tile_of(tile, column_tiles);
        double s_dy = 0.0;
        double s_dy_xhat = 0.0;
        if (t.feature < features) {
            const long long end = min(rows, (t.chunk + 1) * chunk_rows);
            for (long long r = t.chunk * chunk_rows + threadIdx.y; r < end; r += blockDim.y) {
                const long long i = r * features + t.feature;
                const double g = static_cast<double>(dy[i]);
                s_dy += g;
                s_dy_xhat += g * static_cast<double>(x_hat[i]);
            }
        }
        s_dy = bn::sum_row_groups(s_dy, sums_dy);
        s_dy_xhat = bn::sum_row_groups(s_dy_xhat, sums_dy_xhat);
        if (threadIdx.y == 0 && t.feature < features) {
            partial[t.chunk * features + t.feature] = s_dy;
            partial[(chunks + t.chunk) * features + t.feature] = s_dy_xhat;
        }
    }
}

// Stage 2: out[k][c] = (sum over chunks of partial[k][chunk][c]) / divisor, for each of `sets` stacked
// (chunks, features) partial arrays (divisor = rows gives means, 1 the sums themselves, exactly); a block
// per tile of features (and set), the chunks added in a fixed order. T is unused (every operand is
// double) but keeps the convention of one kernel template per float type.
template <typename T>
__global__ void batchnorm_column_totals(const double* __restrict__ partial, double* __restrict__ out,
                                        long long chunks, long long features, long long divisor, int sets) {
    __shared__ double sums[bn::kThreads];
    const long long column_tiles = (features + blockDim.x - 1) / blockDim.x;
    for (long long tile = blockIdx.x; tile < sets * column_tiles; tile += gridDim.x) {
        const long long set = tile / column_tiles;
        const long long c = (tile % column_tiles) * blockDim.x + threadIdx.x;
        const double* p = partial + set * chunks * features;
        double s = 0.0;
        if (c < features) {
            for (long long k = threadIdx.y; k < chunks; k += blockDim.y) s += p[k * features + c];
        }
        s = bn::sum_row_groups(s, sums);
        if (threadIdx.y == 0 && c < features) out[set * features + c] = s / static_cast<double>(divisor);
    }
}

// Training: from the batch statistics in double, the cache's per-feature values rounded once to T
// (mean, var, inv_std = 1 / sqrt(var + eps)), gamma copied for the cache, and the running statistics
// updated in place: running = momentum * running + (1 - momentum) * batch, in double (momentum and eps are
// double as in cpu.py, whose arithmetic here is float64).
template <typename T>
__global__ void batchnorm_batch_statistics(const double* __restrict__ mean64, const double* __restrict__ var64,
                                           const T* __restrict__ gamma, T* __restrict__ running_mean,
                                           T* __restrict__ running_var, T* __restrict__ mean, T* __restrict__ var,
                                           T* __restrict__ inv_std, T* __restrict__ gamma_copy, long long features,
                                           double momentum, double eps) {
    TK_GRID_STRIDE_LOOP(c, features) {
        const double mu = mean64[c];
        const double sigma2 = var64[c];
        running_mean[c] = static_cast<T>(momentum * static_cast<double>(running_mean[c]) + (1.0 - momentum) * mu);
        running_var[c] = static_cast<T>(momentum * static_cast<double>(running_var[c]) + (1.0 - momentum) * sigma2);
        mean[c] = static_cast<T>(mu);
        var[c] = static_cast<T>(sigma2);
        inv_std[c] = static_cast<T>(1.0 / ::sqrt(sigma2 + eps));
        gamma_copy[c] = gamma[c];
    }
}

// Inference: the running statistics are the statistics (read only); inv_std in double, rounded once.
template <typename T>
__global__ void batchnorm_running_statistics(const T* __restrict__ running_mean, const T* __restrict__ running_var,
                                             const T* __restrict__ gamma, T* __restrict__ mean, T* __restrict__ var,
                                             T* __restrict__ inv_std, T* __restrict__ gamma_copy, long long features,
                                             double eps) {
    TK_GRID_STRIDE_LOOP(c, features) {
        mean[c] = running_mean[c];
        var[c] = running_var[c];
        inv_std[c] = static_cast<T>(1.0 / ::sqrt(static_cast<double>(running_var[c]) + eps));
        gamma_copy[c] = gamma[c];
    }
}

// x_hat = (x - mean) * inv_std,  y = gamma * x_hat + beta, elementwise in T over the flat (rows, features).
template <typename T>
__global__ void batchnorm_normalize(const T* __restrict__ x, const T* __restrict__ mean,
                                    const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                    const T* __restrict__ beta, T* __restrict__ x_hat, T* __restrict__ y, long long n,
                                    long long features) {
    bn::Column c = bn::column_of(tk::global_thread_index(), features);
    TK_GRID_STRIDE_LOOP(i, n) {
        const T h = (x[i] - mean[c.value]) * inv_std[c.value];
        x_hat[i] = h;
        y[i] = gamma[c.value] * h + beta[c.value];
        c.advance();
    }
}

// The per-feature results and factors of the backward pass, from the stage-2 sums (double) of dy and
// dy * x_hat: dbeta and dgamma rounded once to T; mean_dy = sum dy / rows and mean_dy_xhat = sum dy x_hat / rows
// in double, rounded once to T (means, so that float32 never subtracts two numbers of size rows);
// scale = gamma * inv_std in T, as cpu.py.
template <typename T>
__global__ void batchnorm_gradient_factors(const double* __restrict__ sums, const T* __restrict__ gamma,
                                           const T* __restrict__ inv_std, T* __restrict__ dgamma,
                                           T* __restrict__ dbeta, T* __restrict__ scale, T* __restrict__ mean_dy,
                                           T* __restrict__ mean_dy_xhat, long long features, long long rows) {
    TK_GRID_STRIDE_LOOP(c, features) {
        const double sum_dy = sums[c];
        const double sum_dy_xhat = sums[features + c];
        dbeta[c] = static_cast<T>(sum_dy);
        dgamma[c] = static_cast<T>(sum_dy_xhat);
        mean_dy[c] = static_cast<T>(sum_dy / static_cast<double>(rows));
        mean_dy_xhat[c] = static_cast<T>(sum_dy_xhat / static_cast<double>(rows));
        scale[c] = gamma[c] * inv_std[c];
    }
}

// dx = scale * (dy - mean_dy - x_hat * mean_dy_xhat)   (training: the batch statistics depend on x)
// dx = scale * dy                                       (inference: the running statistics are constants)
template <typename T>
__global__ void batchnorm_input_gradient(const T* __restrict__ dy, const T* __restrict__ x_hat,
                                         const T* __restrict__ scale, const T* __restrict__ mean_dy,
                                         const T* __restrict__ mean_dy_xhat, T* __restrict__ dx, long long n,
                                         long long features, int training) {
    bn::Column c = bn::column_of(tk::global_thread_index(), features);
    if (training) {
        TK_GRID_STRIDE_LOOP(i, n) {
            dx[i] = scale[c.value] * (dy[i] - mean_dy[c.value] - x_hat[i] * mean_dy_xhat[c.value]);
            c.advance();
        }
    } else {
        TK_GRID_STRIDE_LOOP(i, n) {
            dx[i] = scale[c.value] * dy[i];
            c.advance();
        }
    }
}
