// 2-D convolution on the GPU: the same sums, conventions and cache as reference.py / cpu.py, as three
// implicit matrix products (conv2d.cuh holds the shared tiled main loop) plus a column sum for db.
//
// Layout: x (N, H, W, Cin), w (KH, KW, Cin, Cout), y and dy (N, OH, OW, Cout), all C-contiguous.
// Output pixel (oh, ow) reads input pixel (oh*sh - top + kh, ow*sw - left + kw) through filter tap (kh, kw);
// taps that land in the padding read 0 (bottom/right padding only shortens the output: see geometry.py).
//
//   forward   y  (M x Cout)   = P (M x K)   W (K x Cout) + b      M = N*OH*OW, K = KH*KW*Cin
//             P[m, k] = x[n, oh*sh - top + kh, ow*sw - left + kw, ci],  m = (n*OH + oh)*OW + ow,
//             k = (kh*KW + kw)*Cin + ci: the im2col matrix of cpu.py, gathered tile by tile, never stored;
//             W is w viewed as (K, Cout) (its memory layout already), b added in the epilogue.
//   dx        dx (N*H*W x Cin) = G (N*H*W x K')  W' (K' x Cin)      K' = KH*KW*Cout
//             the transposed convolution in gather form: input pixel (n, ih, iw) collects
//             G[(n, ih, iw), (kh, kw, co)] = dy[n, oh, ow, co] for the output position with
//             oh*sh + kh = ih + top and ow*sw + kw = iw + left (0 when that is not an integer position
//             inside the output), times W'[(kh, kw, co), ci] = w[kh, kw, ci, co] (read in place).
//             Every dx element is written once by the thread owning it: no atomics, deterministic.
//             With stride s, only one tap in s (per axis) meets an output position: the others load 0
//             (and cost a multiply-add each: a phase-decomposed dx would skip them). Those zeros are
//             multiplied by w, so a non-finite weight gives 0 * Inf = NaN there (see gpu.py).
//   dw        dw (K x Cout) = P^T (K x M) dy (M x Cout): a product reducing over M (huge: all pixels of
//             the batch). The launcher splits M into `splits` ranges, each block multiplies its range into
//             its own slice of a workspace, and sum_slices (reduce.cuh) adds the slices in order: no atomics,
//             the same bits whatever the grid. The split depends on the shapes only (gpu.split_rows).
//   db        column sums of dy as (M, Cout), in two deterministic stages accumulated in double (reduce.cuh).
//
// Each product has a wide (128 x 128 tile) and a narrow (128 x 64) kernel: gpu.py takes the narrow one
// when C has at most 64 columns (Cout, or Cin for dx), where a wide tile would leave half its threads'
// work in the padding. Indices: element counts and flat offsets are long long; per-image sizes, channel
// counts and k (< KH*KW*C, the size of w) are int, as the launcher checks.
#include "conv2d.cuh"
#include "reduce.cuh"

namespace conv {

// The convolution's sizes, as the kernels receive them.
struct Geometry {
    int n, h, w, cin, oh, ow, cout, kh, kw, sh, sw, top, left;
};

// q = t / s when s divides t exactly (t >= 0): the output position a tap lands on along one axis.
__device__ __forceinline__ bool exact_quotient(int t, int s, int& q) {
    if (s == 1) {  // the common case needs no division
        q = t;
        return true;
    }
    q = t / s;
    return q * s == t;
}

// ---------------------------------------------------------------------------------- operand loaders
// Each fills this thread's elements of the next k slice (see multiply_tiles) and moves on by kTileK.

// Rows [next, depth) of a row-major matrix p with `cols` columns; this thread's column is fixed per tile.
// Forward: B = W (K x Cout), w's own memory. dw: B = dy as (M x Cout). Lanes run along the columns: a warp
// reads consecutive elements of one row.
template <typename T, int kExtent>
struct MatrixRows {
    static constexpr Lanes kLanes = kAlongI;
    static constexpr int kLoads = Slice<kExtent>::kLoads;
    const T* __restrict__ p;
    long long cols, depth, next, col;

    __device__ MatrixRows(const T* __restrict__ p_, long long cols_, long long first_row, long long depth_,
                          long long n0)
        : p(p_), cols(cols_), depth(depth_), next(first_row), col(n0 + slice_i<kExtent, kAlongI>(0)) {}

    __device__ __forceinline__ void load(T (&r)[kLoads]) {
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const long long row = next + slice_k<kExtent, kAlongI>(j);
            r[j] = (col < cols && row < depth) ? p[row * cols + col] : T(0);
        }
        next += kTileK;
    }
};

// Forward A: rows m0 .. m0 + 127 of the im2col matrix P. This thread's 4 rows (output pixels) are fixed
// for the tile: their top-left input corner is computed once (one 64-bit division per row and tile);
// per slice it decodes its one k = (kh, kw, ci) and checks each row's tap against the image borders.
// Lanes run along k: consecutive ci of one pixel are consecutive in x.
template <typename T>
struct ImageRows {
    static constexpr Lanes kLanes = kAlongK;
    static constexpr int kLoads = Slice<kTileM>::kLoads;
    const T* __restrict__ x;
    int h, w, cin, kw, depth, next;
    long long corner[kLoads];  // flat index of (n, top row, left column, channel 0), may lie in the padding
    int row0[kLoads], col0[kLoads];  // oh*sh - top, ow*sw - left; row0 = -KH marks a row past M (never inside)

    __device__ ImageRows(const T* __restrict__ x_, const Geometry& g, long long m0, long long m)
        : x(x_), h(g.h), w(g.w), cin(g.cin), kw(g.kw), depth(g.kh * g.kw * g.cin), next(0) {
        const long long per_image = static_cast<long long>(g.oh) * g.ow;
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const long long row = m0 + slice_i<kTileM, kAlongK>(j);
            const long long n = row / per_image;
            const int pixel = static_cast<int>(row - n * per_image);
            const int oh = pixel / g.ow;
            row0[j] = row < m ? oh * g.sh - g.top : -g.kh;
            col0[j] = (pixel - oh * g.ow) * g.sw - g.left;
            corner[j] = ((n * g.h + row0[j]) * g.w + col0[j]) * g.cin;
        }
    }

    __device__ __forceinline__ void load(T (&r)[kLoads]) {
        const int k = next + slice_k<kTileM, kAlongK>(0);
        next += kTileK;
        int fh = 0, fw = 0;
        long long offset = 0;
        const bool in_k = k < depth;
        if (in_k) {
            const int tap = k / cin;
            const int ci = k - tap * cin;
            fh = tap / kw;
            fw = tap - fh * kw;
            offset = (static_cast<long long>(fh) * w + fw) * cin + ci;
        }
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int ih = row0[j] + fh, iw = col0[j] + fw;
            const bool inside = in_k && static_cast<unsigned>(ih) < static_cast<unsigned>(h) &&
                                static_cast<unsigned>(iw) < static_cast<unsigned>(w);
            r[j] = inside ? x[corner[j] + offset] : T(0);
        }
    }
};

// dx's A: rows m0 .. m0 + 127 of G, m = (n*H + ih)*W + iw, k = (kh*KW + kw)*Cout + co. Per row the
// padded coordinates (ih + top, iw + left) are computed once per tile; per slice the tap (kh, kw) gives the
// output position ((ih + top - kh) / sh, (iw + left - kw) / sw) when both divisions are exact and in range.
template <typename T>
struct OutputGradientRows {
    static constexpr Lanes kLanes = kAlongK;
    static constexpr int kLoads = Slice<kTileM>::kLoads;
    const T* __restrict__ dy;
    int oh, ow, cout, kw, sh, sw, depth, next;
    long long image[kLoads];  // n * OH * OW: the first output pixel of row j's image
    int row_p[kLoads], col_p[kLoads];  // ih + top, iw + left; row_p = -1 marks a row past M (never inside)

    __device__ OutputGradientRows(const T* __restrict__ dy_, const Geometry& g, long long m0, long long m)
        : dy(dy_), oh(g.oh), ow(g.ow), cout(g.cout), kw(g.kw), sh(g.sh), sw(g.sw),
          depth(g.kh * g.kw * g.cout), next(0) {
        const long long per_image = static_cast<long long>(g.h) * g.w;
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const long long row = m0 + slice_i<kTileM, kAlongK>(j);
            const long long n = row / per_image;
            const int pixel = static_cast<int>(row - n * per_image);
            const int ih = pixel / g.w;
            image[j] = n * g.oh * g.ow;
            row_p[j] = row < m ? ih + g.top : -1;
            col_p[j] = pixel - ih * g.w + g.left;
        }
    }

    __device__ __forceinline__ void load(T (&r)[kLoads]) {
        const int k = next + slice_k<kTileM, kAlongK>(0);
        next += kTileK;
        int fh = 0, fw = 0, co = 0;
        const bool in_k = k < depth;
        if (in_k) {
            const int tap = k / cout;
            co = k - tap * cout;
            fh = tap / kw;
            fw = tap - fh * kw;
        }
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int t = row_p[j] - fh, u = col_p[j] - fw;  // = oh*sh and ow*sw if this tap met an output
            int o_row = 0, o_col = 0;
            const bool hit = in_k && t >= 0 && u >= 0 && exact_quotient(t, sh, o_row) &&
                             exact_quotient(u, sw, o_col) && o_row < oh && o_col < ow;
            r[j] = hit ? dy[(image[j] + static_cast<long long>(o_row) * ow + o_col) * cout + co] : T(0);
        }
    }
};

// dx's B: W'[k, ci] = w[kh, kw, ci, co] with k = (kh*KW + kw)*Cout + co, read in place from w. Lanes run
// along k, i.e. along co, which is w's contiguous axis.
template <typename T, int kExtent>
struct TransposedFilters {
    static constexpr Lanes kLanes = kAlongK;
    static constexpr int kLoads = Slice<kExtent>::kLoads;
    const T* __restrict__ w;
    int cin, cout, depth, next, n0;

    __device__ TransposedFilters(const T* __restrict__ w_, const Geometry& g, int n0_)
        : w(w_), cin(g.cin), cout(g.cout), depth(g.kh * g.kw * g.cout), next(0), n0(n0_) {}

    __device__ __forceinline__ void load(T (&r)[kLoads]) {
        const int k = next + slice_k<kExtent, kAlongK>(0);
        next += kTileK;
        const bool in_k = k < depth;
        const int tap = in_k ? k / cout : 0;
        const long long base = (static_cast<long long>(tap) * cin) * cout + (k - tap * cout);
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int ci = n0 + slice_i<kExtent, kAlongK>(j);
            r[j] = (in_k && ci < cin) ? w[base + static_cast<long long>(ci) * cout] : T(0);
        }
    }
};

// dw's A: P^T (K x M) over the rows m in [next, m_end): element (m, k) = P[m, k]. This thread's k (its
// column of the C tile) is fixed per tile, so (kh, kw, ci) is decoded once; its 4 pixels m advance by 8
// per slice, tracked as (n, oh, ow) counters so the loop never divides. Lanes run along k: consecutive
// channels of one pixel.
template <typename T>
struct ImageColumns {
    static constexpr Lanes kLanes = kAlongI;
    static constexpr int kLoads = Slice<kTileM>::kLoads;
    const T* __restrict__ x;
    int h, w, cin, oh, ow, sh, sw, top, left;
    long long m_end;
    bool k_ok;
    int fh, fw, ci;
    long long m[kLoads];
    int n[kLoads], o_row[kLoads], o_col[kLoads];

    __device__ ImageColumns(const T* __restrict__ x_, const Geometry& g, long long k0, long long m_begin,
                            long long m_end_)
        : x(x_), h(g.h), w(g.w), cin(g.cin), oh(g.oh), ow(g.ow), sh(g.sh), sw(g.sw), top(g.top), left(g.left),
          m_end(m_end_) {
        const long long k = k0 + slice_i<kTileM, kAlongI>(0);
        k_ok = k < static_cast<long long>(g.kh) * g.kw * g.cin;
        const int kk = k_ok ? static_cast<int>(k) : 0;
        const int tap = kk / g.cin;
        ci = kk - tap * g.cin;
        fh = tap / g.kw;
        fw = tap - fh * g.kw;
        const long long per_image = static_cast<long long>(g.oh) * g.ow;
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            m[j] = m_begin + slice_k<kTileM, kAlongI>(j);
            const long long image = m[j] / per_image;
            const int pixel = static_cast<int>(m[j] - image * per_image);
            n[j] = static_cast<int>(image);
            o_row[j] = pixel / g.ow;
            o_col[j] = pixel - o_row[j] * g.ow;
        }
    }

    __device__ __forceinline__ void load(T (&r)[kLoads]) {
        CONV_UNROLL
        for (int j = 0; j < kLoads; ++j) {
            const int ih = o_row[j] * sh - top + fh, iw = o_col[j] * sw - left + fw;
            const bool inside = k_ok && m[j] < m_end && static_cast<unsigned>(ih) < static_cast<unsigned>(h) &&
                                static_cast<unsigned>(iw) < static_cast<unsigned>(w);
            r[j] = inside ? x[((static_cast<long long>(n[j]) * h + ih) * w + iw) * cin + ci] : T(0);
            // Next slice: 8 pixels on. A narrow output (OW < 8) wraps more than once.
            m[j] += kTileK;
            o_col[j] += kTileK;
            while (o_col[j] >= ow) {
                o_col[j] -= ow;
                if (++o_row[j] == oh) {
                    o_row[j] = 0;
                    ++n[j];
                }
            }
        }
    }
};

// ---------------------------------------------------------------------------------- the three products
template <typename T, int kTileN>
__device__ __forceinline__ void forward_tiles(const T* __restrict__ x, const T* __restrict__ w,
                                              const T* __restrict__ bias, T* __restrict__ y, const Geometry& g,
                                              int has_bias) {
    __shared__ Stage<T, kTileN> stage;
    const long long rows = static_cast<long long>(g.n) * g.oh * g.ow;
    const long long depth = static_cast<long long>(g.kh) * g.kw * g.cin;
    const long long tiles_m = (rows + kTileM - 1) / kTileM;
    const long long tiles_n = (g.cout + kTileN - 1) / kTileN;
    for (long long item = blockIdx.x; item < tiles_m * tiles_n; item += gridDim.x) {  // uniform over the block
        long long tm, tn;
        tile_coordinates(item, tiles_m, tiles_n, tm, tn);
        const long long m0 = tm * kTileM, n0 = tn * kTileN;
        ImageRows<T> a(x, g, m0, rows);
        MatrixRows<T, kTileN> b(w, g.cout, 0, depth, n0);
        T acc[kMicroM][kTileN / kThreadsPerSide];
        multiply_tiles(a, b, (depth + kTileK - 1) / kTileK, stage, acc);
        const long long cols = g.cout;
        store_tile<T, kTileN>(acc, m0, n0, rows, cols, [&](long long row, long long col, T v) {
            y[row * cols + col] = has_bias ? v + bias[col] : v;
        });
    }
}

template <typename T, int kTileN>
__device__ __forceinline__ void backward_data_tiles(const T* __restrict__ dy, const T* __restrict__ w,
                                                    T* __restrict__ dx, const Geometry& g) {
    __shared__ Stage<T, kTileN> stage;
    const long long rows = static_cast<long long>(g.n) * g.h * g.w;
    const long long depth = static_cast<long long>(g.kh) * g.kw * g.cout;
    const long long tiles_m = (rows + kTileM - 1) / kTileM;
    const long long tiles_n = (g.cin + kTileN - 1) / kTileN;
    for (long long item = blockIdx.x; item < tiles_m * tiles_n; item += gridDim.x) {
        long long tm, tn;
        tile_coordinates(item, tiles_m, tiles_n, tm, tn);
        const long long m0 = tm * kTileM, n0 = tn * kTileN;
        OutputGradientRows<T> a(dy, g, m0, rows);
        TransposedFilters<T, kTileN> b(w, g, static_cast<int>(n0));
        T acc[kMicroM][kTileN / kThreadsPerSide];
        multiply_tiles(a, b, (depth + kTileK - 1) / kTileK, stage, acc);
        const long long cols = g.cin;
        store_tile<T, kTileN>(acc, m0, n0, rows, cols,
                              [&](long long row, long long col, T v) { dx[row * cols + col] = v; });
    }
}

// Work item = (split, tile of dw); split s reduces pixels [s * rows_per_split, (s + 1) * rows_per_split)
// into out + s * K * Cout (out is dw itself when splits == 1).
template <typename T, int kTileN>
__device__ __forceinline__ void backward_filter_tiles(const T* __restrict__ x, const T* __restrict__ dy,
                                                      T* __restrict__ out, const Geometry& g,
                                                      long long rows_per_split, int splits) {
    __shared__ Stage<T, kTileN> stage;
    const long long pixels = static_cast<long long>(g.n) * g.oh * g.ow;
    const long long rows = static_cast<long long>(g.kh) * g.kw * g.cin;
    const long long cols = g.cout;
    const long long tiles_m = (rows + kTileM - 1) / kTileM;
    const long long tiles_n = (cols + kTileN - 1) / kTileN;
    const long long tiles = tiles_m * tiles_n;
    for (long long item = blockIdx.x; item < tiles * splits; item += gridDim.x) {
        const long long split = item / tiles;
        long long tm, tn;
        tile_coordinates(item % tiles, tiles_m, tiles_n, tm, tn);
        const long long m0 = tm * kTileM, n0 = tn * kTileN;
        const long long begin = split * rows_per_split;
        const long long end = min(pixels, begin + rows_per_split);
        ImageColumns<T> a(x, g, m0, begin, end);
        MatrixRows<T, kTileN> b(dy, cols, begin, end, n0);
        T acc[kMicroM][kTileN / kThreadsPerSide];
        multiply_tiles(a, b, (end - begin + kTileK - 1) / kTileK, stage, acc);
        T* slice = out + split * rows * cols;
        store_tile<T, kTileN>(acc, m0, n0, rows, cols,
                              [&](long long row, long long col, T v) { slice[row * cols + col] = v; });
    }
}

}  // namespace conv

// ---------------------------------------------------------------------------------- kernels
// Every GEMM kernel runs 256 threads (conv::kThreads) per block and walks its tiles with a grid-stride loop.
// The geometry arguments are the sizes of Geometry (gpu._geometry); `bias` is never read when has_bias == 0
// (the launcher then passes any array of T).

// y = conv(x, w) + b, 128 x 128 tiles of y viewed as (N*OH*OW, Cout).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
               int n_images, int height, int width, int in_channels, int out_height, int out_width,
               int out_channels, int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top, int pad_left,
               int has_bias) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::forward_tiles<T, conv::kWide>(x, w, bias, y, g, has_bias);
}

// The same with 128 x 64 tiles (Cout <= 64).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_forward_narrow(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                      T* __restrict__ y, int n_images, int height, int width, int in_channels, int out_height,
                      int out_width, int out_channels, int kernel_h, int kernel_w, int stride_h, int stride_w,
                      int pad_top, int pad_left, int has_bias) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::forward_tiles<T, conv::kNarrow>(x, w, bias, y, g, has_bias);
}

// dx = the transposed convolution of dy (gather form), 128 x 128 tiles of dx viewed as (N*H*W, Cin).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_backward_data(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, int n_images,
                     int height, int width, int in_channels, int out_height, int out_width, int out_channels,
                     int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top, int pad_left) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::backward_data_tiles<T, conv::kWide>(dy, w, dx, g);
}

// The same with 128 x 64 tiles (Cin <= 64).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_backward_data_narrow(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, int n_images,
                            int height, int width, int in_channels, int out_height, int out_width,
                            int out_channels, int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top,
                            int pad_left) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::backward_data_tiles<T, conv::kNarrow>(dy, w, dx, g);
}

// dw slices: out[s] = P^T dy over pixel range s, 128 x 128 tiles of dw viewed as (KH*KW*Cin, Cout).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_backward_filter(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out, int n_images,
                       int height, int width, int in_channels, int out_height, int out_width, int out_channels,
                       int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top, int pad_left,
                       long long rows_per_split, int splits) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::backward_filter_tiles<T, conv::kWide>(x, dy, out, g, rows_per_split, splits);
}

// The same with 128 x 64 tiles (Cout <= 64).
template <typename T>
__global__ void __launch_bounds__(conv::kThreads)
conv2d_backward_filter_narrow(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out,
                              int n_images, int height, int width, int in_channels, int out_height, int out_width,
                              int out_channels, int kernel_h, int kernel_w, int stride_h, int stride_w,
                              int pad_top, int pad_left, long long rows_per_split, int splits) {
    const conv::Geometry g{n_images, height, width, in_channels, out_height, out_width, out_channels,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left};
    conv::backward_filter_tiles<T, conv::kNarrow>(x, dy, out, g, rows_per_split, splits);
}
