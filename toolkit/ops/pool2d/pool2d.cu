// 2-D pooling on the GPU: the same windows, conventions and cache as reference.py / cpu.py.
//
// Layout: x (N, H, W, C) and y (N, OH, OW, C), channels last and C-contiguous. Output window (oh, ow)
// covers input rows [oh*sh - top, oh*sh - top + ph) and columns [ow*sw - left, ow*sw - left + pw),
// clipped to the real input: padded cells are never visited, so max never selects one and the
// average divides by the number of real cells (see geometry.py).
//
// Forward: one thread per OUTPUT element (n, oh, ow, c), grid-stride over the flat index of y. The
// channel is the fastest-varying index, so consecutive threads read consecutive channels of the same
// input cell and write consecutive outputs: every load and store of a warp is coalesced.
//
// Backward: a GATHER, one thread per INPUT element (n, h, w, c): it sums the gradients of the windows
// that contain it (max: only those whose argmax is this cell). Every thread writes its own dx element
// once, so overlapping windows (stride < pool) need no atomics, and the result does not depend on the
// schedule: the sum always runs over (oh, ow) in ascending order, exactly as cpu.py's loops do.
//
// float kernels compute in float: a window holds pool_h * pool_w values, a short sum.
#include "common.cuh"

namespace pool {

// Input rows [start, stop) of window o along one axis, clipped to the real input [0, n).
struct Span {
    int start;
    int stop;
};

__device__ __forceinline__ Span window(int o, int stride, int pool, int before, int n) {
    const int first = o * stride - before;
    return Span{first < 0 ? 0 : first, first + pool < n ? first + pool : n};
}

// Output indices [first, last] of the windows (along one axis) that contain input index i:
// window o contains i iff o*stride - before <= i < o*stride - before + pool. last < first when none
// does (stride > pool leaves cells in no window).
__device__ __forceinline__ Span windows_containing(int i, int stride, int pool, int before, int n_out) {
    const int reach = i + before - pool + 1;
    const int first = reach <= 0 ? 0 : (reach + stride - 1) / stride;
    const int last = (i + before) / stride;
    return Span{first, last < n_out - 1 ? last : n_out - 1};
}

// (n, row, col, c) of a flat index into an (N, rows, cols, C) array.
struct Index4 {
    long long n;
    int row;
    int col;
    int c;
};

__device__ __forceinline__ Index4 unflatten(long long i, int rows, int cols, int channels) {
    const long long pixel = i / channels;
    const long long image_row = pixel / cols;
    return Index4{image_row / rows, static_cast<int>(image_row % rows), static_cast<int>(pixel % cols),
                  static_cast<int>(i % channels)};
}

}  // namespace pool

// y = max over each window; argmax = h*W + w of the selected cell (int64, as cpu.py's cache).
// Ties keep the FIRST maximum in row-major window order (strictly greater replaces); a NaN replaces a
// non-NaN, so the first NaN of a window wins and propagates, as np.max/np.argmax do.
template <typename T>
__global__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ argmax,
                                 long long total, int h_in, int w_in, int channels, int out_h, int out_w,
                                 int pool_h, int pool_w, int stride_h, int stride_w, int top, int left) {
    TK_GRID_STRIDE_LOOP(i, total) {
        const pool::Index4 o = pool::unflatten(i, out_h, out_w, channels);
        const pool::Span rows = pool::window(o.row, stride_h, pool_h, top, h_in);
        const pool::Span cols = pool::window(o.col, stride_w, pool_w, left, w_in);
        const T* image = x + o.n * h_in * w_in * channels + o.c;
        // The first real cell seeds the maximum: validation guarantees every window holds one.
        T best = image[(static_cast<long long>(rows.start) * w_in + cols.start) * channels];
        long long best_cell = static_cast<long long>(rows.start) * w_in + cols.start;
        for (int h = rows.start; h < rows.stop; ++h) {
            for (int w = cols.start; w < cols.stop; ++w) {
                const long long cell = static_cast<long long>(h) * w_in + w;
                const T v = image[cell * channels];
                if (v > best || (v != v && best == best)) {  // v != v: v is NaN
                    best = v;
                    best_cell = cell;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_cell;
    }
}

// y = sum of the real cells of each window, divided by their number when `average` is set.
// Cells are added in row-major window order from 0, as cpu.py does; the count is converted to T
// before the division (cpu.py's counts array has x's dtype).
template <typename T>
__global__ void sum_pool_forward(const T* __restrict__ x, T* __restrict__ y, long long total, int h_in, int w_in,
                                 int channels, int out_h, int out_w, int pool_h, int pool_w, int stride_h,
                                 int stride_w, int top, int left, int average) {
    TK_GRID_STRIDE_LOOP(i, total) {
        const pool::Index4 o = pool::unflatten(i, out_h, out_w, channels);
        const pool::Span rows = pool::window(o.row, stride_h, pool_h, top, h_in);
        const pool::Span cols = pool::window(o.col, stride_w, pool_w, left, w_in);
        const T* image = x + o.n * h_in * w_in * channels + o.c;
        T s = T(0);
        for (int h = rows.start; h < rows.stop; ++h) {
            for (int w = cols.start; w < cols.stop; ++w) s += image[(static_cast<long long>(h) * w_in + w) * channels];
        }
        if (average) s = s / T((rows.stop - rows.start) * (cols.stop - cols.start));
        y[i] = s;
    }
}

// dx[n, h, w, c] = sum of dy[n, oh, ow, c] over the windows containing (h, w) whose argmax is (h, w).
template <typename T>
__global__ void max_pool_backward(const T* __restrict__ dy, const long long* __restrict__ argmax,
                                  T* __restrict__ dx, long long total, int h_in, int w_in, int channels, int out_h,
                                  int out_w, int pool_h, int pool_w, int stride_h, int stride_w, int top, int left) {
    TK_GRID_STRIDE_LOOP(i, total) {
        const pool::Index4 p = pool::unflatten(i, h_in, w_in, channels);
        const pool::Span ohs = pool::windows_containing(p.row, stride_h, pool_h, top, out_h);
        const pool::Span ows = pool::windows_containing(p.col, stride_w, pool_w, left, out_w);
        const long long cell = static_cast<long long>(p.row) * w_in + p.col;
        const long long image = p.n * out_h * out_w * channels + p.c;
        T g = T(0);
        for (int oh = ohs.start; oh <= ohs.stop; ++oh) {
            for (int ow = ows.start; ow <= ows.stop; ++ow) {
                const long long k = image + (static_cast<long long>(oh) * out_w + ow) * channels;
                if (argmax[k] == cell) g += dy[k];
            }
        }
        dx[i] = g;
    }
}

// dx[n, h, w, c] = sum over the windows containing (h, w) of dy (sum) or dy / real cells (average).
template <typename T>
__global__ void sum_pool_backward(const T* __restrict__ dy, T* __restrict__ dx, long long total, int h_in,
                                  int w_in, int channels, int out_h, int out_w, int pool_h, int pool_w, int stride_h,
                                  int stride_w, int top, int left, int average) {
    TK_GRID_STRIDE_LOOP(i, total) {
        const pool::Index4 p = pool::unflatten(i, h_in, w_in, channels);
        const pool::Span ohs = pool::windows_containing(p.row, stride_h, pool_h, top, out_h);
        const pool::Span ows = pool::windows_containing(p.col, stride_w, pool_w, left, out_w);
        const long long image = p.n * out_h * out_w * channels + p.c;
        T g = T(0);
        for (int oh = ohs.start; oh <= ohs.stop; ++oh) {
            const pool::Span rows = pool::window(oh, stride_h, pool_h, top, h_in);
            for (int ow = ows.start; ow <= ows.stop; ++ow) {
                const T d = dy[image + (static_cast<long long>(oh) * out_w + ow) * channels];
                if (average) {
                    const pool::Span cols = pool::window(ow, stride_w, pool_w, left, w_in);
                    g += d / T((rows.stop - rows.start) * (cols.stop - cols.start));
                } else {
                    g += d;
                }
            }
        }
        dx[i] = g;
    }
}
