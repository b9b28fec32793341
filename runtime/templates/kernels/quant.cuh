// Part of the kernels that read weight matrices (included): the weight formats of spec/src/format.rs.
// A matrix [N, K] is dense T, or quantized at build as codes [N, row bytes] followed by f32 scales
// (int8 and fp8: one per row; int4: one per group of 128 along the row). Codes decode to their exact
// values (small integers, E4M3 values), which a product multiplies in f32 and scales per vector.
#define FMT_DENSE 0
#define FMT_INT8 1
#define FMT_INT4 2
#define FMT_FP8 3
#define INT4_GROUP 128

// PER: weights per 16-byte vector of a row; ROW: bytes of a row's codes; GROUPS: scales per row;
// GROUP_VECS: vectors per scale (0 for one scale per row).
template <int F, int K> struct Fmt {
    static constexpr int PER = F == FMT_DENSE ? VEC : F == FMT_INT4 ? 32 : 16;
    static constexpr size_t ROW = F == FMT_DENSE ? (size_t)K * sizeof(T) : F == FMT_INT4 ? K / 2 : K;
    static constexpr int GROUPS = F == FMT_DENSE ? 0 : F == FMT_INT4 ? K / INT4_GROUP : 1;
    static constexpr int GROUP_VECS = F == FMT_INT4 ? INT4_GROUP / 32 : 0;
};

// The scale of vector i of row `row` of an [rows, K] matrix of format F at w (1 for dense).
template <int F, int K>
__device__ __forceinline__ float scale_of(const unsigned char* __restrict__ w, int rows, int row, int i) {
    typedef Fmt<F, K> P;
    if (F == FMT_DENSE) return 1.0f;
    const float* s = (const float*)(w + (size_t)rows * P::ROW);
    return __ldg(s + (size_t)row * P::GROUPS + (P::GROUP_VECS ? i / P::GROUP_VECS : 0));
}

// Code j (0..3) of the int8 word t, whose bytes were flipped to offset binary (t ^ 0x80808080): the
// byte under the exponent of 2^23, less 2^23 + 128, is its signed value exactly.
__device__ __forceinline__ float i8_value(u32 t, int j) {
    return __uint_as_float(__byte_perm(t, 0x4B000000u, 0x7540u + j)) - 8388736.0f;
}

// Nibble j (0..7) of the int4 word t, flipped to offset binary (t ^ 0x88888888): its signed value.
__device__ __forceinline__ float i4_value(u32 t, int j) {
    return __uint_as_float(0x4B000000u | ((t >> (4 * j)) & 0xFu)) - 8388616.0f;
}

// The E4M3 (fn) codes in bytes j and j + 1 (j even) of t, as two exact f32 values. The 7 bits below
// the sign are an f16 exponent and mantissa 2^8 too small (subnormals included), so the f16 with those
// bits times 256 is the value; sm_89 converts the pair in one instruction. The NaN codes 0x7F and
// 0xFF, which the quantizer never writes, read as NaN there and as +-480 below sm_89 (and on the
// CPU).
__device__ __forceinline__ void fp8_pair(u32 t, int j, float& a, float& b) {
    unsigned short h0, h1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    unsigned short pair = (unsigned short)(t >> (8 * j));
    u32 h2;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(pair));
    h0 = (unsigned short)(h2 & 0xffffu);
    h1 = (unsigned short)(h2 >> 16);
    const float k = 1.0f;
#else
    u32 c0 = (t >> (8 * j)) & 0xffu, c1 = (t >> (8 * j + 8)) & 0xffu;
    h0 = (unsigned short)(((c0 & 0x7fu) << 7) | ((c0 & 0x80u) << 8));
    h1 = (unsigned short)(((c1 & 0x7fu) << 7) | ((c1 & 0x80u) << 8));
    const float k = 256.0f;
#endif
    float f0, f1;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f0) : "h"(h0));
    asm("cvt.f32.f16 %0, %1;" : "=f"(f1) : "h"(h1));
    a = f0 * k;
    b = f1 * k;
}

// The PER code values of one 16-byte vector of format F (not dense), unscaled.
template <int F> __device__ __forceinline__ void codes(uint4 v, float* c) {
    u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (F == FMT_INT8) {
            u32 t = w[k] ^ 0x80808080u;
#pragma unroll
            for (int j = 0; j < 4; j++) c[4 * k + j] = i8_value(t, j);
        } else if (F == FMT_INT4) {
            u32 t = w[k] ^ 0x88888888u;
#pragma unroll
            for (int j = 0; j < 8; j++) c[8 * k + j] = i4_value(t, j);
        } else if (F == FMT_FP8) {
            fp8_pair(w[k], 0, c[4 * k], c[4 * k + 1]);
            fp8_pair(w[k], 2, c[4 * k + 2], c[4 * k + 3]);
        }
    }
}

// sum_e code_e * x_e over one 16-byte vector of format F (not dense) and its PER f32 inputs x
// (16-byte aligned).
template <int F> __device__ __forceinline__ float dot_codes(uint4 v, const float* x) {
    constexpr int PER = F == FMT_INT4 ? 32 : 16;
    float c[PER];
    codes<F>(v, c);
    float d = 0.0f;
#pragma unroll
    for (int e = 0; e < PER; e += 4) {
        float4 xv = *(const float4*)(x + e);
        d = fmaf(c[e], xv.x, d);
        d = fmaf(c[e + 1], xv.y, d);
        d = fmaf(c[e + 2], xv.z, d);
        d = fmaf(c[e + 3], xv.w, d);
    }
    return d;
}
