// Optimizer updates on the GPU: Keras SGD (plain, momentum, Nesterov) and Keras 3 Adam, in place, as
// reference.py / cpu.py. Each update is one fused grid-stride pass: every element of param, grad and the
// state is read once and written once, all elements independent (no reductions, no atomics).
//
// Bit-for-bit: the formulas are evaluated in T in exactly cpu.py's order, every product rounded on its own
// (optim::mul) so that NVRTC's default FMA contraction (--fmad=true) cannot fuse it with the following add:
// NumPy and Numba round every product, so the GPU then produces the same bits as reference.py and cpu.py.
// Division and sqrt are IEEE-rounded by NVRTC's defaults (-prec-div, -prec-sqrt). The hyper-parameters
// arrive already rounded to T by gpu.py, alpha_t and 1 - beta computed on the host as cpu.py does.
#include "common.cuh"

namespace optim {

#ifdef TK_HOST_EMULATION
// g++ may contract a * b + c on targets with FMA (-ffp-contract=fast is its default): a product returned
// from a function that is not inlined has been rounded, so the caller's add cannot fuse with it.
template <typename T>
__noinline__ T mul(T a, T b) { return a * b; }
#else
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }  // never fused into an FMA
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
#endif

}  // namespace optim

// Plain gradient descent: param <- param - lr * grad.
template <typename T>
__global__ void sgd_step(T* __restrict__ param, const T* __restrict__ grad, long long n, T lr) {
    TK_GRID_STRIDE_LOOP(i, n) { param[i] -= optim::mul(lr, grad[i]); }
}

// Momentum:  velocity <- momentum * velocity - lr * grad;  param <- param + velocity
// Nesterov:  velocity as above;                            param <- param + momentum * velocity - lr * grad
template <typename T>
__global__ void sgd_momentum_step(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ velocity,
                                  long long n, T lr, T momentum, int nesterov) {
    TK_GRID_STRIDE_LOOP(i, n) {
        const T g = grad[i];
        const T v_new = optim::mul(momentum, velocity[i]) - optim::mul(lr, g);
        velocity[i] = v_new;
        if (nesterov) {
            param[i] += optim::mul(momentum, v_new) - optim::mul(lr, g);
        } else {
            param[i] += v_new;
        }
    }
}

// Adam (Keras 3, Kingma & Ba's efficient form, eps added to sqrt(v) before any bias correction):
//   m <- beta1 m + (1 - beta1) grad;  v <- beta2 v + (1 - beta2) grad^2;
//   param <- param - alpha_t * m / (sqrt(v) + eps),   alpha_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) (host).
template <typename T>
__global__ void adam_step(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ m, T* __restrict__ v,
                          long long n, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T alpha, T eps) {
    TK_GRID_STRIDE_LOOP(i, n) {
        const T g = grad[i];
        const T m_new = optim::mul(beta1, m[i]) + optim::mul(one_minus_beta1, g);
        const T v_new = optim::mul(beta2, v[i]) + optim::mul(one_minus_beta2, optim::mul(g, g));
        m[i] = m_new;
        v[i] = v_new;
        param[i] -= optim::mul(alpha, m_new) / (tk::sqrt(v_new) + eps);
    }
}
