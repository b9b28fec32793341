// Host emulation of runtime/templates/kernels/decode_mma.cuh's `mma_gemv` (the tensor-core decode
// GEMV over int8 / int4 / fp8 codes in an FP16 engine), lane by lane, for checking a change to it
// without a GPU:
//   g++ -O2 -std=c++17 -o /tmp/emulate_decode_mma scripts/emulate_decode_mma.cpp
//   /tmp/emulate_decode_mma   # exits 1 on any failure
// `grid_kernel` follows the kernel: block b of a grid takes tiles b, b + grid, ...; each warp's ring
// of MMA_DEPTH loads runs on into its next tile; the warps' sums meet after the staged inputs in
// rounds of RW warps. `tile_kernel` is the plain arrangement the bits must match: one block per
// 16-row tile, each warp's loads within the tile, the sums of all 8 warps at once. Over random
// matrices, for every format, unit kind (RoPE pairs, gate/up pairs, single rows), token counts 1, 3
// and 8, widths from one step to 14336 and partial last tiles:
//  - with exactly representable inputs, every grid (1 block, a few, one per tile) and the tile
//    kernel give exactly the plain dot product;
//  - with arbitrary inputs, every grid gives the tile kernel's bits (the same f32 arithmetic in the
//    same order per tile), close to the dot product;
//  - every weight vector is loaded exactly once, each ring slot holds the step that reads it, no
//    access leaves its buffer, and no shared-memory word is written by one thread and touched by
//    another between the same two barriers;
//  - the checks catch broken variants (a missing barrier, a ring slot loaded with another step or
//    not at all, the sums added in another order).
// mma.sync is modelled as D = C + (the exact sum of the 16 products, rounded once): the same function
// in both, so equal bits mean the same operands in the same order. Code pairs decode as
// `code_pairs` does for f16 (the bf16 variants decode to the same values).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
typedef uint32_t u32;

static int fails = 0;
static bool quiet = false;
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c) && fails++ < 20 && !quiet) {                                                      \
            printf("FAIL line %d: ", __LINE__);                                                    \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

enum { INT8 = 1, INT4 = 2, FP8 = 3 };
enum { SINGLE = 0, ROPE_PAIR = 1, GATE_UP_PAIR = 2 };
const int WARPS = 8, TILE = 16, DEPTH = 4, SUMS_BYTES = 2048;

u32 byte_perm(u32 x, u32 y, u32 s) {
    uint8_t b[8];
    for (int i = 0; i < 4; i++) b[i] = (x >> (8 * i)) & 0xff, b[4 + i] = (y >> (8 * i)) & 0xff;
    u32 r = 0;
    for (int i = 0; i < 4; i++) r |= (u32)b[(s >> (4 * i)) & 7] << (8 * i);
    return r;
}
double f16v(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return h >> 15 ? -v : v;
}
uint16_t f16_bits(double d) { // d exactly representable, normal or zero
    if (d == 0) return 0;
    int e;
    double f = frexp(fabs(d), &e); // [0.5, 1)
    uint16_t b = (uint16_t)(((e - 2 + 16) << 10) | (int)((f * 2 - 1) * 1024));
    return d < 0 ? b | 0x8000 : b;
}
double fp8v(uint8_t c) {
    int e = (c >> 3) & 15, m = c & 7;
    double v = e == 0 ? m / 512.0 : ldexp(1 + m / 8.0, e - 7);
    return c >> 7 ? -v : v;
}
// code_pairs<F> (f16): pair j of a vector as two values, in the staged order.
void code_pairs(int F, const u32 w[4], double* lo, double* hi) {
    auto add = [](u32 a, u32 c, double& l, double& h) {
        l = f16v(a & 0xffff) + f16v(c & 0xffff);
        h = f16v(a >> 16) + f16v(c >> 16);
    };
    for (int k = 0; k < 4; k++) {
        if (F == INT4) {
            u32 t = w[k] ^ 0x88888888u;
            for (int s = 0; s < 4; s++)
                add(((t >> (4 * s)) & 0x000F000Fu) | 0x64006400u, 0xE408E408u, lo[4 * k + s], hi[4 * k + s]);
        } else if (F == INT8) {
            u32 t = w[k] ^ 0x80808080u;
            add(byte_perm(t, 0x64646464u, 0x5140u), 0xE480E480u, lo[2 * k], hi[2 * k]);
            add(byte_perm(t, 0x64646464u, 0x7362u), 0xE480E480u, lo[2 * k + 1], hi[2 * k + 1]);
        } else {
            for (int s = 0; s < 2; s++) {
                lo[2 * k + s] = fp8v((w[k] >> (16 * s)) & 0xff);
                hi[2 * k + s] = fp8v((w[k] >> (16 * s + 8)) & 0xff);
            }
        }
    }
}
int x_slot(int F, int k) {
    if (F != INT4) return k;
    int i = k & 7;
    return (k & ~7) | ((i & 3) * 2 + (i >> 2));
}

struct Problem {
    int F, KIND, K, N, units, M, MR, head_dim, inter;
    int PER, SK, STEPS, MMAS, RU, UPT, tiles, GROUPS;
    size_t ROW;
    std::vector<uint8_t> W; // codes [N, ROW]
    std::vector<float> scales;
    std::vector<uint16_t> x, xs; // inputs [M, K] (f16) and as staged (x_slot order)
    int row(int u, int r) const {
        int half = head_dim / 2;
        if (KIND == ROPE_PAIR) return (u / half) * head_dim + u % half + r * half;
        if (KIND == GATE_UP_PAIR) return u + r * inter;
        return u;
    }
    float scale_of(int row, int vec) const { return scales[(size_t)row * GROUPS + (F == INT4 ? vec / 4 : 0)]; }
    double code(int n, int e) const {
        const uint8_t* r = &W[n * ROW];
        if (F == INT8) return (int8_t)r[e];
        if (F == INT4) {
            int v = (e & 1) ? r[e / 2] >> 4 : r[e / 2] & 15;
            return v >= 8 ? v - 16 : v;
        }
        return fp8v(r[e]);
    }
};

Problem make(int F, int KIND, int K, int units, int M, int MR, int head_dim, int inter, bool exact,
             std::mt19937& rng) {
    Problem p{};
    p.F = F, p.KIND = KIND, p.K = K, p.units = units, p.M = M, p.MR = MR;
    p.head_dim = head_dim, p.inter = inter;
    p.PER = F == INT4 ? 32 : 16, p.SK = 4 * p.PER, p.STEPS = K / p.SK, p.MMAS = p.PER / 4;
    p.RU = KIND == SINGLE ? 1 : 2, p.UPT = TILE / p.RU, p.tiles = (units + p.UPT - 1) / p.UPT;
    p.N = KIND == SINGLE ? units : KIND == GATE_UP_PAIR ? 2 * inter : units * 2;
    p.ROW = F == INT4 ? K / 2 : K, p.GROUPS = F == INT4 ? K / 128 : 1;
    p.W.resize(p.N * p.ROW);
    for (auto& b : p.W) {
        b = rng();
        if (F == FP8) {
            if ((b & 0x7f) == 0x7f) b = 0x7e; // no NaN codes
            if (exact && ((b >> 3) & 15) < 5) b &= 0x80; // exact runs: |value| >= 1/4, or 0
        }
    }
    p.scales.resize(p.N * p.GROUPS);
    for (auto& s : p.scales)
        s = exact ? (float)ldexp(1.0, (int)(rng() % 7) - 3)
                  : std::uniform_real_distribution<float>(0.001f, 0.1f)(rng);
    p.x.resize(M * K);
    for (auto& h : p.x) {
        if (exact)
            h = f16_bits(((int)(rng() % 33) - 16) * 0.25);
        else
            h = (uint16_t)((rng() % 0x3c00) | (rng() & 0x8000)); // |v| < 1, any mantissa
    }
    // stage_norm's order (element k at x_slot) and stage_copy_mma's (pairs permuted per 8) agree.
    p.xs.assign(M * K, 0);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) p.xs[m * K + x_slot(F, k)] = p.x[m * K + k];
    std::vector<uint16_t> copy(M * K);
    for (int i = 0; i < M * K / 8; i++) {
        u32 v[4];
        memcpy(v, &p.x[i * 8], 16);
        if (F == INT4) {
            u32 o[4] = {byte_perm(v[0], v[2], 0x5410), byte_perm(v[0], v[2], 0x7632),
                        byte_perm(v[1], v[3], 0x5410), byte_perm(v[1], v[3], 0x7632)};
            memcpy(v, o, 16);
        }
        memcpy(&copy[i * 8], v, 16);
    }
    CHECK(copy == p.xs, "stage_copy_mma and stage_norm stage in other orders (F=%d)", F);
    return p;
}

// One warp's registers and the lane-level operations both ports share.
struct Warp {
    const Problem& p;
    int warp, mine;
    u32 buf[DEPTH][32][2][4];
    float sc[DEPTH][32][2];
    int tag_tile[DEPTH], tag_step[DEPTH]; // what each ring slot holds
    int rows[32][2], next[32][2];         // grid_kernel: this tile's rows and the next one's
    float acc[32][4];
    std::vector<int>* loaded; // loads per (tile, step, lane, h)
    Warp(const Problem& p, int warp, std::vector<int>* loaded) : p(p), warp(warp), loaded(loaded) {
        mine = warp < p.STEPS ? (p.STEPS - 1 - warp) / WARPS + 1 : 0;
    }
    void rows_of(int tile, int rows[32][2]) {
        for (int lane = 0; lane < 32; lane++)
            for (int h = 0; h < 2; h++) {
                int i = (lane >> 2) + 8 * h;
                int u = tile * p.UPT + (p.RU == 2 ? i % 8 : i), r = p.RU == 2 ? i / 8 : 0;
                rows[lane][h] = u < p.units ? p.row(u, r) : -1;
            }
    }
    // load(d, rows, s): step s of the tile whose rows these are into slot d.
    void load(int d, int rows[32][2], int s, int tile) {
        int st = warp + s * WARPS;
        tag_tile[d] = tile, tag_step[d] = s;
        for (int lane = 0; lane < 32; lane++)
            for (int h = 0; h < 2; h++) {
                if (rows[lane][h] < 0) {
                    memset(buf[d][lane][h], 0, 16);
                    sc[d][lane][h] = 0;
                    continue;
                }
                size_t at = (size_t)rows[lane][h] * p.ROW + (size_t)(st * 4 + (lane & 3)) * 16;
                CHECK(st < p.STEPS && at + 16 <= p.W.size(), "load past the codes");
                memcpy(buf[d][lane][h], &p.W[at], 16);
                if (p.F == INT4) sc[d][lane][h] = p.scale_of(rows[lane][h], st * 4 + (lane & 3));
                if (loaded && tile < p.tiles) (*loaded)[((size_t)(tile * p.STEPS + st) * 32 + lane) * 2 + h]++;
            }
    }
    // The step in slot d (step s of tile `tile`) against the staged inputs xs; `more` issues the
    // slot's next load between the decode and the mma, as the kernel does.
    template <class More> void step(int d, int tile, int s, const std::vector<uint16_t>& xs, More more) {
        CHECK(tag_tile[d] == tile && tag_step[d] == s, "warp %d slot %d holds tile %d step %d, wants %d %d",
              warp, d, tag_tile[d], tag_step[d], tile, s);
        double pa[32][2][16], pb[32][2][16];
        float s0a[32], s1a[32];
        for (int lane = 0; lane < 32; lane++) {
            code_pairs(p.F, buf[d][lane][0], pa[lane][0], pa[lane][1]);
            code_pairs(p.F, buf[d][lane][1], pb[lane][0], pb[lane][1]);
            s0a[lane] = sc[d][lane][0], s1a[lane] = sc[d][lane][1];
        }
        more();
        float c[32][4] = {};
        for (int j = 0; j < p.MMAS; j++) {
            double A[16][16], B[16][8];
            for (int lane = 0; lane < 32; lane++) {
                int g = lane >> 2, t = lane & 3;
                // a = {pa[2j], pb[2j], pa[2j + 1], pb[2j + 1]} (mma.cuh's A layout)
                A[g][2 * t] = pa[lane][0][2 * j], A[g][2 * t + 1] = pa[lane][1][2 * j];
                A[g + 8][2 * t] = pb[lane][0][2 * j], A[g + 8][2 * t + 1] = pb[lane][1][2 * j];
                A[g][2 * t + 8] = pa[lane][0][2 * j + 1], A[g][2 * t + 9] = pa[lane][1][2 * j + 1];
                A[g + 8][2 * t + 8] = pb[lane][0][2 * j + 1], A[g + 8][2 * t + 9] = pb[lane][1][2 * j + 1];
                size_t at = (size_t)g * p.K + t * p.PER + (size_t)(warp + s * WARPS) * p.SK + 4 * j;
                double b[4] = {0, 0, 0, 0};
                if (g < p.M) {
                    CHECK(at + 4 <= (size_t)p.M * p.K, "B fragment past the staged inputs");
                    for (int z = 0; z < 4; z++) b[z] = f16v(xs[at + z]);
                }
                B[2 * t][g] = b[0], B[2 * t + 1][g] = b[1], B[2 * t + 8][g] = b[2], B[2 * t + 9][g] = b[3];
            }
            for (int lane = 0; lane < 32; lane++) {
                int g = lane >> 2, t = lane & 3;
                float* cc = p.F == INT4 ? c[lane] : acc[lane];
                for (int e = 0; e < 4; e++) {
                    int i = g + 8 * (e >> 1), n = 2 * t + (e & 1);
                    double dot = 0;
                    for (int k = 0; k < 16; k++) dot += A[i][k] * B[k][n];
                    cc[e] = (float)((double)cc[e] + dot);
                }
            }
        }
        if (p.F == INT4)
            for (int lane = 0; lane < 32; lane++) {
                acc[lane][0] = fmaf(c[lane][0], s0a[lane], acc[lane][0]);
                acc[lane][1] = fmaf(c[lane][1], s0a[lane], acc[lane][1]);
                acc[lane][2] = fmaf(c[lane][2], s1a[lane], acc[lane][2]);
                acc[lane][3] = fmaf(c[lane][3], s1a[lane], acc[lane][3]);
            }
    }
};

// Shared memory words of one block: who wrote or read each between which barriers.
struct Smem {
    int epoch = 0;
    std::vector<int> w_epoch, w_thread, r_epoch, r_thread; // r_thread -2: several readers
    explicit Smem(size_t words) : w_epoch(words, -1), w_thread(words), r_epoch(words, -1), r_thread(words) {}
    void sync() { epoch++; }
    void write(size_t i, int thread) {
        CHECK(i < w_epoch.size(), "shared write past the block's memory");
        CHECK(!(w_epoch[i] == epoch && w_thread[i] != thread), "write-write race on word %zu", i);
        CHECK(!(r_epoch[i] == epoch && r_thread[i] != thread), "read-write race on word %zu", i);
        w_epoch[i] = epoch, w_thread[i] = thread;
    }
    void read(size_t i, int thread) {
        CHECK(i < w_epoch.size(), "shared read past the block's memory");
        CHECK(!(w_epoch[i] == epoch && w_thread[i] != thread), "write-read race on word %zu", i);
        r_thread[i] = r_epoch[i] == epoch && r_thread[i] != thread ? -2 : thread;
        r_epoch[i] = epoch;
    }
};

struct Out {
    std::vector<float> v; // [unit][r][m]
    std::vector<int> epilogues;
    Out(const Problem& p) : v((size_t)p.units * p.RU * p.MR, NAN), epilogues(p.units, 0) {}
};
// One unit's thread: its sums ([r][m], added in warp order) scaled, into the output (the epilogue).
void epilogue(const Problem& p, int u, const float* v, Out& o) {
    o.epilogues[u]++;
    for (int r = 0; r < p.RU; r++) {
        float scale = p.F == INT4 ? 1.0f : p.scale_of(p.row(u, r), 0);
        for (int m = 0; m < p.MR; m++) o.v[((size_t)u * p.RU + r) * p.MR + m] = v[r * p.MR + m] * scale;
    }
}

// One block per tile, each warp's loads within the tile; the sums [warp][tile row][8 tokens] at once.
void tile_kernel(const Problem& p, Out& o) {
    for (int tile = 0; tile < p.tiles; tile++) {
        std::vector<float> red(WARPS * TILE * 8);
        for (int w = 0; w < WARPS; w++) {
            Warp wp(p, w, nullptr);
            int rows[32][2];
            wp.rows_of(tile, rows);
            for (int d = 0; d < DEPTH; d++)
                if (d < wp.mine) wp.load(d, rows, d, tile);
            memset(wp.acc, 0, sizeof wp.acc);
            for (int s0 = 0; s0 < wp.mine; s0 += DEPTH)
                for (int d = 0; d < DEPTH; d++) {
                    int s = s0 + d;
                    if (s >= wp.mine) break;
                    wp.step(d, tile, s, p.xs, [&] {
                        if (s + DEPTH < wp.mine) wp.load(d, rows, s + DEPTH, tile);
                    });
                }
            for (int lane = 0; lane < 32; lane++)
                for (int e = 0; e < 4; e++)
                    red[(w * TILE + (lane >> 2) + 8 * (e >> 1)) * 8 + 2 * (lane & 3) + (e & 1)] = wp.acc[lane][e];
        }
        for (int ul = 0; ul < p.UPT; ul++) {
            int u = tile * p.UPT + ul;
            if (u >= p.units) continue;
            std::vector<float> v((size_t)p.RU * p.MR);
            for (int r = 0; r < p.RU; r++) {
                int i = p.RU == 2 ? ul + 8 * r : ul;
                for (int m = 0; m < p.MR; m++) {
                    float s = 0.0f;
                    for (int w = 0; w < WARPS; w++) s += red[(w * TILE + i) * 8 + m];
                    v[r * p.MR + m] = s;
                }
            }
            epilogue(p, u, v.data(), o);
        }
    }
}

// Broken variants of grid_kernel that the checks must catch.
enum Mutation { NONE, NO_FIRST_SYNC, WRONG_NEXT_STEP, NO_NEXT_LOAD, SUMS_REVERSED };

// The kernel: block b of `grid` takes tiles b, b + grid, ...; each warp's ring runs on into its next
// tile; the sums after the staged inputs, RW warps a round.
void grid_kernel(const Problem& p, int grid, Out& o, std::vector<int>& loaded, Mutation mut = NONE) {
    const int RW = std::min(WARPS, SUMS_BYTES / (TILE * p.MR * 4));
    CHECK(RW > 0 && WARPS % RW == 0, "rounds");
    const size_t xs_words = (size_t)p.M * p.K / 2; // 32-bit words of the staged inputs
    for (int b = 0; b < grid; b++) {
        Smem sm(xs_words + SUMS_BYTES / 4);
        std::vector<float> red(SUMS_BYTES / 4, NAN);
        std::vector<Warp> warps;
        for (int w = 0; w < WARPS; w++) warps.emplace_back(p, w, &loaded);
        // Before the wait: each warp's first min(mine, DEPTH) steps of its first tile.
        for (auto& wp : warps) {
            wp.rows_of(b, wp.rows);
            for (int d = 0; d < DEPTH; d++)
                if (d < wp.mine) wp.load(d, wp.rows, d, b);
        }
        // stage(): the threads write the staged words, then a barrier.
        for (size_t i = 0; i < xs_words; i++) sm.write(i, (int)(i % 256));
        sm.sync();
        for (int tile = b; tile < p.tiles; tile += grid) {
            for (auto& wp : warps) {
                wp.rows_of(tile + grid, wp.next);
                memset(wp.acc, 0, sizeof wp.acc);
                for (int s0 = 0; s0 < wp.mine; s0 += DEPTH)
                    for (int d = 0; d < DEPTH; d++) {
                        int s = s0 + d;
                        if (s >= wp.mine) break;
                        for (int lane = 0; lane < 32; lane++) // the B fragments' shared reads
                            if ((lane >> 2) < p.M)
                                for (int j = 0; j < p.MMAS; j++) {
                                    size_t at = (size_t)(lane >> 2) * p.K + (lane & 3) * p.PER +
                                                (size_t)(wp.warp + s * WARPS) * p.SK + 4 * j;
                                    sm.read(at / 2, wp.warp * 32 + lane);
                                    sm.read(at / 2 + 1, wp.warp * 32 + lane);
                                }
                        wp.step(d, tile, s, p.xs, [&] {
                            if (s + DEPTH < wp.mine)
                                wp.load(d, wp.rows, s + DEPTH, tile);
                            else if (mut != NO_NEXT_LOAD)
                                wp.load(d, wp.next, mut == WRONG_NEXT_STEP ? (d + 1) % wp.mine : d, tile + grid);
                        });
                    }
                memcpy(wp.rows, wp.next, sizeof wp.rows);
            }
            // The rounds: barrier, RW warps write their sums, barrier, each unit's thread adds them.
            std::vector<float> v((size_t)p.UPT * p.RU * p.MR, 0.0f); // [unit of the tile][r][m]
            for (int w0 = 0; w0 < WARPS; w0 += RW) {
                if (!(mut == NO_FIRST_SYNC && w0 == 0)) sm.sync();
                for (int w = w0; w < w0 + RW; w++)
                    for (int lane = 0; lane < 32; lane++)
                        for (int e = 0; e < 4; e++) {
                            int m = 2 * (lane & 3) + (e & 1);
                            if (m >= p.MR) continue;
                            size_t i = ((size_t)(w - w0) * TILE + (lane >> 2) + 8 * (e >> 1)) * p.MR + m;
                            CHECK(i < red.size(), "sums past their buffer");
                            sm.write(xs_words + i, w * 32 + lane);
                            red[i] = warps[w].acc[lane][e];
                        }
                sm.sync();
                for (int ul = 0; ul < p.UPT && tile * p.UPT + ul < p.units; ul++)
                    for (int r = 0; r < p.RU; r++) {
                        int i = p.RU == 2 ? ul + 8 * r : ul;
                        for (int m = 0; m < p.MR; m++)
                            for (int w = 0; w < RW; w++) {
                                int wr = mut == SUMS_REVERSED ? RW - 1 - w : w;
                                size_t at = (size_t)(wr * TILE + i) * p.MR + m;
                                sm.read(xs_words + at, ul);
                                v[((size_t)ul * p.RU + r) * p.MR + m] += red[at];
                            }
                    }
            }
            for (int ul = 0; ul < p.UPT && tile * p.UPT + ul < p.units; ul++)
                epilogue(p, tile * p.UPT + ul, &v[(size_t)ul * p.RU * p.MR], o);
        }
    }
}

bool same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

// Every port and grid on one problem; returns the number of runs.
int check(const Problem& p, bool exact, Mutation mut = NONE) {
    // The plain dot product.
    std::vector<double> ref((size_t)p.units * p.RU * p.MR, 0), mag(ref.size(), 0);
    for (int u = 0; u < p.units; u++)
        for (int r = 0; r < p.RU; r++)
            for (int m = 0; m < p.M; m++) {
                int n = p.row(u, r);
                double s = 0, a = 0;
                for (int k = 0; k < p.K; k++) {
                    double term = p.code(n, k) * p.scale_of(n, k / p.PER) * f16v(p.x[m * p.K + k]);
                    s += term, a += fabs(term);
                }
                ref[((size_t)u * p.RU + r) * p.MR + m] = s, mag[((size_t)u * p.RU + r) * p.MR + m] = a;
            }
    Out base(p);
    tile_kernel(p, base);
    std::vector<int> grids = {1, 2, 3, 5, p.tiles - 1, p.tiles};
    int runs = 1;
    for (int grid : grids) {
        if (grid < 1 || grid > p.tiles) continue;
        Out o(p);
        std::vector<int> loaded((size_t)p.tiles * p.STEPS * 32 * 2, 0);
        grid_kernel(p, grid, o, loaded, mut);
        runs++;
        const char* what = p.F == INT8 ? "int8" : p.F == INT4 ? "int4" : "fp8";
        for (int u = 0; u < p.units; u++) CHECK(o.epilogues[u] == 1, "unit %d: %d epilogues", u, o.epilogues[u]);
        // Each valid (tile, step, lane, h) vector exactly once.
        Warp probe(p, 0, nullptr);
        for (int tile = 0; tile < p.tiles; tile++) {
            int rows[32][2];
            probe.rows_of(tile, rows);
            for (int st = 0; st < p.STEPS; st++)
                for (int lane = 0; lane < 32; lane++)
                    for (int h = 0; h < 2; h++) {
                        int n = loaded[((size_t)(tile * p.STEPS + st) * 32 + lane) * 2 + h];
                        CHECK(n == (rows[lane][h] >= 0 ? 1 : 0), "%s grid %d tile %d step %d: loaded %d times",
                              what, grid, tile, st, n);
                    }
        }
        for (int u = 0; u < p.units; u++)
            for (int r = 0; r < p.RU; r++)
                for (int m = 0; m < p.M; m++) {
                    size_t i = ((size_t)u * p.RU + r) * p.MR + m;
                    float got = o.v[i];
                    CHECK(same_bits(got, base.v[i]), "%s kind %d K %d M %d grid %d unit %d r %d m %d: %.9g, one block per tile %.9g",
                          what, p.KIND, p.K, p.M, grid, u, r, m, got, base.v[i]);
                    if (exact)
                        CHECK(got == ref[i], "%s kind %d K %d M %d grid %d unit %d: %.9g, dot product %.9g", what,
                              p.KIND, p.K, p.M, grid, u, got, ref[i]);
                    else
                        CHECK(fabs(got - ref[i]) <= 1e-5 * mag[i] + 1e-30, "%s K %d unit %d: %.9g, dot product %.9g",
                              what, p.K, u, got, ref[i]);
                }
    }
    return runs;
}

int main() {
    std::mt19937 rng(7);
    int runs = 0, problems = 0;
    struct Shape {
        int KIND, units, head_dim, inter;
    };
    // (kind, units, head size, intermediate): ROPE_PAIR over 7 heads of 16 (56 units, 7 tiles) and
    // 3 heads of 64; GATE_UP_PAIR with 40 and 37 features (a partial last tile); SINGLE with 40, 37.
    const Shape shapes[] = {{ROPE_PAIR, 56, 16, 0}, {ROPE_PAIR, 96, 64, 0}, {GATE_UP_PAIR, 40, 0, 40},
                            {GATE_UP_PAIR, 37, 0, 37}, {SINGLE, 40, 0, 0}, {SINGLE, 37, 0, 0}};
    for (int F : {INT8, INT4, FP8}) {
        std::vector<int> widths = F == INT4 ? std::vector<int>{128, 384, 1024, 2048, 3072, 4096, 8192}
                                            : std::vector<int>{64, 448, 896, 1536, 2048, 4096};
        for (int K : widths)
            for (int M : {1, 3, 8})
                for (const Shape& s : shapes)
                    for (bool exact : {true, false}) {
                        // The widest rows on one shape only (the emulation is slow).
                        if (K >= 4096 && !(s.KIND == SINGLE && s.units == 37) && !(s.KIND == GATE_UP_PAIR && s.units == 37))
                            continue;
                        int MR = M == 1 ? 1 : 8;
                        Problem p = make(F, s.KIND, K, s.units, M, MR, s.head_dim, s.inter, exact, rng);
                        runs += check(p, exact);
                        problems++;
                    }
    }
    // The widest down projection of the models here (Llama-3.1-8B: 14336 int4 inputs, 14 steps a warp).
    for (int M : {1, 8}) {
        Problem p = make(INT4, SINGLE, 14336, 37, M, M == 1 ? 1 : 8, 0, 0, true, rng);
        runs += check(p, true);
        problems++;
    }
    int real_fails = fails;
    printf("%d problems, %d kernel runs, %d failures\n", problems, runs, real_fails);
    // The checks catch broken kernels: a round without its first barrier, a ring slot loaded with
    // another step or not loaded for the next tile, the sums of a round added in another order.
    quiet = true;
    const char* names[] = {"", "no first barrier", "wrong next step", "no next-tile load", "sums reversed"};
    for (Mutation mut : {NO_FIRST_SYNC, WRONG_NEXT_STEP, NO_NEXT_LOAD, SUMS_REVERSED}) {
        fails = 0;
        bool exact = mut != SUMS_REVERSED; // reordered sums differ in bits, not in exact values
        Problem p = make(INT8, SINGLE, 448, 37, 3, 8, 0, 0, exact, rng);
        check(p, exact, mut);
        Problem q = make(INT4, SINGLE, 2048, 37, 8, 8, 0, 0, exact, rng);
        check(q, exact, mut);
        printf("broken variant (%s): %s\n", names[mut], fails ? "caught" : "NOT CAUGHT");
        if (!fails) real_fails++;
    }
    return real_fails != 0;
}
