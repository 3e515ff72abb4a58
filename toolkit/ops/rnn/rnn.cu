// Simple (Elman) RNN on the GPU: the same recurrence and BPTT as reference.py / cpu.py, in our own kernels.
//
//   forward   xw = x W_xh + b_h            one product over all N*T rows before the time loop (it does not
//                                          depend on h: cuDNN precomputes it the same way)
//             for t = 0 .. T-1:            rnn_step_forward, one launch per step:
//               h_t = tanh(xw_t + h_{t-1} W_hh)        the recurrent product with tanh fused in its epilogue
//             y = h W_hy + b_y             one product over N*T rows (optional read-out)
//   backward  direct = dh + dy W_hy^T      one product (the upstream dh added in its epilogue)
//             for t = T-1 .. 0:            rnn_step_backward, one launch per step:
//               delta_t = (direct_t + delta_{t+1} W_hh^T) * (1 - h_t^2)
//             dh0 = delta_0 W_hh^T; dx = delta W_xh^T; dW_xh = x^T delta; dW_hh = h_prev^T delta;
//             dW_hy = h^T dy: products whose k runs over all N*T rows, so the BPTT sums over time are
//             inside one deterministic dot product per element (no per-step accumulation, no atomics);
//             db_h, db_y: two-stage column sums in double (reduce.cuh).
// The products are toolkit/cuda/gemm.cuh's tiles; the operands are read in place (transposes by a flag, the
// rows of one time step of an (N, T, H) array by a leading dimension T*H), so nothing is copied except h_prev.
// The whole-matrix kernels come with the includes (the same ones as lstm.cu's): matmul and shift_states
// (gemm.cuh), sum_slices and column_sums_partial / column_sums_finish (reduce.cuh).
#include "gemm.cuh"
#include "reduce.cuh"

// One time step forward: h[:, t] = tanh(xw[:, t] + h_{t-1} W_hh), h_{t-1} = h0 at t = 0 else h[:, t - 1].
// Tiles of (batch, hidden) outputs, grid-strided; the block reads step t - 1 of h and writes step t only.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
rnn_step_forward(const T* __restrict__ xw, const T* __restrict__ w_hh, const T* __restrict__ h0, T* __restrict__ h,
                 long long batch, long long steps, long long hidden, long long t) {
    using Tl = gemm::StepTiling;
    const long long row_stride = steps * hidden;  // from h[n, t] to h[n + 1, t]
    const gemm::Operand<T> previous = t == 0 ? gemm::Operand<T>{h0, hidden, 0}
                                             : gemm::Operand<T>{h + (t - 1) * hidden, row_stride, 0};
    const gemm::Operand<T> recurrent{w_hh, hidden, 0};
    const long long tiles_n = (hidden + Tl::kCols - 1) / Tl::kCols;
    const long long tiles = (batch + Tl::kRows - 1) / Tl::kRows * tiles_n;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform over the block
        const long long row0 = tile / tiles_n * Tl::kRows;
        const long long col0 = tile % tiles_n * Tl::kCols;
        T acc[Tl::kMicroRows][Tl::kMicroCols];
        gemm::multiply_tile<Tl>(previous, recurrent, batch, hidden, row0, gemm::PlainColumns{col0, hidden}, acc);
        for (int r = 0; r < Tl::kMicroRows; ++r) {
            const long long n = row0 + gemm::tile_row<Tl>(r);
            for (int q = 0; q < Tl::kMicroCols; ++q) {
                const long long j = col0 + gemm::tile_col<Tl>(q);
                if (n >= batch || j >= hidden) continue;
                const long long e = n * row_stride + t * hidden + j;
                h[e] = tk::tanh(xw[e] + acc[r][q]);
            }
        }
    }
}

// One time step back: delta[:, t] = (direct[:, t] + delta[:, t + 1] W_hh^T) * (1 - h[:, t]^2), tanh'
// written with h_t; at t = T - 1 nothing comes from later (k = 0: the product is skipped).
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
rnn_step_backward(const T* __restrict__ direct, const T* __restrict__ w_hh, const T* __restrict__ h,
                  T* __restrict__ delta, long long batch, long long steps, long long hidden, long long t) {
    using Tl = gemm::StepTiling;
    const long long row_stride = steps * hidden;
    const bool has_later = t + 1 < steps;
    const gemm::Operand<T> later{has_later ? delta + (t + 1) * hidden : delta, row_stride, 0};
    const gemm::Operand<T> recurrent_t{w_hh, hidden, 1};  // W_hh^T, read from W_hh's storage
    const long long tiles_n = (hidden + Tl::kCols - 1) / Tl::kCols;
    const long long tiles = (batch + Tl::kRows - 1) / Tl::kRows * tiles_n;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile / tiles_n * Tl::kRows;
        const long long col0 = tile % tiles_n * Tl::kCols;
        T acc[Tl::kMicroRows][Tl::kMicroCols];
        gemm::multiply_tile<Tl>(later, recurrent_t, batch, has_later ? hidden : 0, row0,
                                gemm::PlainColumns{col0, hidden}, acc);
        for (int r = 0; r < Tl::kMicroRows; ++r) {
            const long long n = row0 + gemm::tile_row<Tl>(r);
            for (int q = 0; q < Tl::kMicroCols; ++q) {
                const long long j = col0 + gemm::tile_col<Tl>(q);
                if (n >= batch || j >= hidden) continue;
                const long long e = n * row_stride + t * hidden + j;
                const T v = h[e];
                delta[e] = (direct[e] + acc[r][q]) * (T(1) - v * v);
            }
        }
    }
}
