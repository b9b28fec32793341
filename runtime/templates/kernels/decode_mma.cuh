// Part of runtime/templates/kernels/decode.cu (included): the decode GEMVs over a matrix quantized at
// build (int8, int4, fp8) in a 16-bit engine, on tensor cores. A code decodes exactly to a 16-bit value
// (q in T) and an input staged in T is exact too, so mma.sync's exact products, summed in f32, are the
// f32 path's sum of code * input in another order; the scale multiplies each group's (int4) or the
// row's (int8, fp8) sum.
//
// The matrix rows go in tiles of 16 (8 units of a row pair, or 16 single units: tile row i is
// unit i % 8 of the tile's row i / 8, or unit i). A block takes tiles blockIdx.x, + gridDim.x, ...
// (the host launches as many blocks as are resident at once, at most one per tile) and stages (and
// norms) the inputs once, before its first. Its 8 warps split a tile row's steps of 4 * PER weights
// (PER: a 16-byte code vector's weights). Lane 4 g + t loads one code vector of tile rows g and
// g + 8 per step: weights [4 PER s + PER t, + PER) of the step s. Those become the A fragments of
// PER / 4 mma m16n8k16 (16 rows x 16 k), whose B fragments are the staged inputs of token g (zero
// for g >= M) at the same weights, so the C fragments are per-row sums over the step for tokens
// 2t, 2t + 1 (mma.cuh's layouts). The code pairs come out of a vector in a format's own order, and
// the inputs are staged in that order (x_slot), so that each B fragment is one 8-byte load.
// A warp keeps MMA_DEPTH steps' loads in flight (fewer where a tile has fewer of its steps)
// through all its block's tiles, so that the next tile's first weights stream while a tile's sums
// meet and its epilogue runs (and the first tile's even before the wait for the predecessor). The
// warps' sums meet in shared memory after the staged inputs; one thread per unit then scales them
// (int8, fp8) and runs the kernel's epilogue, whose inputs it asked for as the tile began.
#define MMA_TILE 16
#define MMA_DEPTH 4 // steps in flight per warp

// Whether the GEMV over a [N, K] matrix of format F runs on tensor cores: quantized, 16-bit engine,
// rows of whole steps. The host asks the same (decode.rs).
// Compiled in where kernels.rs `decode_mma` says (LLMFORGE_DECODE_MMA, sm_80+; recorded with the PTX).
#define USE_MMA(F, K) \
    ({{ c.decode_mma }} && F != FMT_DENSE && sizeof(T) == 2 && (K) % (4 * Fmt<F, K>::PER) == 0)

// Where input element k is staged for format F: an int4 vector's pairs are elements (e, e + 4) of
// each 8 (quant.cuh's nibble order), so its inputs are staged [0, 4, 1, 5, 2, 6, 3, 7] per 8; int8
// and fp8 pairs are adjacent elements.
template <int F> __device__ __forceinline__ int x_slot(int k) {
    if (F != FMT_INT4) return k;
    int i = k & 7;
    return (k & ~7) | ((i & 3) * 2 + (i >> 2));
}

// a * 1 + c on a pair of T (exact here: small integers).
__device__ __forceinline__ u32 pair_add(u32 a, u32 c) {
    u32 d;
{% if c.dtype == "f16" %}
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(0x3C003C00u), "r"(c));
{% else %}
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(0x3F803F80u), "r"(c));
{% endif %}
    return d;
}

// The codes of one vector as pairs of T (exact values), pair j = elements (2j', 2j' + 1) of the
// staged order: int4 pair 4w + s = elements (8w + s, 8w + s + 4); int8 and fp8 pair 2w + s = elements
// (4w + 2s, 4w + 2s + 1) (w: the vector's 32-bit word).
template <int F> __device__ __forceinline__ void code_pairs(uint4 v, u32* p) {
    u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (F == FMT_INT4) {
            u32 t = w[k] ^ 0x88888888u; // offset binary: q + 8
#pragma unroll
            for (int s = 0; s < 4; s++) {
{% if c.dtype == "f16" %}
                // 1024 + n, less 1032.
                p[4 * k + s] = pair_add(((t >> (4 * s)) & 0x000F000Fu) | 0x64006400u, 0xE408E408u);
{% else %}
                // 128 + n, less 136.
                p[4 * k + s] = pair_add(((t >> (4 * s)) & 0x000F000Fu) | 0x43004300u, 0xC308C308u);
{% endif %}
            }
        } else if (F == FMT_INT8) {
{% if c.dtype == "f16" %}
            u32 t = w[k] ^ 0x80808080u; // offset binary: q + 128; 1024 + n, less 1152
            p[2 * k] = pair_add(__byte_perm(t, 0x64646464u, 0x5140u), 0xE480E480u);
            p[2 * k + 1] = pair_add(__byte_perm(t, 0x64646464u, 0x7362u), 0xE480E480u);
{% else %}
            u32 t = w[k] ^ 0x80808080u;
            p[2 * k] = pack2(i8_value(t, 0), i8_value(t, 1));
            p[2 * k + 1] = pack2(i8_value(t, 2), i8_value(t, 3));
{% endif %}
        } else if (F == FMT_FP8) {
#pragma unroll
            for (int s = 0; s < 2; s++) {
                float a, b;
                fp8_pair(w[k], 2 * s, a, b);
                p[2 * k + s] = pack2(a, b);
            }
        }
    }
}

// Bytes of shared memory after the staged inputs for the warps' sums of a tile (decode.rs
// `MMA_SUMS_BYTES`): [warp][tile row][token] of f32 for as many warps at a time as fit, all 8 for up
// to 4 tokens, 4 for 8 tokens (2 rounds). 2 KB, so that the widest staged inputs still fit beside
// them (8 rows of 14336 inputs: 224 KB + 2 KB, the opt-in limit of sm_90 less 1 KB).
#define MMA_SUMS_BYTES 2048

template <int K, int KIND, int F, int N, int MR, class Epi, class Stage>
__device__ __forceinline__ void mma_gemv(const unsigned char* __restrict__ W, int units, int M,
                                         Epi& epi, Stage stage, u64* trace, int slot) {
    static_assert(MR <= 8, "an mma tile holds 8 token columns");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    static_assert(MR < 0, "the tensor-core decode GEMVs need sm_80");
#endif
    typedef Fmt<F, K> P;
    constexpr int PER = P::PER, SK = 4 * PER, STEPS = K / SK, MMAS = PER / 4;
    constexpr int RU = Unit<KIND>::RU, UPT = MMA_TILE / RU; // rows per unit, units per tile
    // Warps whose sums meet at once (a round): as many as MMA_SUMS_BYTES holds.
    constexpr int FIT = MMA_SUMS_BYTES / (MMA_TILE * MR * 4), RW = FIT < WARPS ? FIT : WARPS;
    static_assert(RW > 0 && WARPS % RW == 0, "the sums take whole rounds of warps");
    pdl_trigger();
    TraceExit trace_exit{trace, slot};
    trace_mark(trace, slot, 0);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int tiles = (units + UPT - 1) / UPT;
    // Steps warp, warp + 8, ... of each tile.
    int mine = warp < STEPS ? (STEPS - 1 - warp) / WARPS + 1 : 0;
    // Tile rows g and g + 8 of tile `tile`: their matrix rows, or -1 past the last unit.
    auto rows_of = [&](int tile, int (&rows)[2]) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int i = g + 8 * h;
            int u = tile * UPT + (RU == 2 ? i % 8 : i), r = RU == 2 ? i / 8 : 0;
            rows[h] = u < units ? Unit<KIND>::row(u, r) : -1;
        }
    };
    // The ring of steps in flight: step s of a tile in slot s % MMA_DEPTH (a constant where it is
    // read, so that the ring lives in registers). Once read, a slot takes the step MMA_DEPTH on, or
    // past the tile's last step the next tile's step of that slot: the next tile's first
    // min(mine, MMA_DEPTH) steps are in flight while this tile's sums meet and its epilogue runs.
    uint4 buf[MMA_DEPTH][2];
    float sc[MMA_DEPTH][2];
    auto load = [&](int d, const int (&rows)[2], int s) {
        int st = warp + s * WARPS;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (rows[h] < 0) {
                buf[d][h] = make_uint4(0, 0, 0, 0);
                sc[d][h] = 0.0f;
                continue;
            }
            buf[d][h] = ld_stream((const uint4*)(W + (size_t)rows[h] * P::ROW) + st * 4 + t);
            if (F == FMT_INT4) sc[d][h] = scale_of<F, K>(W, N, rows[h], st * 4 + t);
        }
    };
    int rows[2], next[2]; // this tile's rows and the next one's (-1 past the last tile)
    rows_of(blockIdx.x, rows);
#pragma unroll
    for (int d = 0; d < MMA_DEPTH; d++)
        if (d < mine) load(d, rows, d);
    pdl_wait();
    trace_mark(trace, slot, 1);
    stage(dec_smem);
    // Token g's inputs at this lane's weights.
    const T* xg = (const T*)dec_smem + (size_t)g * K + t * PER;
    // The warps' sums: red[warp % RW][tile row][token], after the staged inputs (every tile reads
    // those).
    float* red = (float*)(dec_smem + (size_t)M * K * sizeof(T));
    // A tile's sums are the same arithmetic in the same order whichever block takes it (each warp's
    // steps of the tile from zero, then the warps' sums in warp order): any grid gives the same bits.
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        rows_of(tile + gridDim.x, next);
        // One thread per unit: its epilogue inputs and row scales, asked for as the tile begins.
        int ul = threadIdx.x, u = tile * UPT + ul;
        bool owner = ul < UPT && u < units;
        float scale[RU];
        if (owner) {
            epi.prepare(u, M);
#pragma unroll
            for (int r = 0; r < RU; r++)
                scale[r] = F == FMT_INT4 ? 1.0f : scale_of<F, K>(W, N, Unit<KIND>::row(u, r), 0);
        }
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int s0 = 0; s0 < mine; s0 += MMA_DEPTH) {
#pragma unroll
            for (int d = 0; d < MMA_DEPTH; d++) {
                int s = s0 + d;
                if (s >= mine) break;
                u32 pa[PER / 2], pb[PER / 2];
                code_pairs<F>(buf[d][0], pa);
                code_pairs<F>(buf[d][1], pb);
                float s0a = sc[d][0], s1a = sc[d][1];
                if (s + MMA_DEPTH < mine)
                    load(d, rows, s + MMA_DEPTH);
                else
                    load(d, next, d);
                const T* x = xg + (size_t)(warp + s * WARPS) * SK;
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                float* cc = F == FMT_INT4 ? c : acc;
#pragma unroll
                for (int j = 0; j < MMAS; j++) {
                    u32 a[4] = {pa[2 * j], pb[2 * j], pa[2 * j + 1], pb[2 * j + 1]};
                    uint2 b = g < M ? *(const uint2*)(x + 4 * j) : make_uint2(0, 0);
                    mma16816(cc, a, b.x, b.y);
                }
                if (F == FMT_INT4) {
                    acc[0] = fmaf(c[0], s0a, acc[0]);
                    acc[1] = fmaf(c[1], s0a, acc[1]);
                    acc[2] = fmaf(c[2], s1a, acc[2]);
                    acc[3] = fmaf(c[3], s1a, acc[3]);
                }
            }
        }
        rows[0] = next[0];
        rows[1] = next[1];
        // The warps' sums meet in `red`, RW warps a round; a unit's thread adds them in warp order.
        float v[RU][MR];
#pragma unroll
        for (int r = 0; r < RU; r++)
#pragma unroll
            for (int m = 0; m < MR; m++) v[r][m] = 0.0f;
#pragma unroll
        for (int w0 = 0; w0 < WARPS; w0 += RW) {
            __syncthreads(); // the last reads of `red` (the previous round or tile) are done
            if (warp >= w0 && warp < w0 + RW)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int m = 2 * t + (e & 1);
                    if (m < MR) red[((warp - w0) * MMA_TILE + g + 8 * (e >> 1)) * MR + m] = acc[e];
                }
            __syncthreads();
            if (owner)
#pragma unroll
                for (int r = 0; r < RU; r++) {
                    int i = RU == 2 ? ul + 8 * r : ul;
#pragma unroll
                    for (int m = 0; m < MR; m++)
#pragma unroll
                        for (int w = 0; w < RW; w++) v[r][m] += red[(w * MMA_TILE + i) * MR + m];
                }
        }
        if (owner) {
            // Scaled apart from the epilogue's additions (never contracted into them).
            float s[RU][MR];
#pragma unroll
            for (int r = 0; r < RU; r++)
#pragma unroll
                for (int m = 0; m < MR; m++)
                    s[r][m] = F == FMT_INT4 ? v[r][m] : __fmul_rn(v[r][m], scale[r]);
            epi(u, s, M);
        }
    }
}

// Staging for the tensor-core GEMVs: the M input rows in T at their x_slot.
template <int K, int F>
__device__ __forceinline__ void stage_copy_mma(const T* a, int M, unsigned char* xs) {
    const uint4* src = (const uint4*)a;
    uint4* dst = (uint4*)xs;
    for (int i = threadIdx.x; i < M * (K / VEC); i += blockDim.x) {
        uint4 v = __ldcg(src + i);
        if (F == FMT_INT4) {
            // (x0, x1), (x2, x3), (x4, x5), (x6, x7) -> (x0, x4), (x1, x5), (x2, x6), (x3, x7).
            uint4 o;
            o.x = __byte_perm(v.x, v.z, 0x5410u);
            o.y = __byte_perm(v.x, v.z, 0x7632u);
            o.z = __byte_perm(v.y, v.w, 0x5410u);
            o.w = __byte_perm(v.y, v.w, 0x7632u);
            v = o;
        }
        dst[i] = v;
    }
    __syncthreads();
}
