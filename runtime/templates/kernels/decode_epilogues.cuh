// Part of runtime/templates/kernels/decode.cu (included): the GEMV epilogues, each run by lane 0 of the warp
// that finished a unit, with the inputs its `prepare` loaded as the unit began.
template <int MR> struct QkvEpi {
    const float* bias;
    const u32* pos;
    const int* step;
    const float* cos_t;
    const float* sin_t;
    float* q;
    T* new_k;
    T* new_v;
    T* cache_k;
    T* cache_v;
    int max_seq;
    int window; // the layer's sliding window (its cache a ring of that many slots), 0 for none
    float b1, b2, cs[MR], sn[MR]; // the unit's bias pair and RoPE factors (prepare)
    __device__ __forceinline__ void prepare(int u, int M) {
        int head = u / HALF_DIM, j = u % HALF_DIM;
        int col = head * HEAD_DIM + j;
        b1 = bias ? bias[col] : 0.0f;
        b2 = bias ? bias[col + HALF_DIM] : 0.0f;
{% if c.rope && !c.qk_norm %}
        if (head < HEADS + KV_HEADS)
            for (int m = 0; m < MR && m < M; m++) {
                cs[m] = cos_t[(size_t)pos[m] * HALF_DIM + j];
                sn[m] = sin_t[(size_t)pos[m] * HALF_DIM + j];
            }
{% endif %}
    }
    __device__ __forceinline__ void operator()(int u, float (&s)[2][MR], int M) {
        int head = u / HALF_DIM, j = u % HALF_DIM;
        int col = head * HEAD_DIM + j;
        int t = step[0];
        for (int m = 0; m < MR && m < M; m++) {
            float x1 = s[0][m] + b1, x2 = s[1][m] + b2;
{% if c.qk_norm %}
            // q and k are normed per head before they rotate (head_norm, then qkv_rope, which also
            // writes the K/V rows): here the whole QKV row goes to `q` unrotated, QKV_DIM wide.
            q[(size_t)m * QKV_DIM + col] = x1;
            q[(size_t)m * QKV_DIM + col + HALF_DIM] = x2;
            continue;
{% endif %}
            float y1 = x1, y2 = x2;
{% if c.rope %}
            if (head < HEADS + KV_HEADS) {
                y1 = x1 * cs[m] - x2 * sn[m];
                y2 = x2 * cs[m] + x1 * sn[m];
            }
{% endif %}
            if (head < HEADS) {
                q[(size_t)m * Q_DIM + col] = y1;
                q[(size_t)m * Q_DIM + col + HALF_DIM] = y2;
                continue;
            }
            bool is_k = head < HEADS + KV_HEADS;
            int kh = is_k ? head - HEADS : head - HEADS - KV_HEADS;
            T* nw = is_k ? new_k : new_v;
            T* cw = is_k ? cache_k : cache_v;
            size_t at = ((size_t)m * KV_HEADS + kh) * HEAD_DIM + j;
            size_t c = cache_row(t, window, max_seq, m, kh) * HEAD_DIM + j;
            nw[at] = from_f32(y1);
            nw[at + HALF_DIM] = from_f32(y2);
            cw[c] = from_f32(y1);
            cw[c + HALF_DIM] = from_f32(y2);
        }
    }
};

{% if c.sandwich %}
// With sandwich norms the half's output is normed before it joins the residual stream (add_post_norm,
// once the whole row exists): y[m, u] = s (+ bias[u]).
template <int N, int MR> struct AccEpi {
    float* y;
    const float* bias;
    float b;
    __device__ __forceinline__ void prepare(int u, int) { b = bias ? bias[u] : 0.0f; }
    __device__ __forceinline__ void operator()(int u, float (&s)[1][MR], int M) {
        for (int m = 0; m < MR && m < M; m++) y[(size_t)m * N + u] = s[0][m] + b;
    }
};
{% else %}
template <int N, int MR> struct AccEpi { // y[m, u] += s (+ bias[u])
    float* y;
    const float* bias;
    float b, y0[MR]; // the unit's bias and residual values (prepare: after the wait, through L2)
    __device__ __forceinline__ void prepare(int u, int M) {
        b = bias ? bias[u] : 0.0f;
        for (int m = 0; m < MR && m < M; m++) y0[m] = __ldcg(y + (size_t)m * N + u);
    }
    __device__ __forceinline__ void operator()(int u, float (&s)[1][MR], int M) {
        for (int m = 0; m < MR && m < M; m++) y[(size_t)m * N + u] = y0[m] + (s[0][m] + b);
    }
};
{% endif %}

template <int MR> struct GluEpi { // mid[m, u] = glu(gate + bias, up + bias)
    const float* bias;
    T* mid;
    __device__ __forceinline__ void prepare(int, int) {}
    __device__ __forceinline__ void operator()(int u, float (&s)[2][MR], int M) {
        for (int m = 0; m < MR && m < M; m++) {
            float g = s[0][m], up = s[1][m];
            if (bias) {
                g += bias[u];
                up += bias[INTER + u];
            }
            mid[(size_t)m * INTER + u] = from_f32(glu(g, up));
        }
    }
};

template <int MR> struct GeluEpi { // mid[m, u] = gelu_new(fc + bias)
    const float* bias;
    T* mid;
    __device__ __forceinline__ void prepare(int, int) {}
    __device__ __forceinline__ void operator()(int u, float (&s)[1][MR], int M) {
        for (int m = 0; m < MR && m < M; m++) {
            float v = s[0][m] + (bias ? bias[u] : 0.0f);
            mid[(size_t)m * INTER + u] = from_f32(gelu_new(v));
        }
    }
};

// logits[m, u] = s, soft-capped as tanh(s / cap) * cap where cap > 0; top[m] = this warp's best
// argmax key.
template <int MR> struct LogitsEpi {
    float* logits;
    int n;
    float cap;
    unsigned long long top[MR];
    __device__ __forceinline__ void prepare(int, int) {}
    __device__ __forceinline__ void operator()(int u, float (&s)[1][MR], int M) {
        for (int m = 0; m < MR && m < M; m++) {
            float v = cap > 0.0f ? tanhf(s[0][m] / cap) * cap : s[0][m];
            logits[(size_t)m * n + u] = v;
            unsigned long long key = argmax_key(v, u);
            top[m] = key > top[m] ? key : top[m];
        }
    }
};
