// Inverted dropout on the GPU: Philox-4x32-10 masks BIT-IDENTICAL to philox.py / cpu.py, and outputs
// bit-identical too (the same IEEE division in the same precision).
//
// The mapping (philox.py is its specification):
//   key = (seed & 0xFFFFFFFF, seed >> 32), computed on the host and passed as two 32-bit words;
//   element i (flat C-order index): Philox block b = i >> 2, counter (b low word, b high word, 0, 0),
//   random word = output word (i & 3) of that block: one Philox call serves 4 consecutive elements;
//   kept iff (word >> 8) >= threshold, threshold = ceil(rate * 2^24) computed on the host, so no device
//   ever compares floats; survivors are x / divisor with divisor = (1 - rate) rounded to T on the host;
//   a dropped element is SET to 0 (a dropped NaN gives 0), as cpu.py does.
//
// Forward and mask kernels work in tiles of kTile = 4 * kThreads elements, one tile per block at a
// time (grid-stride over tiles). Thread t runs Philox once, for block (tile start / 4 + t), and stores
// the 4 keep flags of elements 4t .. 4t+3 of the tile in shared memory; after a barrier, thread t
// handles elements t, t + kThreads, t + 2 kThreads, t + 3 kThreads. So every thread runs Philox once
// per 4 elements (no redundant calls) and the loads/stores of x, y and the mask are coalesced
// (consecutive threads, consecutive elements), which "each thread takes its own 4 elements" is not.
// These kernels must be launched with blockDim.x == kThreads (gpu.py's THREADS).
//
// Templates: the convention wants every kernel templated on the float type T. dropout_mask and the
// test kernels produce integers; the test kernels use T for the uniform u = (word >> 8) * 2^-24
// (exact in float and double alike), dropout_mask does not use T at all (its two instantiations are
// the same code; gpu.py launches the float one).
#include "common.cuh"

namespace drop {

constexpr int kThreads = 256;          // threads per block of the tiled kernels (gpu.py: THREADS)
constexpr int kTile = 4 * kThreads;    // elements per tile: one Philox call per thread
constexpr unsigned kMultiplier0 = 0xD2511F53u;
constexpr unsigned kMultiplier1 = 0xCD9E8D57u;
constexpr unsigned kWeyl0 = 0x9E3779B9u;  // key bumps: golden ratio, sqrt(3) - 1, as 32-bit fractions
constexpr unsigned kWeyl1 = 0xBB67AE85u;
constexpr int kRounds = 10;

struct Words {
    unsigned w0, w1, w2, w3;
};

// One Philox-4x32 round; the 32x32 -> 64-bit product is exact in unsigned long long (one mul.wide).
__device__ __forceinline__ Words philox_round(Words c, unsigned k0, unsigned k1) {
    const unsigned long long p0 = static_cast<unsigned long long>(kMultiplier0) * c.w0;
    const unsigned long long p1 = static_cast<unsigned long long>(kMultiplier1) * c.w2;
    return Words{static_cast<unsigned>(p1 >> 32) ^ c.w1 ^ k0, static_cast<unsigned>(p1),
                 static_cast<unsigned>(p0 >> 32) ^ c.w3 ^ k1, static_cast<unsigned>(p0)};
}

// Philox-4x32-10 (Salmon et al., SC 2011; Random123): 10 rounds, the key bumped between rounds
// (unsigned arithmetic wraps mod 2^32, as the generator requires).
__device__ __forceinline__ Words philox4x32_10(Words counter, unsigned k0, unsigned k1) {
    counter = philox_round(counter, k0, k1);
    for (int r = 1; r < kRounds; ++r) {
        k0 += kWeyl0;
        k1 += kWeyl1;
        counter = philox_round(counter, k0, k1);
    }
    return counter;
}

// The 4 words of Philox block b: counter (b low word, b high word, 0, 0).
__device__ __forceinline__ Words block_words(unsigned long long block, unsigned k0, unsigned k1) {
    return philox4x32_10(Words{static_cast<unsigned>(block), static_cast<unsigned>(block >> 32), 0u, 0u}, k0, k1);
}

__device__ __forceinline__ unsigned word(const Words& w, unsigned lane) {
    return lane == 0 ? w.w0 : lane == 1 ? w.w1 : lane == 2 ? w.w2 : w.w3;
}

// The random word of element i: word (i & 3) of block i >> 2.
__device__ __forceinline__ unsigned element_word(unsigned long long i, unsigned k0, unsigned k1) {
    return word(block_words(i >> 2, k0, k1), static_cast<unsigned>(i & 3));
}

// Kept iff the top 24 bits, read as u = (word >> 8) * 2^-24, satisfy u >= rate (threshold in integers).
__device__ __forceinline__ unsigned char keep(unsigned w, unsigned threshold) {
    return (w >> 8) >= threshold ? 1 : 0;
}

// u = (word >> 8) * 2^-24 in [0, 1): 24 bits, exact in float and double.
template <typename T>
__device__ __forceinline__ T uniform(unsigned w) {
    return static_cast<T>(w >> 8) * static_cast<T>(5.9604644775390625e-08);  // 2^-24
}

// Thread t of the block writes the keep flags of tile elements 4t .. 4t+3 (Philox block first_block + t).
__device__ __forceinline__ void tile_keep_flags(unsigned char* flags, unsigned long long first_block, unsigned k0,
                                                unsigned k1, unsigned threshold) {
    const Words w = block_words(first_block + threadIdx.x, k0, k1);  // past the end: computed, never read
    unsigned char* mine = flags + 4 * threadIdx.x;
    mine[0] = keep(w.w0, threshold);
    mine[1] = keep(w.w1, threshold);
    mine[2] = keep(w.w2, threshold);
    mine[3] = keep(w.w3, threshold);
}

}  // namespace drop

// y = x / divisor where kept, 0 where dropped; mask = the keep flags (bool, as cpu.py's cache).
template <typename T>
__global__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y, bool* __restrict__ mask, long long n,
                                unsigned k0, unsigned k1, unsigned threshold, T divisor) {
    __shared__ unsigned char flags[drop::kTile];
    const long long tiles = (n + drop::kTile - 1) / drop::kTile;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // the whole block takes one tile
        const long long start = tile * drop::kTile;
        drop::tile_keep_flags(flags, static_cast<unsigned long long>(start) / 4, k0, k1, threshold);
        __syncthreads();  // every flag written before any thread reads another thread's flags
        for (int part = 0; part < 4; ++part) {
            const int local = part * drop::kThreads + static_cast<int>(threadIdx.x);
            const long long i = start + local;
            if (i < n) {
                const bool kept = flags[local] != 0;
                mask[i] = kept;
                y[i] = kept ? x[i] / divisor : T(0);  // a selection: a dropped NaN/Inf becomes 0
            }
        }
        __syncthreads();  // every flag read before the next tile overwrites them
    }
}

// The keep mask alone (dropout_mask): the forward kernel without x and y. T is not used (see the top).
template <typename T>
__global__ void dropout_mask(bool* __restrict__ mask, long long n, unsigned k0, unsigned k1, unsigned threshold) {
    __shared__ unsigned char flags[drop::kTile];
    const long long tiles = (n + drop::kTile - 1) / drop::kTile;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long start = tile * drop::kTile;
        drop::tile_keep_flags(flags, static_cast<unsigned long long>(start) / 4, k0, k1, threshold);
        __syncthreads();  // as in dropout_forward
        for (int part = 0; part < 4; ++part) {
            const int local = part * drop::kThreads + static_cast<int>(threadIdx.x);
            const long long i = start + local;
            if (i < n) mask[i] = flags[local] != 0;
        }
        __syncthreads();
    }
}

// dx = dy / divisor where kept, 0 where dropped (the forward map applied to dy, with the cached mask).
template <typename T>
__global__ void dropout_backward(const T* __restrict__ dy, const bool* __restrict__ mask, T* __restrict__ dx,
                                 long long n, T divisor) {
    TK_GRID_STRIDE_LOOP(i, n) { dx[i] = mask[i] ? dy[i] / divisor : T(0); }
}

// ---------------------------------------------------------------- test kernels (known answers, mapping)
// words[4j .. 4j+3] = Philox-4x32-10(counter[4j .. 4j+3], key[2j .. 2j+1]); uniform = (word >> 8) * 2^-24.
template <typename T>
__global__ void philox_words(const unsigned* __restrict__ counter, const unsigned* __restrict__ key,
                             unsigned* __restrict__ words, T* __restrict__ uniform, long long n) {
    TK_GRID_STRIDE_LOOP(j, n) {
        const drop::Words w = drop::philox4x32_10(
            drop::Words{counter[4 * j], counter[4 * j + 1], counter[4 * j + 2], counter[4 * j + 3]}, key[2 * j],
            key[2 * j + 1]);
        const unsigned out[4] = {w.w0, w.w1, w.w2, w.w3};
        for (int k = 0; k < 4; ++k) {
            words[4 * j + k] = out[k];
            uniform[4 * j + k] = drop::uniform<T>(out[k]);
        }
    }
}

// words[j] = the random word of element index[j] under key (k0, k1), through the same block mapping the
// dropout kernels use; any 64-bit index, so the counter's high word is exercised without a huge array.
template <typename T>
__global__ void element_words(const unsigned long long* __restrict__ index, unsigned* __restrict__ words,
                              T* __restrict__ uniform, long long n, unsigned k0, unsigned k1) {
    TK_GRID_STRIDE_LOOP(j, n) {
        const unsigned w = drop::element_word(index[j], k0, k1);
        words[j] = w;
        uniform[j] = drop::uniform<T>(w);
    }
}
