// Part of the tensor-core kernels (included): packing f32 pairs into the storage type's pairs, and
// mma.sync m16n8k16 with f32 accumulation (sm_80+). Fragment layouts (PTX ISA), lane = 4 g + t:
//   A (16x16, row major) a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..);
//   B (16x8, k x n)      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g);
//   C (16x8, f32)        c0, c1 = (g, 2t..2t+1), c2, c3 = (g+8, 2t..2t+1).

// Two f32 rounded to T and packed (lo in the low half).
__device__ __forceinline__ u32 pack2(float lo, float hi) {
    u32 r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
{% if c.dtype == "f16" %}
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
{% else %}
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
{% endif %}
#else
    r = (u32)from_f32(lo) | ((u32)from_f32(hi) << 16);
#endif
    return r;
}

// d += a b (m16n8k16, f32 accumulate).
__device__ __forceinline__ void mma16816(float* d, const u32* a, u32 b0, u32 b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
{% if c.dtype == "f16" %}
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
{% else %}
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
{% endif %}
                 "{ %0, %1, %2, %3}, { %4, %5, %6, %7}, { %8, %9}, { %0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

