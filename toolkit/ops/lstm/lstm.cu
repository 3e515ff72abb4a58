// LSTM on the GPU (gate order i, f, c, o as Keras): the same equations and BPTT as reference.py / cpu.py.
//
//   forward   xwb = x W + b                one product over all N*T rows before the time loop (it does not
//                                          depend on h: cuDNN precomputes it the same way)
//             for t = 0 .. T-1:            lstm_step_forward, one launch per step, everything fused:
//               z = xwb_t + h_{t-1} U;  i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_c)
//               c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
//             A block's tile holds the same 8 hidden units of all four gates (U's columns j, H + j, 2H + j,
//             3H + j side by side, gemm.cuh's column map), so the cell update needs no second kernel and z
//             never reaches global memory: the tile goes through shared memory to the thread of each unit.
//   backward  for t = T-1 .. 0:            lstm_step_backward, one launch per step:
//               dh_t = dh[:, t] + dz_{t+1} U^T    (the product; its epilogue is the gate chain rule)
//               dc_t = dc_carry + dh_t o (1 - tanh(c_t)^2)
//               dz_t = (dc_t g i(1-i), dc_t c_{t-1} f(1-f), dc_t i (1-g^2), dh_t tanh(c_t) o(1-o))
//               dc_carry = dc_t f                 (carried to step t-1; dc_last at t = T-1)
//             dh0 = dz_0 U^T; dx = dz W^T; dW = x^T dz; dU = h_prev^T dz: products whose k runs over all N*T
//             rows (the BPTT sums over time inside one deterministic dot product per element); db: a
//             two-stage column sum in double (reduce.cuh). No atomics anywhere.
// The sigmoid is tk::sigmoid (exp of a non-positive number only: no overflow at |z| = 1e4).
// The whole-matrix kernels come with the includes (the same ones as rnn.cu's): matmul and shift_states
// (toolkit/cuda/gemm.cuh), sum_slices and column_sums_partial / column_sums_finish (reduce.cuh).
#include "gemm.cuh"
#include "reduce.cuh"

namespace lstm {

using Step = gemm::StepTiling;
constexpr int kGates = 4;
constexpr int kUnits = Step::kCols / kGates;  // hidden units per forward tile (8), each with its 4 gates
static_assert(Step::kRows * kUnits == gemm::kThreads, "the cell update gives one (row, unit) to each thread");

// Tile column q -> column of U: gate q / kUnits of hidden unit first + q % kUnits (-1 past the last unit).
struct GateColumns {
    long long first;
    long long hidden;
    __device__ __forceinline__ long long operator()(int q) const {
        const long long j = first + q % kUnits;
        return j < hidden ? (q / kUnits) * hidden + j : -1;
    }
};

}  // namespace lstm

// One time step forward (see the top). h_{t-1}, c_{t-1} = h0, c0 at t = 0, else step t - 1 of h, c.
// Work item = (32 batch rows, 8 hidden units); a block reads step t - 1 and writes step t only.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
lstm_step_forward(const T* __restrict__ xwb, const T* __restrict__ u, const T* __restrict__ h0,
                  const T* __restrict__ c0, T* __restrict__ h, T* __restrict__ c, T* __restrict__ gates,
                  long long batch, long long steps, long long hidden, long long t) {
    using lstm::Step;
    using lstm::kUnits;
    __shared__ T z[Step::kRows][Step::kCols + 1];  // h_{t-1} U of the tile, gate-major within a row
    const long long row_stride = steps * hidden;
    const gemm::Operand<T> previous = t == 0 ? gemm::Operand<T>{h0, hidden, 0}
                                             : gemm::Operand<T>{h + (t - 1) * hidden, row_stride, 0};
    const gemm::Operand<T> recurrent{u, lstm::kGates * hidden, 0};
    const long long tiles_n = (hidden + kUnits - 1) / kUnits;
    const long long tiles = (batch + Step::kRows - 1) / Step::kRows * tiles_n;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform over the block
        const long long row0 = tile / tiles_n * Step::kRows;
        const long long unit0 = tile % tiles_n * kUnits;
        T acc[Step::kMicroRows][Step::kMicroCols];
        gemm::multiply_tile<Step>(previous, recurrent, batch, hidden, row0, lstm::GateColumns{unit0, hidden}, acc);
        for (int r = 0; r < Step::kMicroRows; ++r) {
            for (int q = 0; q < Step::kMicroCols; ++q) z[gemm::tile_row<Step>(r)][gemm::tile_col<Step>(q)] = acc[r][q];
        }
        __syncthreads();  // the whole tile is in z before a thread reads the four gates of its unit
        const int row = static_cast<int>(threadIdx.x) / kUnits;
        const int unit = static_cast<int>(threadIdx.x) % kUnits;
        const long long n = row0 + row;
        const long long j = unit0 + unit;
        if (n < batch && j < hidden) {
            const long long e = n * row_stride + t * hidden + j;  // h[n, t, j], c[n, t, j]
            const long long g4 = (n * steps + t) * lstm::kGates * hidden + j;  // gate 0 of unit j in xwb, gates
            const T ig = tk::sigmoid(xwb[g4] + z[row][unit]);
            const T fg = tk::sigmoid(xwb[g4 + hidden] + z[row][kUnits + unit]);
            const T gg = tk::tanh(xwb[g4 + 2 * hidden] + z[row][2 * kUnits + unit]);
            const T og = tk::sigmoid(xwb[g4 + 3 * hidden] + z[row][3 * kUnits + unit]);
            const T c_prev = t == 0 ? c0[n * hidden + j] : c[e - hidden];
            const T cv = fg * c_prev + ig * gg;
            c[e] = cv;
            h[e] = og * tk::tanh(cv);
            gates[g4] = ig;
            gates[g4 + hidden] = fg;
            gates[g4 + 2 * hidden] = gg;
            gates[g4 + 3 * hidden] = og;
        }
        // Every thread has read z before the next tile overwrites it (the next multiply_tile's barriers
        // would order that too; this one keeps the kernel correct without relying on them).
        __syncthreads();
    }
}

// One time step back (see the top). dz[:, t + 1] U^T is the product (skipped at t = T - 1: k = 0);
// dc_carry (N, H) holds dL/dc_t from step t + 1 and is replaced by dL/dc_{t-1}: each element is read and
// written by the one thread of its (n, j). dh is read only when has_dh, dc_last only when has_dc_last.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
lstm_step_backward(const T* __restrict__ dh, const T* __restrict__ dc_last, const T* __restrict__ u,
                   const T* __restrict__ c0, const T* __restrict__ c, const T* __restrict__ gates,
                   T* __restrict__ dz, T* __restrict__ dc_carry, long long batch, long long steps, long long hidden,
                   long long t, int has_dh, int has_dc_last) {
    using lstm::Step;
    const long long gate_width = lstm::kGates * hidden;
    const long long row_stride = steps * hidden;
    const bool has_later = t + 1 < steps;
    const gemm::Operand<T> later{has_later ? dz + (t + 1) * gate_width : dz, steps * gate_width, 0};
    const gemm::Operand<T> recurrent_t{u, gate_width, 1};  // U^T (4H, H), read from U's storage
    const long long tiles_n = (hidden + Step::kCols - 1) / Step::kCols;
    const long long tiles = (batch + Step::kRows - 1) / Step::kRows * tiles_n;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile / tiles_n * Step::kRows;
        const long long col0 = tile % tiles_n * Step::kCols;
        T acc[Step::kMicroRows][Step::kMicroCols];
        gemm::multiply_tile<Step>(later, recurrent_t, batch, has_later ? gate_width : 0, row0,
                                  gemm::PlainColumns{col0, hidden}, acc);
        for (int r = 0; r < Step::kMicroRows; ++r) {
            const long long n = row0 + gemm::tile_row<Step>(r);
            for (int q = 0; q < Step::kMicroCols; ++q) {
                const long long j = col0 + gemm::tile_col<Step>(q);
                if (n >= batch || j >= hidden) continue;
                const long long e = n * row_stride + t * hidden + j;
                const long long g4 = (n * steps + t) * gate_width + j;
                const T ig = gates[g4], fg = gates[g4 + hidden];
                const T gg = gates[g4 + 2 * hidden], og = gates[g4 + 3 * hidden];
                const T c_prev = t == 0 ? c0[n * hidden + j] : c[e - hidden];
                const T tanh_c = tk::tanh(c[e]);
                const T dh_t = has_dh ? dh[e] + acc[r][q] : acc[r][q];
                const T carried = has_later ? dc_carry[n * hidden + j] : (has_dc_last ? dc_last[n * hidden + j] : T(0));
                const T dc_t = carried + dh_t * og * (T(1) - tanh_c * tanh_c);
                dz[g4] = dc_t * gg * ig * (T(1) - ig);
                dz[g4 + hidden] = dc_t * c_prev * fg * (T(1) - fg);
                dz[g4 + 2 * hidden] = dc_t * ig * (T(1) - gg * gg);
                dz[g4 + 3 * hidden] = dh_t * tanh_c * og * (T(1) - og);
                dc_carry[n * hidden + j] = dc_t * fg;  // what c_{t-1} receives through the forget gate
            }
        }
    }
}
