// Activation functions on the GPU: the same formulas and kink conventions as reference.py / cpu.py.
//
// Elementwise activations share one fused kernel per pass, driven by an integer code (the order of
// reference.ELEMENTWISE, as cpu.CODE): one grid-stride launch reads x (and y, dy) once and writes once.
// Softmax and log-softmax: one block per row (grid-stride over rows), the reduction axis moved last by
// gpu.py; rows of any length (each thread strides over the row, then a block reduction).
// float kernels compute and accumulate in float (the block reduction's tree keeps sums accurate).
#include "common.cuh"

namespace act {

enum Code : int {
    kIdentity = 0, kBinaryStep, kBipolarStep, kSigmoid, kBipolarSigmoid, kTanh, kRelu, kLeakyRelu, kRamp
};

template <typename T>
__device__ __forceinline__ T value(int code, T x, T threshold, T steepness, T alpha) {
    switch (code) {
        case kIdentity: return x;
        case kBinaryStep: return x >= threshold ? T(1) : T(0);
        case kBipolarStep: return x >= threshold ? T(1) : T(-1);
        case kSigmoid: return tk::sigmoid(steepness * x);
        case kBipolarSigmoid: return tk::tanh(T(0.5) * steepness * x);  // = 2 sigmoid(lambda x) - 1
        case kTanh: return tk::tanh(x);
        case kRelu: return x <= T(0) ? T(0) : x;  // written so that NaN stays NaN
        case kLeakyRelu: return x > T(0) ? x : alpha * x;
        default: return x < T(0) ? T(0) : (x > T(1) ? T(1) : x);  // ramp: clip to [0, 1]
    }
}

// f'(x) with y = f(x); conventions at the kinks: ReLU'(0) = 0, leaky ReLU'(0) = alpha, ramp' = 1 on
// the open interval (0, 1) only, step derivatives 0.
template <typename T>
__device__ __forceinline__ T derivative(int code, T x, T y, T steepness, T alpha) {
    switch (code) {
        case kIdentity: return T(1);
        case kBinaryStep:
        case kBipolarStep: return T(0);
        case kSigmoid: return steepness * y * (T(1) - y);
        case kBipolarSigmoid: return T(0.5) * steepness * (T(1) + y) * (T(1) - y);
        case kTanh: return T(1) - y * y;
        case kRelu: return x > T(0) ? T(1) : T(0);
        case kLeakyRelu: return x > T(0) ? T(1) : alpha;
        default: return (x > T(0) && x < T(1)) ? T(1) : T(0);
    }
}

}  // namespace act

template <typename T>
__global__ void activation_forward(const T* __restrict__ x, T* __restrict__ y, long long n, int code,
                                   T threshold, T steepness, T alpha) {
    TK_GRID_STRIDE_LOOP(i, n) { y[i] = act::value(code, x[i], threshold, steepness, alpha); }
}

template <typename T>
__global__ void activation_backward(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                                    T* __restrict__ dx, long long n, int code, T steepness, T alpha) {
    TK_GRID_STRIDE_LOOP(i, n) { dx[i] = dy[i] * act::derivative(code, x[i], y[i], steepness, alpha); }
}

// y = softmax(x) or log_softmax(x) along each row of a (rows, n) matrix, max subtracted first.
template <typename T>
__global__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y, long long rows, long long n,
                                int log_output) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {  // the whole block takes one row
        const T* xr = x + row * n;
        T* yr = y + row * n;
        T m = -tk::infinity<T>();
        for (long long j = threadIdx.x; j < n; j += blockDim.x) m = tk::Max()(m, xr[j]);
        m = tk::block_all_reduce(m, tk::Max(), -tk::infinity<T>());
        T s = T(0);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) s += tk::exp(xr[j] - m);
        s = tk::block_all_reduce(s, tk::Sum(), T(0));
        if (log_output) {
            const T log_s = tk::log(s);
            for (long long j = threadIdx.x; j < n; j += blockDim.x) yr[j] = xr[j] - m - log_s;
        } else {
            const T inv = T(1) / s;
            for (long long j = threadIdx.x; j < n; j += blockDim.x) yr[j] = tk::exp(xr[j] - m) * inv;
        }
    }
}

// The Jacobian-vector products, from the forward output y:
//   softmax:      dx = y * (dy - sum(dy * y))
//   log_softmax:  dx = dy - exp(y) * sum(dy)
template <typename T>
__global__ void softmax_backward(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx,
                                 long long rows, long long n, int log_output) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* yr = y + row * n;
        const T* dyr = dy + row * n;
        T* dxr = dx + row * n;
        T s = T(0);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) s += log_output ? dyr[j] : dyr[j] * yr[j];
        s = tk::block_all_reduce(s, tk::Sum(), T(0));
        if (log_output) {
            for (long long j = threadIdx.x; j < n; j += blockDim.x) dxr[j] = dyr[j] - tk::exp(yr[j]) * s;
        } else {
            for (long long j = threadIdx.x; j < n; j += blockDim.x) dxr[j] = yr[j] * (dyr[j] - s);
        }
    }
}
