/*
 * Spike for issue #11, route 2: convolution as batch-level im2col + a register-blocked SGEMM, in
 * freestanding C compiled to wasm32 with SIMD128 (build.sh). Not part of the product: it measures
 * how far hand-written WebAssembly kernels get against XNNPACK (tfjs-backend-wasm) and oneDNN.
 *
 * C[M,N] = act(A[M,K] · B[K,N] + bias[N]), all row-major float32. With -DRELAXED every
 * multiply-add is one f32x4.relaxed_madd (an FMA on x64 when V8 enables relaxed SIMD), otherwise
 * f32x4.mul then f32x4.add.
 *
 * Blocking: B (the filter, small) is packed per call into panels of NR = 4·NV columns, zero-padded,
 * [panel][k][NR]; the bias likewise. A is read in place (the im2col rows), MR rows at a time, one
 * v128.load32_splat per row and k. The micro-kernel keeps MR×NV f32x4 accumulators in registers
 * (x64 has 16 xmm registers; V8 keeps one or two for itself), starts them at the bias and applies
 * ReLU before its one store. Loop order: row tiles outer, column panels inner, so an MR×K slice of A
 * stays in L1 while the packed B (K·N floats, ≤ 147 KiB for our shapes) stays in L2.
 */
#include <stdint.h>
#include <wasm_simd128.h>

typedef float f32;

extern unsigned char __heap_base;

/* First free byte after the module's static data and stack; JavaScript allocates from here. */
__attribute__((export_name("heap_base"))) uint32_t heap_base(void) { return (uint32_t)(uintptr_t)&__heap_base; }

#ifdef RELAXED
#define MADD(a, b, c) __builtin_wasm_relaxed_madd_f32x4((a), (b), (c))
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul((a), (b)), (c))
#endif

/*
 * Copies n floats; a v128 loop rather than memory.copy, which V8 runs out of line. A tail of 1–3
 * floats is one more v128 ending at n (overlapping what was just written), not a scalar loop.
 */
static inline void copy_floats(f32 *restrict dst, const f32 *restrict src, int n) {
  if (n < 4) {
    for (int i = 0; i < n; i++) dst[i] = src[i];
    return;
  }
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dst + i, wasm_v128_load(src + i));
  if (i < n) wasm_v128_store(dst + n - 4, wasm_v128_load(src + n - 4));
}

/* Bp[(p·K + k)·NR + j] = B[k·N + p·NR + j], zero past N; biasp[p·NR + j] likewise (0 without bias). */
static void pack_b(const f32 *B, const f32 *bias, f32 *Bp, f32 *biasp, int K, int N, int NR) {
  int panels = (N + NR - 1) / NR;
  for (int p = 0; p < panels; p++) {
    int cols = N - p * NR < NR ? N - p * NR : NR;
    for (int k = 0; k < K; k++) {
      f32 *dst = Bp + ((long)p * K + k) * NR;
      const f32 *src = B + (long)k * N + p * NR;
      if (cols == NR) /* v128 copies: B is large in the filter gradient (dY, K = n·ho·wo rows) */
        for (int j = 0; j < NR; j += 4) wasm_v128_store(dst + j, wasm_v128_load(src + j));
      else
        for (int j = 0; j < NR; j++) dst[j] = j < cols ? src[j] : 0.0f;
    }
    for (int j = 0; j < NR; j++) biasp[p * NR + j] = bias != 0 && j < cols ? bias[p * NR + j] : 0.0f;
  }
}

/*
 * One MR×(4·NV) tile: C[r, 0..cols) for r < MR. A has leading dimension lda, C ldc. The loops over
 * r and v have constant trip counts and unroll fully at -O3, so acc lives in registers. The three
 * parts are macros because the K-blocked kernel below shares two of them. ReLU uses pmax, one maxps
 * on x64; f32x4.max's NaN rules cost V8 several instructions.
 */
#define INIT_FROM_BIAS(MR, NV)                                                                         \
  _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++) {                                    \
    v128_t b0 = wasm_v128_load(biasp + 4 * v);                                                         \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) acc[r][v] = b0;                    \
  }

#define MULTIPLY_ACCUMULATE(MR, NV)                                                                    \
  for (int k = 0; k < K; k++) {                                                                        \
    v128_t b[NV];                                                                                      \
    _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++)                                    \
        b[v] = wasm_v128_load(Bp + k * 4 * NV + 4 * v);                                                \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {                                  \
      v128_t a = wasm_v128_load32_splat(A + r * lda + k);                                              \
      _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++)                                  \
          acc[r][v] = MADD(a, b[v], acc[r][v]);                                                        \
    }                                                                                                  \
  }

#define RELU_AND_STORE(MR, NV)                                                                         \
  if (relu) {                                                                                          \
    v128_t zero = wasm_f32x4_splat(0.0f);                                                              \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++)                                    \
        _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++)                                \
            acc[r][v] = wasm_f32x4_pmax(zero, acc[r][v]);                                              \
  }                                                                                                    \
  if (cols == 4 * NV) {                                                                                \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++)                                    \
        _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++)                                \
            wasm_v128_store(C + r * ldc + 4 * v, acc[r][v]);                                           \
  } else {                                                                                             \
    f32 tile[MR][4 * NV];                                                                              \
    for (int r = 0; r < MR; r++)                                                                       \
      for (int v = 0; v < NV; v++) wasm_v128_store(&tile[r][4 * v], acc[r][v]);                        \
    for (int r = 0; r < MR; r++)                                                                       \
      for (int j = 0; j < cols; j++) C[r * ldc + j] = tile[r][j];                                      \
  }

#define DEFINE_KERNEL(MR, NV)                                                                          \
  static void kernel_##MR##x##NV(int K, const f32 *restrict A, int lda, const f32 *restrict Bp,        \
                                 const f32 *restrict biasp, f32 *restrict C, int ldc, int cols,        \
                                 int relu) {                                                           \
    v128_t acc[MR][NV];                                                                                \
    INIT_FROM_BIAS(MR, NV)                                                                             \
    MULTIPLY_ACCUMULATE(MR, NV)                                                                        \
    RELU_AND_STORE(MR, NV)                                                                             \
  }

/*
 * gemm_MRxNR(M, N, K, A, B, bias, C, relu, scratch): bias may be 0 (none). scratch needs
 * panels·K·NR + panels·NR + MR·K + MR·N floats. The last M mod MR rows go through a zero-padded
 * copy in scratch, so A and C need exactly M rows.
 */
#define DEFINE_GEMM(MR, NV)                                                                            \
  DEFINE_KERNEL(MR, NV)                                                                                 \
  __attribute__((export_name("gemm_" #MR "x" #NV))) void gemm_##MR##x##NV(                             \
      int M, int N, int K, const f32 *A, const f32 *B, const f32 *bias, f32 *C, int relu,             \
      f32 *scratch) {                                                                                   \
    const int NR = 4 * NV;                                                                              \
    int panels = (N + NR - 1) / NR;                                                                     \
    f32 *Bp = scratch, *biasp = Bp + (long)panels * K * NR;                                             \
    f32 *tileA = biasp + panels * NR, *tileC = tileA + MR * K;                                          \
    pack_b(B, bias, Bp, biasp, K, N, NR);                                                               \
    int full = M - M % MR;                                                                              \
    for (int i = 0; i < full; i += MR)                                                                  \
      for (int p = 0; p < panels; p++)                                                                  \
        kernel_##MR##x##NV(K, A + (long)i * K, K, Bp + (long)p * K * NR, biasp + p * NR,              \
                           C + (long)i * N + p * NR, N, N - p * NR < NR ? N - p * NR : NR, relu);      \
    int rest = M - full;                                                                                \
    if (rest == 0) return;                                                                              \
    for (int r = 0; r < MR; r++)                                                                        \
      for (int k = 0; k < K; k++) tileA[r * K + k] = r < rest ? A[(long)(full + r) * K + k] : 0.0f;   \
    for (int p = 0; p < panels; p++)                                                                    \
      kernel_##MR##x##NV(K, tileA, K, Bp + (long)p * K * NR, biasp + p * NR, tileC + p * NR, N,       \
                         N - p * NR < NR ? N - p * NR : NR, relu);                                      \
    for (int r = 0; r < rest; r++) copy_floats(C + (long)(full + r) * N, tileC + r * N, N);            \
  }

/* NR = 8: 4, 5 and 6 rows (8, 10, 12 accumulators); NR = 16: 2 and 3 rows (8, 12). */
DEFINE_GEMM(4, 2)
DEFINE_GEMM(5, 2)
DEFINE_GEMM(6, 2)
DEFINE_GEMM(8, 2)
DEFINE_GEMM(2, 4)
DEFINE_GEMM(3, 4)
DEFINE_GEMM(4, 4)

/*
 * K-blocked GEMM for the long reductions of training (filter gradients: K = n·ho·wo, up to 28,800;
 * Dense layers: K = 3072): the same micro-kernel, but K is cut into blocks of KC so that an MR×KC
 * slice of A stays in L1 and a KC×N block of packed B in L2. Blocks after the first start their
 * accumulators from C instead of the bias; ReLU is applied after the last.
 */
#define DEFINE_KERNEL_ACC(MR, NV)                                                                      \
  static void kacc_##MR##x##NV(int K, const f32 *restrict A, int lda, const f32 *restrict Bp,          \
                               const f32 *restrict biasp, f32 *restrict C, int ldc, int cols, int first,\
                               int relu) {                                                             \
    v128_t acc[MR][NV];                                                                                \
    if (first) {                                                                                       \
      INIT_FROM_BIAS(MR, NV)                                                                           \
    } else if (cols == 4 * NV) {                                                                       \
      _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++)                                  \
          _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++)                              \
              acc[r][v] = wasm_v128_load(C + r * ldc + 4 * v);                                         \
    } else {                                                                                           \
      f32 tile[MR][4 * NV];                                                                            \
      for (int r = 0; r < MR; r++)                                                                     \
        for (int j = 0; j < 4 * NV; j++) tile[r][j] = j < cols ? C[r * ldc + j] : 0.0f;                \
      for (int r = 0; r < MR; r++)                                                                     \
        for (int v = 0; v < NV; v++) acc[r][v] = wasm_v128_load(&tile[r][4 * v]);                      \
    }                                                                                                  \
    MULTIPLY_ACCUMULATE(MR, NV)                                                                        \
    RELU_AND_STORE(MR, NV)                                                                             \
  }

/* gemmk_MRxNV(M, N, K, A, B, bias, C, relu, scratch, KC): as gemm_MRxNV, K in blocks of KC. */
#define DEFINE_GEMMK(MR, NV)                                                                           \
  DEFINE_KERNEL_ACC(MR, NV)                                                                             \
  __attribute__((export_name("gemmk_" #MR "x" #NV))) void gemmk_##MR##x##NV(                           \
      int M, int N, int K, const f32 *A, const f32 *B, const f32 *bias, f32 *C, int relu, f32 *scratch, \
      int KC) {                                                                                         \
    const int NR = 4 * NV;                                                                              \
    int panels = (N + NR - 1) / NR;                                                                     \
    f32 *Bp = scratch, *biasp = Bp + (long)panels * K * NR;                                             \
    f32 *tileA = biasp + panels * NR, *tileC = tileA + MR * K;                                          \
    pack_b(B, bias, Bp, biasp, K, N, NR);                                                               \
    int full = M - M % MR, rest = M - full;                                                             \
    for (int k0 = 0; k0 < K; k0 += KC) {                                                                \
      int kc = K - k0 < KC ? K - k0 : KC, first = k0 == 0, act = relu && k0 + kc == K;                 \
      for (int i = 0; i < full; i += MR)                                                                \
        for (int p = 0; p < panels; p++)                                                                \
          kacc_##MR##x##NV(kc, A + (long)i * K + k0, K, Bp + ((long)p * K + k0) * NR, biasp + p * NR,  \
                           C + (long)i * N + p * NR, N, N - p * NR < NR ? N - p * NR : NR, first, act); \
      if (rest == 0) continue;                                                                          \
      for (int r = 0; r < MR; r++)                                                                      \
        for (int k = 0; k < kc; k++) tileA[r * kc + k] = r < rest ? A[(long)(full + r) * K + k0 + k] : 0.0f; \
      for (int p = 0; p < panels; p++)                                                                  \
        kacc_##MR##x##NV(kc, tileA, kc, Bp + ((long)p * K + k0) * NR, biasp + p * NR, tileC + p * NR, N, \
                         N - p * NR < NR ? N - p * NR : NR, first, act);                                \
    }                                                                                                   \
    for (int r = 0; r < rest; r++) copy_floats(C + (long)(full + r) * N, tileC + r * N, N);            \
  }

DEFINE_GEMMK(4, 2)
DEFINE_GEMMK(2, 4)

/*
 * Batch-level im2col for a stride-1, unpadded ("valid") NHWC convolution:
 * A[(b·Ho + oy)·Wo + ox, (ky·kw + kx)·C + c] = x[b, oy + ky, ox + kx, c]. With the filter in tfjs's
 * [kh, kw, Cin, Cout] layout as B = [K, Cout], the convolution is then one GEMM. Each (row, ky) is
 * one contiguous run of kw·C floats in x.
 */
__attribute__((export_name("im2col_nhwc"))) void im2col_nhwc(const f32 *x, f32 *A, int n, int h, int w, int c,
                                                             int kh, int kw) {
  int ho = h - kh + 1, wo = w - kw + 1, run = kw * c, K = kh * run;
  for (int b = 0; b < n; b++)
    for (int oy = 0; oy < ho; oy++)
      for (int ox = 0; ox < wo; ox++) {
        f32 *row = A + ((long)(b * ho + oy) * wo + ox) * K;
        for (int ky = 0; ky < kh; ky++) copy_floats(row + ky * run, x + ((long)(b * h + oy + ky) * w + ox) * c, run);
      }
}

/*
 * Clock probe: n iterations of 32 dependent single-cycle integer operations (xor, add), so
 * 32·n cycles; bench.ts divides by the CPU time to get the clock the core actually runs at (the
 * VM reports its nominal 2.6 GHz; the core boosts).
 */
__attribute__((export_name("clock_probe"))) int clock_probe(int n, int y, int z) {
  int x = n;
  for (int i = 0; i < n; i++) {
#define STEP x = (x ^ y) + z;
    STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP
#undef STEP
  }
  return x;
}

/*
 * The same convolution without the M×K patch matrix: for each tile of MR output positions, gather
 * their patches into an MR×K buffer (L1-resident: ≤ 9 KiB for our shapes) and run the micro-kernel
 * over every column panel from there. The copying is im2col's, but nothing goes to memory and back.
 * conv_MRxNV(x, filter, bias, y, relu, n, h, w, c, kh, kw, cout, scratch); stride 1, valid;
 * filter [kh, kw, c, cout]; scratch as gemm's with M = n·ho·wo, K = kh·kw·c, N = cout.
 */
static void gather_rows(const f32 *x, f32 *tile, int first, int rows, int MR, int h, int w, int c, int kh, int kw,
                        int ho, int wo) {
  int run = kw * c, K = kh * run, plane = ho * wo;
  for (int r = 0; r < MR; r++) {
    f32 *row = tile + r * K;
    if (r >= rows) {
      for (int k = 0; k < K; k++) row[k] = 0.0f;
      continue;
    }
    int m = first + r, b = m / plane, oy = (m % plane) / wo, ox = m % wo;
    for (int ky = 0; ky < kh; ky++) copy_floats(row + ky * run, x + ((long)(b * h + oy + ky) * w + ox) * c, run);
  }
}

#define DEFINE_CONV(MR, NV)                                                                            \
  __attribute__((export_name("conv_" #MR "x" #NV))) void conv_##MR##x##NV(                             \
      const f32 *x, const f32 *filter, const f32 *bias, f32 *y, int relu, int n, int h, int w, int c,   \
      int kh, int kw, int N, f32 *scratch) {                                                            \
    const int NR = 4 * NV;                                                                              \
    int ho = h - kh + 1, wo = w - kw + 1, M = n * ho * wo, K = kh * kw * c;                            \
    int panels = (N + NR - 1) / NR;                                                                     \
    f32 *Bp = scratch, *biasp = Bp + (long)panels * K * NR;                                             \
    f32 *tileA = biasp + panels * NR, *tileC = tileA + MR * K;                                          \
    pack_b(filter, bias, Bp, biasp, K, N, NR);                                                          \
    for (int i = 0; i < M; i += MR) {                                                                   \
      int rows = M - i < MR ? M - i : MR;                                                               \
      gather_rows(x, tileA, i, rows, MR, h, w, c, kh, kw, ho, wo);                                      \
      f32 *out = rows == MR ? y + (long)i * N : tileC;                                                  \
      for (int p = 0; p < panels; p++)                                                                  \
        kernel_##MR##x##NV(K, tileA, K, Bp + (long)p * K * NR, biasp + p * NR, out + p * NR, N,        \
                           N - p * NR < NR ? N - p * NR : NR, relu);                                    \
      if (rows < MR)                                                                                    \
        for (int r = 0; r < rows; r++) copy_floats(y + (long)(i + r) * N, tileC + r * N, N);           \
    }                                                                                                   \
  }

DEFINE_CONV(4, 2)
DEFINE_CONV(2, 4)
DEFINE_CONV(4, 4)
DEFINE_CONV(6, 2)
