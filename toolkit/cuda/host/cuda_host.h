// cuda_host.h: run the EXACT CUDA C++ source of a toolkit kernel on the CPU, for tests without a GPU.
//
// harness.py compiles   #include "cuda_host.h"  +  <op>.cu  +  one launcher per kernel instantiation
// with g++ -std=c++20 into a shared library and calls the launchers through ctypes.
//
// Execution model (deterministic, single OS thread):
//   * Blocks run one after another (so `__shared__` can be `static`); grid order forward or reverse.
//   * The threads of a block are cooperative FIBERS: one 64 KiB stack each with a guard page below it,
//     switched by saving the callee-saved registers on x86-64 (~0.1 us) and by ucontext elsewhere
//     (a syscall per switch; -DHOSTCUDA_USE_UCONTEXT forces it). A fiber runs until it reaches a
//     scheduling point: __syncthreads() (block barrier) or a warp collective (__shfl*_sync,
//     __ballot_sync, __any_sync, __all_sync, __syncwarp), or until it returns.
//   * The scheduler always resumes the lowest (order 0, "forward") or the highest (order 1, "reverse")
//     runnable thread index. A thread therefore runs as far ahead of the others as CUDA allows: a
//     MISSING __syncthreads lets it read shared memory the others have not written yet, which gives
//     deterministically wrong values (shared memory is poisoned with NaN bytes before every block).
//     Some races show only in one order; tests run both.
//   * A warp collective is a barrier over the lanes named in its mask: all of them must arrive at the
//     same kind of collective with the same mask. A mask naming a lane that does not exist or has
//     exited, a lane reading a lane outside the mask, __syncthreads reached by only part of the block,
//     and deadlocks are reported as errors (the launch returns non-zero; the message names the line).
//   * Dynamic shared memory (TK_DYNAMIC_SHARED, see common.cuh) is a buffer of the launch's
//     shared_mem bytes (poisoned) followed by a canary checked after every block.
//
// Not emulated: tensor cores / inline PTX / cooperative groups / textures / half precision, memory
// ordering between blocks (blocks never run concurrently here), atomics as scheduling points.
#pragma once

#define TK_HOST_EMULATION 1

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

// Few and light standard headers: every host build parses this file (see harness.py: build time).
#include <bit>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

// ------------------------------------------------------------------------------ CUDA keywords
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// Blocks run one after another, so one static array per kernel instantiation is the block's shared
// memory. harness.py finds every function-local static in .bss and poisons it before each block.
#define __shared__ static
// common.cuh uses this for dynamic shared memory (CUDA: extern __shared__ ...).
#define TK_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::hostcuda::dynamic_shared_memory())

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

constexpr int warpSize = 32;

// The block's and grid's coordinates (one block runs at a time); threadIdx is per fiber, see below.
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace hostcuda {

enum class Wait : int { running, barrier, warp, done };
enum class WarpOp : int { shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, syncwarp };

inline const char* op_name(WarpOp op) {
    switch (op) {
        case WarpOp::shfl: return "__shfl_sync";
        case WarpOp::shfl_up: return "__shfl_up_sync";
        case WarpOp::shfl_down: return "__shfl_down_sync";
        case WarpOp::shfl_xor: return "__shfl_xor_sync";
        case WarpOp::ballot: return "__ballot_sync";
        case WarpOp::any: return "__any_sync";
        case WarpOp::all: return "__all_sync";
        case WarpOp::syncwarp: return "__syncwarp";
    }
    return "?";
}

// ------------------------------------------------------------------------------ fiber contexts
#if defined(__x86_64__) && !defined(HOSTCUDA_USE_UCONTEXT)
// Save the System V callee-saved registers on the current stack, store its pointer in *save, load
// `load` as the stack pointer and pop the same registers from it. Everything else is caller-saved, so
// the compiler has already spilled it around this (opaque) call.
extern "C" void hostcuda_switch(void** save, void* load);
asm(R"(
    .text
    .p2align 4
    .globl hostcuda_switch
    .hidden hostcuda_switch
    .type hostcuda_switch, @function
hostcuda_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size hostcuda_switch, .-hostcuda_switch
)");

struct Context {
    void* sp;
};

inline void switch_context(Context& from, const Context& to) { hostcuda_switch(&from.sp, to.sp); }

// A fresh stack whose first switch "returns" into entry with the ABI's alignment (rsp = 8 mod 16).
inline void start_context(Context& c, char* stack, size_t size, void (*entry)()) {
    auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
    auto* frame = reinterpret_cast<void**>(top - 16);  // frame[0]: entry, frame[1]: entry's return address
    frame[0] = reinterpret_cast<void*>(entry);
    frame[1] = nullptr;  // entry never returns
    for (int r = 1; r <= 6; ++r) frame[-r] = nullptr;  // r15 .. rbp
    c.sp = frame - 6;
}
#else
struct Context {
    ucontext_t uc;
};

inline void switch_context(Context& from, const Context& to) { swapcontext(&from.uc, &to.uc); }

inline void start_context(Context& c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;  // entry never returns
    makecontext(&c.uc, entry, 0);
}
#endif

struct Thread {
    Context context;
    uint3 idx;
    int linear;
    Wait wait;
    const char* file;  // where it waits
    int line;
    // the warp collective it takes part in
    WarpOp op;
    unsigned mask;
    uint64_t value;
    int arg;
    int width;
    uint64_t result;
};

struct WarpState {
    bool pending;
    unsigned mask;
    unsigned arrived;
    unsigned exited;
    WarpOp op;
};

struct LaunchConfig {  // mirrored by harness.py (ctypes)
    uint32_t grid[3];
    uint32_t block[3];
    uint64_t shared_mem;
    uint64_t max_shared_mem;
    int32_t order;  // 0 forward, 1 reverse
    int32_t reserved;
};

struct SharedRegion {
    unsigned char* address;
    uint64_t size;
};

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 64 * 1024;
constexpr size_t kCanaryBytes = 256;
constexpr unsigned char kPoison = 0xFF;  // all-ones bytes: NaN as float or double, -1 as an integer
// The canary after dynamic shared memory: a float signalling NaN, so that a value read past the end and
// written back after any arithmetic (which quiets it) no longer matches.
constexpr uint32_t kCanaryWord = 0x7FA5A5A5u;
constexpr int kMaxSharedRegions = 256;

// All state of the emulated device. Launches are serialised by harness.py (one lock per library).
// No function-local statics anywhere in this header: harness.py poisons every one of them as shared
// memory.
struct Runtime {
    Thread threads[kMaxThreads];
    WarpState warps[kMaxThreads / 32];
    int nthreads = 0;
    Context scheduler;
    Thread* current = nullptr;
    int order = 0;
    int cursor = 0;  // scheduling position: no runnable thread before it
    int done = 0;
    int at_barrier = 0;
    void (*body)(const void*) = nullptr;  // runs the kernel with the launch's arguments
    const void* body_context = nullptr;
    // fiber stacks (mmap'd, a guard page below each)
    char* stacks = nullptr;
    size_t page = 4096;
    // shared memory
    unsigned char* dynamic_buffer = nullptr;
    unsigned char* dynamic_shared = nullptr;
    size_t dynamic_bytes = 0;
    SharedRegion static_shared[kMaxSharedRegions];
    int static_shared_count = 0;
    // errors, and the text handed to harness.py
    bool failed = false;
    char error[4096];
    char signature[1024];
};

inline Runtime rt;

inline Thread& current_thread() { return *rt.current; }

inline int position_of(int linear) { return rt.order == 0 ? linear : rt.nthreads - 1 - linear; }

inline void set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void set_error(const char* fmt, ...) {
    if (rt.failed) return;  // the first error is the one that matters
    rt.failed = true;
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(rt.error, sizeof rt.error, fmt, args);
    va_end(args);
}

inline void append_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void append_error(const char* fmt, ...) {
    const size_t used = std::strlen(rt.error);
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(rt.error + used, sizeof rt.error - used, fmt, args);
    va_end(args);
}

inline void yield() { switch_context(rt.current->context, rt.scheduler); }

// Record the first error and leave the fiber for good: the scheduler abandons the launch.
#define HOSTCUDA_FAIL(...)                 \
    do {                                   \
        ::hostcuda::set_error(__VA_ARGS__); \
        ::hostcuda::abandon_fiber();       \
    } while (0)

[[noreturn]] inline void abandon_fiber() {
    rt.current->wait = Wait::done;
    yield();
    std::abort();  // never resumed
}

inline void make_runnable(Thread& t) {
    t.wait = Wait::running;
    if (position_of(t.linear) < rt.cursor) rt.cursor = position_of(t.linear);
}

inline unsigned lanes_of_warp(int warp) {
    const int n = rt.nthreads - warp * 32;
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

// ------------------------------------------------------------------------------ block barrier
inline void release_barrier_if_complete() {
    const int n = rt.nthreads;
    if (rt.at_barrier == 0 || rt.at_barrier + rt.done < n) return;
    const Thread* first = nullptr;
    const Thread* gone = nullptr;
    for (int i = 0; i < n; ++i) {
        if (!first && rt.threads[i].wait == Wait::barrier) first = &rt.threads[i];
        if (!gone && rt.threads[i].wait == Wait::done) gone = &rt.threads[i];
    }
    if (rt.done > 0) {
        HOSTCUDA_FAIL("__syncthreads() at %s:%d was reached by %d of %d threads of the block; %d threads (the "
                      "first: thread (%u,%u,%u)) had returned: a barrier must be reached by the whole block",
                      first->file, first->line, rt.at_barrier, n, rt.done, gone->idx.x, gone->idx.y, gone->idx.z);
    }
    for (int i = 0; i < n; ++i) {
        const Thread& t = rt.threads[i];
        if (t.line != first->line || std::strcmp(t.file, first->file) != 0) {
            HOSTCUDA_FAIL("threads of one block wait at different __syncthreads(): thread (%u,%u,%u) at %s:%d, "
                          "thread (%u,%u,%u) at %s:%d", first->idx.x, first->idx.y, first->idx.z, first->file,
                          first->line, t.idx.x, t.idx.y, t.idx.z, t.file, t.line);
        }
    }
    rt.at_barrier = 0;
    for (int i = 0; i < n; ++i) make_runnable(rt.threads[i]);
}

inline void syncthreads(const char* file, int line) {
    Thread& t = current_thread();
    t.wait = Wait::barrier;
    t.file = file;
    t.line = line;
    ++rt.at_barrier;
    release_barrier_if_complete();
    yield();
}

// ------------------------------------------------------------------------------ warp collectives
inline void resolve_warp(int warp) {
    WarpState& w = rt.warps[warp];
    Thread* lanes = rt.threads + warp * 32;
    uint64_t ballot = 0;
    bool any = false, all = true;
    for (int lane = 0; lane < 32; ++lane) {
        if (!(w.mask >> lane & 1u)) continue;
        const bool p = lanes[lane].value != 0;
        ballot |= static_cast<uint64_t>(p) << lane;
        any = any || p;
        all = all && p;
    }
    for (int lane = 0; lane < 32; ++lane) {
        if (!(w.mask >> lane & 1u)) continue;
        Thread& t = lanes[lane];
        switch (w.op) {
            case WarpOp::ballot: t.result = ballot; break;
            case WarpOp::any: t.result = any; break;
            case WarpOp::all: t.result = all; break;
            case WarpOp::syncwarp: t.result = 0; break;
            default: {
                // PTX shfl.sync: segments of `width` lanes; a source outside the segment gives the own value.
                const int b = t.arg & 31;
                const int seg_min = lane & ~(t.width - 1);
                const int seg_max = seg_min + t.width - 1;
                int j = lane;
                bool ok = true;
                if (w.op == WarpOp::shfl_up) { j = lane - b; ok = j >= seg_min; }
                else if (w.op == WarpOp::shfl_down) { j = lane + b; ok = j <= seg_max; }
                else if (w.op == WarpOp::shfl_xor) { j = lane ^ b; ok = j <= seg_max; }
                else { j = seg_min | (b & (t.width - 1)); ok = j <= seg_max; }
                if (!ok) j = lane;
                if (!(w.mask >> j & 1u)) {
                    HOSTCUDA_FAIL("%s at %s:%d: lane %d of warp %d reads lane %d, which is not in the mask 0x%08x "
                                  "(undefined on a GPU)", op_name(w.op), t.file, t.line, lane, warp, j, w.mask);
                }
                t.result = lanes[j].value;
            }
        }
    }
    w.pending = false;
    w.arrived = 0;
    for (int lane = 0; lane < 32; ++lane) {
        if (w.mask >> lane & 1u) make_runnable(lanes[lane]);
    }
}

inline uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width,
                                const char* file, int line) {
    Thread& t = current_thread();
    const int warp = t.linear / 32, lane = t.linear % 32;
    WarpState& w = rt.warps[warp];
    if (!(mask >> lane & 1u)) {
        HOSTCUDA_FAIL("%s at %s:%d: the mask 0x%08x does not include the calling lane %d of warp %d",
                      op_name(op), file, line, mask, lane, warp);
    }
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        HOSTCUDA_FAIL("%s at %s:%d: width must be a power of 2 in [1, 32]; got %d", op_name(op), file, line, width);
    }
    if (mask & ~lanes_of_warp(warp)) {
        HOSTCUDA_FAIL("%s at %s:%d: the mask 0x%08x names lanes that do not exist: warp %d has only %d threads "
                      "(%d threads in the block); give the block a multiple of 32 threads or pass the real mask",
                      op_name(op), file, line, mask, warp, std::popcount(lanes_of_warp(warp)), rt.nthreads);
    }
    if (mask & w.exited) {
        HOSTCUDA_FAIL("%s at %s:%d: the mask 0x%08x names lane %d of warp %d, which has already returned",
                      op_name(op), file, line, mask, std::countr_zero(mask & w.exited), warp);
    }
    if (!w.pending) {
        w.pending = true;
        w.mask = mask;
        w.op = op;
        w.arrived = 0;
    } else if (w.mask != mask || w.op != op) {
        const Thread& other = rt.threads[warp * 32 + std::countr_zero(w.arrived)];
        HOSTCUDA_FAIL("lanes of warp %d meet different warp collectives: %s with mask 0x%08x at %s:%d (lane %d) and "
                      "%s with mask 0x%08x at %s:%d (lane %d)", warp, op_name(w.op), w.mask, other.file, other.line,
                      other.linear % 32, op_name(op), mask, file, line, lane);
    }
    t.wait = Wait::warp;
    t.file = file;
    t.line = line;
    t.op = op;
    t.mask = mask;
    t.value = value;
    t.arg = arg;
    t.width = width;
    w.arrived |= 1u << lane;
    if (w.arrived == w.mask) resolve_warp(warp);
    yield();
    return t.result;
}

template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 4 || sizeof(T) == 8),
                  "warp shuffles move 4- or 8-byte values");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}

template <typename T>
inline T from_bits(uint64_t bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}

// ------------------------------------------------------------------------------ fibers and launch
inline void on_thread_exit() {
    Thread& t = current_thread();
    const int warp = t.linear / 32, lane = t.linear % 32;
    WarpState& w = rt.warps[warp];
    w.exited |= 1u << lane;
    if (w.pending && (w.mask >> lane & 1u)) {
        const Thread& other = rt.threads[warp * 32 + std::countr_zero(w.arrived)];
        HOSTCUDA_FAIL("thread (%u,%u,%u) returned while lanes of its warp wait for it at %s (%s:%d, mask 0x%08x)",
                      t.idx.x, t.idx.y, t.idx.z, op_name(w.op), other.file, other.line, w.mask);
    }
    t.wait = Wait::done;
    ++rt.done;
    release_barrier_if_complete();
}

[[noreturn]] inline void fiber_main() {
    rt.body(rt.body_context);
    on_thread_exit();
    yield();  // for good: a finished fiber is never resumed
    std::abort();
}

inline unsigned char* dynamic_shared_memory() { return rt.dynamic_shared; }

inline bool ensure_stacks() {
    if (rt.stacks) return true;
    rt.page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t each = kStackBytes + rt.page;
    void* p = mmap(nullptr, kMaxThreads * each, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return false;
    rt.stacks = static_cast<char*>(p);
    for (int i = 0; i < kMaxThreads; ++i) mprotect(rt.stacks + i * each, rt.page, PROT_NONE);  // overflow faults
    return true;
}

inline void describe_deadlock() {
    set_error("deadlock: no thread of the block can run:");
    for (int w = 0; w < (rt.nthreads + 31) / 32; ++w) {
        const WarpState& ws = rt.warps[w];
        if (!ws.pending) continue;
        const Thread& t = rt.threads[w * 32 + std::countr_zero(ws.arrived)];
        append_error(" warp %d: lanes 0x%08x wait at %s (%s:%d) for lanes 0x%08x;", w, ws.arrived, op_name(ws.op),
                     t.file, t.line, ws.mask & ~ws.arrived);
    }
    for (int i = 0; i < rt.nthreads; ++i) {
        const Thread& t = rt.threads[i];
        if (t.wait == Wait::barrier) {
            append_error(" %d threads wait at __syncthreads() (%s:%d, the first: thread (%u,%u,%u));", rt.at_barrier,
                         t.file, t.line, t.idx.x, t.idx.y, t.idx.z);
            break;
        }
    }
    append_error(" %d of %d threads have returned", rt.done, rt.nthreads);
}

inline void run_block() {
    const int n = rt.nthreads;
    rt.cursor = 0;
    while (!rt.failed) {
        int pos = rt.cursor;
        while (pos < n && rt.threads[rt.order == 0 ? pos : n - 1 - pos].wait != Wait::running) ++pos;
        rt.cursor = pos;
        if (pos == n) {
            if (rt.done < n) describe_deadlock();
            return;
        }
        rt.current = &rt.threads[rt.order == 0 ? pos : n - 1 - pos];
        switch_context(rt.scheduler, rt.current->context);
        rt.current = nullptr;
    }
}

inline bool check_config(const LaunchConfig& c) {
    for (int d = 0; d < 3; ++d) {
        if (c.grid[d] == 0 || c.block[d] == 0) {
            set_error("invalid configuration: grid (%u,%u,%u) and block (%u,%u,%u) must be positive in every "
                      "dimension (a launch over 0 elements is an error on a GPU too)",
                      c.grid[0], c.grid[1], c.grid[2], c.block[0], c.block[1], c.block[2]);
            return false;
        }
    }
    const uint64_t threads = uint64_t(c.block[0]) * c.block[1] * c.block[2];
    if (threads > kMaxThreads || c.block[0] > 1024 || c.block[1] > 1024 || c.block[2] > 64) {
        set_error("invalid configuration: block (%u,%u,%u) exceeds 1024 threads (x, y <= 1024, z <= 64)",
                  c.block[0], c.block[1], c.block[2]);
        return false;
    }
    if (c.grid[0] > 2147483647u || c.grid[1] > 65535u || c.grid[2] > 65535u) {
        set_error("invalid configuration: grid (%u,%u,%u) exceeds (2^31-1, 65535, 65535)", c.grid[0], c.grid[1],
                  c.grid[2]);
        return false;
    }
    if (c.shared_mem > c.max_shared_mem) {
        set_error("too much dynamic shared memory: %llu bytes requested, %llu allowed",
                  static_cast<unsigned long long>(c.shared_mem), static_cast<unsigned long long>(c.max_shared_mem));
        return false;
    }
    return true;
}

inline void fill_dynamic_canary() {
    for (size_t i = 0; i < kCanaryBytes; i += 4) std::memcpy(rt.dynamic_shared + rt.dynamic_bytes + i, &kCanaryWord, 4);
}

inline void check_dynamic_canary() {
    const unsigned char* canary = rt.dynamic_shared + rt.dynamic_bytes;
    for (size_t i = 0; i < kCanaryBytes; ++i) {
        if (canary[i] != reinterpret_cast<const unsigned char*>(&kCanaryWord)[i % 4]) {
            set_error("the kernel wrote past the end of its %zu bytes of dynamic shared memory (byte %zu after "
                      "the end was changed)", rt.dynamic_bytes, i);
            return;
        }
    }
}

inline int run_grid(const LaunchConfig& c) {
    rt.failed = false;
    rt.error[0] = '\0';
    if (!check_config(c)) return 1;
    if (!ensure_stacks()) {
        set_error("could not map the fiber stacks");
        return 1;
    }
    const int n = static_cast<int>(c.block[0] * c.block[1] * c.block[2]);
    rt.nthreads = n;
    rt.order = c.order;
    std::free(rt.dynamic_buffer);
    rt.dynamic_buffer = static_cast<unsigned char*>(std::malloc(c.shared_mem + kCanaryBytes + 16));
    rt.dynamic_shared = rt.dynamic_buffer + (16 - reinterpret_cast<uintptr_t>(rt.dynamic_buffer) % 16) % 16;
    rt.dynamic_bytes = c.shared_mem;
    ::gridDim = dim3(c.grid[0], c.grid[1], c.grid[2]);
    ::blockDim = dim3(c.block[0], c.block[1], c.block[2]);
    const uint64_t blocks = uint64_t(c.grid[0]) * c.grid[1] * c.grid[2];
    const size_t each = kStackBytes + rt.page;
    for (uint64_t k = 0; k < blocks && !rt.failed; ++k) {
        const uint64_t b = c.order == 0 ? k : blocks - 1 - k;
        ::blockIdx = uint3{static_cast<unsigned>(b % c.grid[0]), static_cast<unsigned>(b / c.grid[0] % c.grid[1]),
                           static_cast<unsigned>(b / (uint64_t(c.grid[0]) * c.grid[1]))};
        for (int r = 0; r < rt.static_shared_count; ++r) {
            std::memset(rt.static_shared[r].address, kPoison, rt.static_shared[r].size);
        }
        std::memset(rt.dynamic_shared, kPoison, rt.dynamic_bytes);
        fill_dynamic_canary();
        for (int w = 0; w < (n + 31) / 32; ++w) rt.warps[w] = WarpState{};
        rt.done = 0;
        rt.at_barrier = 0;
        for (int i = 0; i < n; ++i) {
            Thread& t = rt.threads[i];
            t = Thread{};
            t.linear = i;
            t.idx = uint3{static_cast<unsigned>(i % c.block[0]), static_cast<unsigned>(i / c.block[0] % c.block[1]),
                          static_cast<unsigned>(i / (c.block[0] * c.block[1]))};
            t.wait = Wait::running;
            t.file = "";
            start_context(t.context, rt.stacks + static_cast<size_t>(i) * each + rt.page, kStackBytes, fiber_main);
        }
        run_block();
        if (!rt.failed) check_dynamic_canary();
        if (rt.failed) {
            append_error(" [block (%u,%u,%u) of grid (%u,%u,%u), block size (%u,%u,%u), %s order]", ::blockIdx.x,
                         ::blockIdx.y, ::blockIdx.z, c.grid[0], c.grid[1], c.grid[2], c.block[0], c.block[1],
                         c.block[2], c.order == 0 ? "forward" : "reverse");
        }
    }
    rt.body = nullptr;
    return rt.failed ? 1 : 0;
}

template <typename... A>
struct Call {
    void (*kernel)(A...);
    void** args;
};

template <typename... A, std::size_t... I>
inline void call_with(const Call<A...>& call, std::index_sequence<I...>) {
    call.kernel(*static_cast<std::remove_cv_t<A>*>(call.args[I])...);
}

template <typename... A>
inline void run_call(const void* context) {
    call_with(*static_cast<const Call<A...>*>(context), std::index_sequence_for<A...>{});
}

template <typename... A>
inline int launch(const LaunchConfig* config, void (*kernel)(A...), void** args) {
    const Call<A...> call{kernel, args};
    rt.body = &run_call<A...>;
    rt.body_context = &call;
    return run_grid(*config);
}

// The NumPy dtype of each kernel parameter, so harness.py can check arguments like a strict RawKernel.
template <typename B>
constexpr const char* base_name() {
    if constexpr (std::is_same_v<B, float>) return "float32";
    else if constexpr (std::is_same_v<B, double>) return "float64";
    else if constexpr (std::is_same_v<B, int>) return "int32";
    else if constexpr (std::is_same_v<B, unsigned>) return "uint32";
    else if constexpr (std::is_same_v<B, long long> || std::is_same_v<B, long>) return "int64";
    else if constexpr (std::is_same_v<B, unsigned long long> || std::is_same_v<B, unsigned long>) return "uint64";
    else if constexpr (std::is_same_v<B, signed char>) return "int8";
    else if constexpr (std::is_same_v<B, unsigned char>) return "uint8";
    else if constexpr (std::is_same_v<B, bool>) return "bool";
    else static_assert(sizeof(B) == 0, "kernel parameter type not supported by the host harness");
}

template <typename A>
inline void append_param(char* out, size_t size) {
    if (out[0] != '\0') std::strncat(out, ",", size - std::strlen(out) - 1);
    if constexpr (std::is_pointer_v<A>) {
        using P = std::remove_pointer_t<A>;
        if (std::is_const_v<P>) std::strncat(out, "const ", size - std::strlen(out) - 1);
        std::strncat(out, base_name<std::remove_cv_t<P>>(), size - std::strlen(out) - 1);
        std::strncat(out, "*", size - std::strlen(out) - 1);
    } else {
        std::strncat(out, base_name<std::remove_cv_t<A>>(), size - std::strlen(out) - 1);
    }
}

// e.g. "const float32*,float32*,int64,int32,float32"
template <typename... A>
inline const char* signature(void (*)(A...)) {
    rt.signature[0] = '\0';
    (append_param<A>(rt.signature, sizeof rt.signature), ...);
    return rt.signature;
}

}  // namespace hostcuda

// Per-fiber thread index.
#define threadIdx (::hostcuda::current_thread().idx)

// ------------------------------------------------------------------------------ CUDA device API
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::hostcuda::syncthreads(file, line);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::hostcuda::warp_collective(::hostcuda::WarpOp::syncwarp, mask, 0, 0, 32, file, line);
}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return from_bits<T>(warp_collective(WarpOp::shfl, mask, to_bits(var), src_lane, width, file, line));
}

template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return from_bits<T>(warp_collective(WarpOp::shfl_up, mask, to_bits(var), static_cast<int>(delta), width, file, line));
}

template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return from_bits<T>(
        warp_collective(WarpOp::shfl_down, mask, to_bits(var), static_cast<int>(delta), width, file, line));
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return from_bits<T>(warp_collective(WarpOp::shfl_xor, mask, to_bits(var), lane_mask, width, file, line));
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return static_cast<unsigned>(warp_collective(WarpOp::ballot, mask, predicate != 0, 0, 32, file, line));
}

inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return static_cast<int>(warp_collective(WarpOp::any, mask, predicate != 0, 0, 32, file, line));
}

inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::hostcuda;
    return static_cast<int>(warp_collective(WarpOp::all, mask, predicate != 0, 0, 32, file, line));
}

// The lanes of the caller's warp that have not returned (a GPU may report fewer: only converged lanes).
inline unsigned __activemask() {
    const int warp = ::hostcuda::current_thread().linear / 32;
    return ::hostcuda::lanes_of_warp(warp) & ~::hostcuda::rt.warps[static_cast<size_t>(warp)].exited;
}

[[noreturn]] inline void __trap() {
    HOSTCUDA_FAIL("__trap() was called");
    __builtin_unreachable();
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// Atomics: the fibers of a block never run at the same time, so a plain read-modify-write is atomic.
template <typename T>
inline T hostcuda_atomic_add(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}
inline float atomicAdd(float* a, float v) { return hostcuda_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return hostcuda_atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return hostcuda_atomic_add(a, v); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return hostcuda_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return hostcuda_atomic_add(a, v); }
template <typename T>
inline T hostcuda_atomic_max(T* address, T value) {
    const T old = *address;
    if (value > old) *address = value;
    return old;
}
template <typename T>
inline T hostcuda_atomic_min(T* address, T value) {
    const T old = *address;
    if (value < old) *address = value;
    return old;
}
inline int atomicMax(int* a, int v) { return hostcuda_atomic_max(a, v); }
inline unsigned atomicMax(unsigned* a, unsigned v) { return hostcuda_atomic_max(a, v); }
inline int atomicMin(int* a, int v) { return hostcuda_atomic_min(a, v); }
inline unsigned atomicMin(unsigned* a, unsigned v) { return hostcuda_atomic_min(a, v); }
inline int atomicExch(int* a, int v) { const int old = *a; *a = v; return old; }
inline unsigned atomicExch(unsigned* a, unsigned v) { const unsigned old = *a; *a = v; return old; }
inline float atomicExch(float* a, float v) { const float old = *a; *a = v; return old; }
inline int atomicCAS(int* a, int compare, int v) { const int old = *a; if (old == compare) *a = v; return old; }
inline unsigned atomicCAS(unsigned* a, unsigned compare, unsigned v) {
    const unsigned old = *a;
    if (old == compare) *a = v;
    return old;
}
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long compare, unsigned long long v) {
    const unsigned long long old = *a;
    if (old == compare) *a = v;
    return old;
}

// Math: <cmath> gives expf, logf, tanhf, fminf, ... in the global namespace; these are CUDA-only.
using std::isfinite;
using std::isinf;
using std::isnan;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
inline int __popc(unsigned v) { return std::popcount(v); }
inline int __popcll(unsigned long long v) { return std::popcount(v); }
inline int __clz(unsigned v) { return std::countl_zero(v); }
inline int __ffs(unsigned v) { return v ? std::countr_zero(v) + 1 : 0; }
template <typename T>
inline T __ldg(const T* p) { return *p; }
// CUDA's integer max/min, and float ones that behave like fmaxf/fminf (a NaN operand loses).
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }

// ------------------------------------------------------------------------------ the C ABI for harness.py
// The only exported symbols (the library is built with -fvisibility=hidden). Not inline: the harness
// compiles exactly one translation unit per library.
#define HOSTCUDA_EXPORT extern "C" __attribute__((visibility("default")))

HOSTCUDA_EXPORT const char* hostcuda_last_error() { return ::hostcuda::rt.error; }

// Function-local statics in .bss (the kernels' __shared__ arrays), found by harness.py in the symbol table.
// The fiber stacks: harness.py maps ONE pool per process (kMaxThreads stacks of kStackBytes, a guard page
// below each) and hands it to every library it loads. A pool per library would cost each library
// 2 * kMaxThreads memory mappings, and a test process that loads a few dozen libraries would reach the
// kernel's limit on mappings (vm.max_map_count, 65530 by default). Launches of all libraries are
// serialised by one lock in harness.py, so sharing the pool is safe.
HOSTCUDA_EXPORT void hostcuda_use_stacks(char* stacks, uint64_t page) {
    ::hostcuda::rt.stacks = stacks;
    ::hostcuda::rt.page = static_cast<size_t>(page);
}
HOSTCUDA_EXPORT int hostcuda_max_threads() { return ::hostcuda::kMaxThreads; }
HOSTCUDA_EXPORT uint64_t hostcuda_stack_bytes() { return ::hostcuda::kStackBytes; }

HOSTCUDA_EXPORT int hostcuda_register_shared(unsigned char** addresses, const uint64_t* sizes, int count) {
    if (count > ::hostcuda::kMaxSharedRegions) return 1;
    for (int i = 0; i < count; ++i) ::hostcuda::rt.static_shared[i] = {addresses[i], sizes[i]};
    ::hostcuda::rt.static_shared_count = count;
    return 0;
}

// One launcher and one signature per kernel instantiation (harness.py writes these lines).
#define HOSTCUDA_LAUNCHER(kernel, T)                                                                  \
    HOSTCUDA_EXPORT int launch_##kernel##_##T(const ::hostcuda::LaunchConfig* config, void** args) {  \
        return ::hostcuda::launch(config, &kernel<T>, args);                                          \
    }                                                                                                 \
    HOSTCUDA_EXPORT const char* signature_##kernel##_##T() { return ::hostcuda::signature(&kernel<T>); }
