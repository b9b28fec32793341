// Part of runtime/templates/kernels/decode.cu (included): the weight-streaming core the decode GEMVs share —
// units and steps, the warp's place in the grid, loading a step, computing it, walking the steps.
// A matrix is [N, K] in format F (quant.cuh): dense T, or codes with their scales after them; its
// rows are `ROW` bytes apart and hold `K / PER` 16-byte vectors.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 { %0, %1, %2, %3 }, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Hopper: start bringing `bytes` (a multiple of 16, 16-byte aligned) at p into L2 without waiting for
// them and without registers (the bulk copy engine). A no-op before sm_90.
__device__ __forceinline__ void l2_prefetch(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

template <int KIND> struct Unit {
    static constexpr int RU = KIND == SINGLE ? 1 : 2; // rows per unit
    __device__ static __forceinline__ int row(int u, int r) {
        if (KIND == ROPE_PAIR) return (u / HALF_DIM) * HEAD_DIM + u % HALF_DIM + r * HALF_DIM;
        if (KIND == GATE_UP_PAIR) return u + r * INTER;
        return u;
    }
};

// 16-byte vectors each lane loads per step (over the unit's rows); two steps are in flight at once.
#define VPS {{ c.decode_vps }}

template <int K, int KIND, int F> struct Plan {
    static constexpr int RU = Unit<KIND>::RU;
    static constexpr int U16 = VPS / RU;           // vectors per lane per row per step
    static constexpr int PER = Fmt<F, K>::PER;     // weights per vector
    static constexpr size_t ROW = Fmt<F, K>::ROW;  // bytes per row
    static constexpr int KV = K / PER;             // vectors per row
    static constexpr int SPAN = 32 * U16;          // vectors per row per step
    static constexpr int STEPS = (KV + SPAN - 1) / SPAN;
    static constexpr bool EXACT = KV % SPAN == 0;
};

// This warp's place in the grid and how many steps it walks.
struct Lane {
    int lane, gw, nw, steps;
};
template <int K, int KIND, int F> __device__ __forceinline__ Lane lane_of(int units) {
    Lane l;
    l.lane = threadIdx.x & 31;
    l.gw = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;
    l.nw = gridDim.x * WARPS;
    int mine = l.gw < units ? (units - 1 - l.gw) / l.nw + 1 : 0;
    l.steps = mine * Plan<K, KIND, F>::STEPS;
    return l;
}

// Step s's weight vectors into b, and for a quantized format each vector's scale into sc (with one
// scale per row, only sc[r][0]). N: the matrix's rows (its scales follow its codes).
template <int K, int KIND, int F, int N>
__device__ __forceinline__ void load_step(const unsigned char* __restrict__ W, const Lane& l, int s,
                                          uint4 (&b)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16],
                                          float (&sc)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16]) {
    typedef Plan<K, KIND, F> P;
    int u = l.gw + (s / P::STEPS) * l.nw, c = s % P::STEPS;
#pragma unroll
    for (int r = 0; r < P::RU; r++) {
        int n = Unit<KIND>::row(u, r);
        const uint4* row = (const uint4*)(W + (size_t)n * P::ROW);
#pragma unroll
        for (int v = 0; v < P::U16; v++) {
            int i = c * P::SPAN + v * 32 + l.lane;
            if (P::EXACT || i < P::KV) {
                b[r][v] = ld_stream(row + i);
                if (F != FMT_DENSE && (Fmt<F, K>::GROUP_VECS || v == 0))
                    sc[r][v] = scale_of<F, K>(W, N, n, i);
            }
        }
    }
}

// One step s of a warp from the weights w (and their scales sc): the unit's epilogue inputs as it
// begins (lane 0; the first unit's are asked for by the kernel right after its wait), the dot
// products against the staged inputs xs [M, K] (shared: T for a dense matrix, else f32), and at the
// unit's last step the warp sums and epi(u, sums) (lane 0).
template <int K, int KIND, int F, int MR, class Epi>
__device__ __forceinline__ void step_at(const Lane& l, const unsigned char* xs, int M, int s,
                                        const uint4 (&w)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16],
                                        const float (&sc)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16],
                                        float (&acc)[Plan<K, KIND, F>::RU][MR], Epi& epi) {
    typedef Plan<K, KIND, F> P;
    int c = s % P::STEPS;
    if (c == 0 && s > 0 && l.lane == 0) epi.prepare(l.gw + (s / P::STEPS) * l.nw, M);
#pragma unroll
    for (int v = 0; v < P::U16; v++) {
        int i = c * P::SPAN + v * 32 + l.lane;
        if (!P::EXACT && i >= P::KV) continue;
#pragma unroll
        for (int m = 0; m < MR; m++) {
            if (m >= M) break;
            if (F == FMT_DENSE) {
                float xf[VEC];
                unpack(((const uint4*)((const T*)xs + (size_t)m * K))[i], xf);
#pragma unroll
                for (int r = 0; r < P::RU; r++) {
                    float wf[VEC];
                    unpack(w[r][v], wf);
                    float d = 0.0f;
#pragma unroll
                    for (int e = 0; e < VEC; e++) d += wf[e] * xf[e];
                    acc[r][m] += d;
                }
            } else {
                const float* x = (const float*)xs + (size_t)m * K + (size_t)i * P::PER;
#pragma unroll
                for (int r = 0; r < P::RU; r++)
                    acc[r][m] = fmaf(dot_codes<F>(w[r][v], x), sc[r][Fmt<F, K>::GROUP_VECS ? v : 0],
                                     acc[r][m]);
            }
        }
    }
    if (c == P::STEPS - 1) {
#pragma unroll
        for (int r = 0; r < P::RU; r++)
#pragma unroll
            for (int m = 0; m < MR; m++) {
                if (m >= M) break;
                acc[r][m] = warp_sum(acc[r][m]);
            }
        if (l.lane == 0) epi(l.gw + (s / P::STEPS) * l.nw, acc, M);
#pragma unroll
        for (int r = 0; r < P::RU; r++)
#pragma unroll
            for (int m = 0; m < MR; m++) acc[r][m] = 0.0f;
    }
}

// Walk the warp's steps (the first already in `b` and `sc`): step s + 1 is loaded while step s is
// computed.
template <int K, int KIND, int F, int N, int MR, class Epi>
__device__ __forceinline__ void stream(const unsigned char* __restrict__ W, const Lane& l,
                                       const unsigned char* xs, int M,
                                       uint4 (&b)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16],
                                       float (&sc)[Plan<K, KIND, F>::RU][Plan<K, KIND, F>::U16],
                                       Epi& epi) {
    typedef Plan<K, KIND, F> P;
    float acc[P::RU][MR];
#pragma unroll
    for (int r = 0; r < P::RU; r++)
#pragma unroll
        for (int m = 0; m < MR; m++) acc[r][m] = 0.0f;
    for (int s = 0; s < l.steps; s++) {
        uint4 cur[P::RU][P::U16];
        float cs[P::RU][P::U16];
#pragma unroll
        for (int r = 0; r < P::RU; r++)
#pragma unroll
            for (int v = 0; v < P::U16; v++) {
                cur[r][v] = b[r][v];
                cs[r][v] = sc[r][v];
            }
        if (s + 1 < l.steps) load_step<K, KIND, F, N>(W, l, s + 1, b, sc);
        step_at<K, KIND, F, MR>(l, xs, M, s, cur, cs, acc, epi);
    }
}

// L2_AFTER (tuning knob, LLMFORGE_DECODE_L2_AFTER=N; off by default, measured slower on an H200):
// right after the wait, lane 0 of each warp asks L2 for the weights of its next N steps (one bulk
// prefetch per row), so that they arrive while the prologue stages the inputs.
#define L2_AFTER {{ c.decode_l2_after }}
template <int K, int KIND, int F>
__device__ __forceinline__ void prefetch_step(const unsigned char* __restrict__ W, const Lane& l, int s) {
    typedef Plan<K, KIND, F> P;
    if (l.lane != 0) return;
    int u = l.gw + (s / P::STEPS) * l.nw, c = s % P::STEPS;
    int vecs = P::EXACT ? P::SPAN : min(P::SPAN, P::KV - c * P::SPAN);
#pragma unroll
    for (int r = 0; r < P::RU; r++) {
        const uint4* row = (const uint4*)(W + (size_t)Unit<KIND>::row(u, r) * P::ROW);
        l2_prefetch(row + c * P::SPAN, (unsigned)vecs * 16u);
    }
}
