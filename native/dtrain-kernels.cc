// dtrain's optional native kernels: oneDNN (the library PyTorch's CPU convolutions use) computing
// in place on the tfjs wasm backend's heap. JavaScript passes the heap's ArrayBuffer and byte
// offsets of inputs and outputs, already allocated by the wasm backend; nothing is copied.
//
// Every function checks its arguments' count and that every operand lies inside the heap, and
// throws a JavaScript Error otherwise. Convolution primitives are created once per shape and
// cached per thread (each Node worker thread has its own wasm heap and its own cache). Pooling
// and BatchNorm are plain loops, compiled for AVX-512, AVX2 and generic x86-64 and chosen at load
// time (target_clones), like oneDNN's own dispatch.
#include <node_api.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

#if defined(__x86_64__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
  napi_env env;
  std::vector<napi_value> v;
  uint8_t* heap = nullptr;
  size_t heapBytes = 0;
};

// Exactly `expected` arguments, or a JavaScript error naming the function.
std::vector<napi_value> exactArgs(napi_env env, napi_callback_info info, size_t expected, const char* name) {
  std::vector<napi_value> v(expected + 1);
  size_t argc = expected + 1;
  napi_get_cb_info(env, info, &argc, v.data(), nullptr, nullptr);
  if (argc != expected) {
    throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(expected) + " arguments, got " + std::to_string(argc));
  }
  return v;
}

Args readArgs(napi_env env, napi_callback_info info, size_t expected, const char* name) {
  Args a{env, exactArgs(env, info, expected, name)};
  bool isBuffer = false;
  napi_is_arraybuffer(env, a.v[0], &isBuffer);
  if (!isBuffer) throw std::invalid_argument(std::string(name) + ": argument 0 must be the wasm heap's ArrayBuffer");
  void* data = nullptr;
  napi_get_arraybuffer_info(env, a.v[0], &data, &a.heapBytes);
  a.heap = static_cast<uint8_t*>(data);
  return a;
}

int64_t intArg(const Args& a, size_t i) {
  double d = 0;
  if (napi_get_value_double(a.env, a.v[i], &d) != napi_ok || !std::isfinite(d) || d != std::floor(d)) {
    throw std::invalid_argument("argument " + std::to_string(i) + " must be an integer");
  }
  return static_cast<int64_t>(d);
}

// A float32 operand of `count` values at byte offset argument i; offset −1 means "absent".
float* f32Arg(const Args& a, size_t i, int64_t count, bool optional = false) {
  int64_t off = intArg(a, i);
  if (optional && off < 0) return nullptr;
  if (off < 0 || off % 4 != 0 || count < 0 || static_cast<uint64_t>(off) + static_cast<uint64_t>(count) * 4 > a.heapBytes) {
    throw std::out_of_range("operand at argument " + std::to_string(i) + " (byte offset " + std::to_string(off) + ", " + std::to_string(count) +
                            " floats) lies outside the wasm heap of " + std::to_string(a.heapBytes) + " bytes");
  }
  return reinterpret_cast<float*>(a.heap + off);
}

napi_value undefinedValue(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value numberValue(napi_env env, double d) {
  napi_value out;
  napi_create_double(env, d, &out);
  return out;
}

// Runs f, turning a C++ exception into a JavaScript error (DTRAIN_ERR_NATIVE_KERNEL). Returns what f
// returns (a napi_value), or undefined when f returns nothing or throws.
template <typename F>
napi_value guarded(napi_env env, F&& f) {
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<F>>) f();
    else return f();
  } catch (const dnnl::error& e) {
    napi_throw_error(env, "DTRAIN_ERR_NATIVE_KERNEL", (std::string("oneDNN: ") + e.what() + " (status " + std::to_string(e.status) + ")").c_str());
  } catch (const std::exception& e) {
    napi_throw_error(env, "DTRAIN_ERR_NATIVE_KERNEL", e.what());
  }
  return undefinedValue(env);
}

// ---------------------------------------------------------------------------------------------
// oneDNN state, one per thread

struct Dnnl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

Dnnl& dnnlState() {
  thread_local Dnnl state;
  return state;
}

// A convolution's geometry, NHWC activations and [kh,kw,Cin,Cout] (hwio) filters.
struct ConvShape {
  int64_t n, h, w, cin, ho, wo, cout, kh, kw, sh, sw, top, left, bottom, right;
  std::string key(const char* kind, int64_t extra) const {
    std::string k(kind);
    for (int64_t v : {n, h, w, cin, ho, wo, cout, kh, kw, sh, sw, top, left, bottom, right, extra}) k += "," + std::to_string(v);
    return k;
  }
  memory::desc src(tag t = tag::nhwc) const { return {{n, cin, h, w}, dt::f32, t}; }
  memory::desc dst(tag t = tag::nhwc) const { return {{n, cout, ho, wo}, dt::f32, t}; }
  memory::desc weights(tag t) const { return {{cout, cin, kh, kw}, dt::f32, t}; }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims padL() const { return {top, left}; }
  memory::dims padR() const { return {bottom, right}; }
};

ConvShape convArgs(const Args& a, size_t first) {
  ConvShape s;
  int64_t* f[] = {&s.n, &s.h, &s.w, &s.cin, &s.ho, &s.wo, &s.cout, &s.kh, &s.kw, &s.sh, &s.sw, &s.top, &s.left, &s.bottom, &s.right};
  for (size_t i = 0; i < 15; i++) *f[i] = intArg(a, first + i);
  for (int64_t v : {s.n, s.h, s.w, s.cin, s.ho, s.wo, s.cout, s.kh, s.kw, s.sh, s.sw}) {
    if (v < 1) throw std::invalid_argument("convolution sizes and strides must be positive");
  }
  return s;
}

dnnl::convolution_forward::primitive_desc forwardDesc(const ConvShape& s, bool bias, bool relu, const dnnl::engine& eng) {
  auto d = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, s.src(), s.weights(tag::any),
                                                  memory::desc({s.cout}, dt::f32, tag::x), s.dst(), s.strides(), s.padL(), s.padR())
                : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, s.src(), s.weights(tag::any),
                                                  s.dst(), s.strides(), s.padL(), s.padR());
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return {d, attr, eng};
}

// The filter as tfjs stores it ([kh,kw,Cin,Cout]) and as the primitive wants it: a reorder
// between the two when the primitive chose a blocked layout, made once.
struct FilterLayout {
  memory user;
  memory inner;
  dnnl::reorder toInner, toUser;
  bool same = true;
  FilterLayout(const ConvShape& s, const memory::desc& wanted, const dnnl::engine& eng, bool intoUser) {
    user = memory(s.weights(tag::hwio), eng, DNNL_MEMORY_NONE);
    same = wanted == user.get_desc();
    if (same) return;
    inner = memory(wanted, eng);
    if (intoUser) toUser = dnnl::reorder(inner, user);
    else toInner = dnnl::reorder(user, inner);
  }
};

struct ConvForward {
  dnnl::convolution_forward prim;
  memory src, dst, bias;
  std::unique_ptr<FilterLayout> filter;
  std::string impl;
};

struct ConvBackwardData {
  dnnl::convolution_backward_data prim;
  memory diffDst, diffSrc;
  std::unique_ptr<FilterLayout> filter;
  std::string impl;
};

struct ConvBackwardWeights {
  dnnl::convolution_backward_weights prim;
  memory src, diffDst;
  std::unique_ptr<FilterLayout> filter;
  std::string impl;
};

template <typename T>
using Cache = std::unordered_map<std::string, std::unique_ptr<T>>;

std::string lastImpl;  // the implementation oneDNN chose for the latest new primitive, for info()

ConvForward& convForward(const ConvShape& s, bool bias, bool relu) {
  thread_local Cache<ConvForward> cache;
  auto& slot = cache[s.key("f", bias * 2 + relu)];
  if (slot) return *slot;
  auto& st = dnnlState();
  auto pd = forwardDesc(s, bias, relu, st.engine);
  auto c = std::make_unique<ConvForward>();
  c->prim = dnnl::convolution_forward(pd);
  c->src = memory(s.src(), st.engine, DNNL_MEMORY_NONE);
  c->dst = memory(s.dst(), st.engine, DNNL_MEMORY_NONE);
  if (bias) c->bias = memory({{s.cout}, dt::f32, tag::x}, st.engine, DNNL_MEMORY_NONE);
  c->filter = std::make_unique<FilterLayout>(s, pd.weights_desc(), st.engine, false);
  c->impl = lastImpl = pd.impl_info_str();
  slot = std::move(c);
  return *slot;
}

ConvBackwardData& convBackwardData(const ConvShape& s) {
  thread_local Cache<ConvBackwardData> cache;
  auto& slot = cache[s.key("d", 0)];
  if (slot) return *slot;
  auto& st = dnnlState();
  auto hint = forwardDesc(s, false, false, st.engine);
  dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, s.src(), s.weights(tag::any), s.dst(), s.strides(), s.padL(), s.padR());
  dnnl::convolution_backward_data::primitive_desc pd(d, st.engine, hint);
  auto c = std::make_unique<ConvBackwardData>();
  c->prim = dnnl::convolution_backward_data(pd);
  c->diffDst = memory(s.dst(), st.engine, DNNL_MEMORY_NONE);
  c->diffSrc = memory(s.src(), st.engine, DNNL_MEMORY_NONE);
  c->filter = std::make_unique<FilterLayout>(s, pd.weights_desc(), st.engine, false);
  c->impl = lastImpl = pd.impl_info_str();
  slot = std::move(c);
  return *slot;
}

ConvBackwardWeights& convBackwardWeights(const ConvShape& s) {
  thread_local Cache<ConvBackwardWeights> cache;
  auto& slot = cache[s.key("w", 0)];
  if (slot) return *slot;
  auto& st = dnnlState();
  auto hint = forwardDesc(s, false, false, st.engine);
  dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, s.src(), s.weights(tag::any), s.dst(), s.strides(), s.padL(), s.padR());
  dnnl::convolution_backward_weights::primitive_desc pd(d, st.engine, hint);
  auto c = std::make_unique<ConvBackwardWeights>();
  c->prim = dnnl::convolution_backward_weights(pd);
  c->src = memory(s.src(), st.engine, DNNL_MEMORY_NONE);
  c->diffDst = memory(s.dst(), st.engine, DNNL_MEMORY_NONE);
  c->filter = std::make_unique<FilterLayout>(s, pd.diff_weights_desc(), st.engine, true);
  c->impl = lastImpl = pd.impl_info_str();
  slot = std::move(c);
  return *slot;
}

// conv2d(heap, x, filter, bias|-1, y, relu, ...15 sizes): y = relu?(conv(x, filter) + bias)
napi_value Conv2D(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 21, "conv2d");
    ConvShape s = convArgs(a, 6);
    float* x = f32Arg(a, 1, s.n * s.h * s.w * s.cin);
    float* w = f32Arg(a, 2, s.kh * s.kw * s.cin * s.cout);
    float* b = f32Arg(a, 3, s.cout, true);
    float* y = f32Arg(a, 4, s.n * s.ho * s.wo * s.cout);
    bool relu = intArg(a, 5) != 0;
    auto& c = convForward(s, b != nullptr, relu);
    auto& st = dnnlState();
    c.src.set_data_handle(x);
    c.dst.set_data_handle(y);
    c.filter->user.set_data_handle(w);
    if (!c.filter->same) c.filter->toInner.execute(st.stream, c.filter->user, c.filter->inner);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, c.src}, {DNNL_ARG_WEIGHTS, c.filter->same ? c.filter->user : c.filter->inner}, {DNNL_ARG_DST, c.dst}};
    if (b) {
      c.bias.set_data_handle(b);
      args[DNNL_ARG_BIAS] = c.bias;
    }
    c.prim.execute(st.stream, args);
    st.stream.wait();
  });
}

// conv2dBackpropInput(heap, dy, filter, dx, ...15 sizes)
napi_value Conv2DBackpropInput(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 19, "conv2dBackpropInput");
    ConvShape s = convArgs(a, 4);
    float* dy = f32Arg(a, 1, s.n * s.ho * s.wo * s.cout);
    float* w = f32Arg(a, 2, s.kh * s.kw * s.cin * s.cout);
    float* dx = f32Arg(a, 3, s.n * s.h * s.w * s.cin);
    auto& c = convBackwardData(s);
    auto& st = dnnlState();
    c.diffDst.set_data_handle(dy);
    c.diffSrc.set_data_handle(dx);
    c.filter->user.set_data_handle(w);
    if (!c.filter->same) c.filter->toInner.execute(st.stream, c.filter->user, c.filter->inner);
    c.prim.execute(st.stream, {{DNNL_ARG_DIFF_DST, c.diffDst}, {DNNL_ARG_WEIGHTS, c.filter->same ? c.filter->user : c.filter->inner}, {DNNL_ARG_DIFF_SRC, c.diffSrc}});
    st.stream.wait();
  });
}

// conv2dBackpropFilter(heap, x, dy, dw, ...15 sizes)
napi_value Conv2DBackpropFilter(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 19, "conv2dBackpropFilter");
    ConvShape s = convArgs(a, 4);
    float* x = f32Arg(a, 1, s.n * s.h * s.w * s.cin);
    float* dy = f32Arg(a, 2, s.n * s.ho * s.wo * s.cout);
    float* dw = f32Arg(a, 3, s.kh * s.kw * s.cin * s.cout);
    auto& c = convBackwardWeights(s);
    auto& st = dnnlState();
    c.src.set_data_handle(x);
    c.diffDst.set_data_handle(dy);
    c.filter->user.set_data_handle(dw);
    c.prim.execute(st.stream, {{DNNL_ARG_SRC, c.src}, {DNNL_ARG_DIFF_DST, c.diffDst}, {DNNL_ARG_DIFF_WEIGHTS, c.filter->same ? c.filter->user : c.filter->inner}});
    if (!c.filter->same) c.filter->toUser.execute(st.stream, c.filter->inner, c.filter->user);
    st.stream.wait();
  });
}

// ---------------------------------------------------------------------------------------------
// Matrix products: oneDNN's matmul primitive, transposes as strides (nothing copied), bias and
// relu fused. Not dnnl_sgemm: its JIT kernels corrupt the heap when a signal lands mid-call (seen
// with Node's --cpu-prof, whose SIGPROF samples every millisecond); the primitive does not.

struct MatMulPrim {
  dnnl::matmul prim;
  memory a, b, c, bias;
};

// A row-major [batch, rows, cols] operand stored as written, or as its transpose.
memory::desc matrixDesc(int64_t batch, int64_t rows, int64_t cols, bool transposed) {
  memory::dims strides = transposed ? memory::dims{rows * cols, 1, rows} : memory::dims{rows * cols, cols, 1};
  return memory::desc({batch, rows, cols}, dt::f32, strides);
}

MatMulPrim& matMulPrimitive(int64_t batchA, int64_t batchB, int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool bias, bool relu) {
  thread_local Cache<MatMulPrim> cache;
  std::string key = "mm";
  for (int64_t v : {batchA, batchB, m, n, k, int64_t(ta), int64_t(tb), int64_t(bias), int64_t(relu)}) key += "," + std::to_string(v);
  auto& slot = cache[key];
  if (slot) return *slot;
  auto& st = dnnlState();
  int64_t batch = batchA > batchB ? batchA : batchB;
  memory::desc aMd = matrixDesc(batchA, m, k, ta), bMd = matrixDesc(batchB, k, n, tb), cMd({batch, m, n}, dt::f32, tag::abc);
  memory::desc biasMd({1, 1, n}, dt::f32, tag::abc);
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  auto d = bias ? dnnl::matmul::desc(aMd, bMd, biasMd, cMd) : dnnl::matmul::desc(aMd, bMd, cMd);
  dnnl::matmul::primitive_desc pd(d, attr, st.engine);
  auto c = std::make_unique<MatMulPrim>();
  c->prim = dnnl::matmul(pd);
  c->a = memory(aMd, st.engine, DNNL_MEMORY_NONE);
  c->b = memory(bMd, st.engine, DNNL_MEMORY_NONE);
  c->c = memory(cMd, st.engine, DNNL_MEMORY_NONE);
  if (bias) c->bias = memory(biasMd, st.engine, DNNL_MEMORY_NONE);
  slot = std::move(c);
  return *slot;
}

// matMul(heap, a, b, c, bias|-1, relu, batchA, batchB, m, n, k, transposeA, transposeB):
// c[i] = relu?(op(a[i]) · op(b[i]) + bias), a batch of 1 broadcast against the other.
napi_value MatMul(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 13, "matMul");
    int64_t batchA = intArg(a, 6), batchB = intArg(a, 7), m = intArg(a, 8), n = intArg(a, 9), k = intArg(a, 10);
    bool ta = intArg(a, 11) != 0, tb = intArg(a, 12) != 0;
    if (batchA < 1 || batchB < 1 || m < 1 || n < 1 || k < 1) throw std::invalid_argument("matMul sizes must be positive");
    if (batchA != batchB && batchA != 1 && batchB != 1) throw std::invalid_argument("matMul batches must be equal or 1");
    int64_t batch = batchA > batchB ? batchA : batchB;
    float* A = f32Arg(a, 1, batchA * m * k);
    float* B = f32Arg(a, 2, batchB * k * n);
    float* C = f32Arg(a, 3, batch * m * n);
    float* bias = f32Arg(a, 4, n, true);
    bool relu = intArg(a, 5) != 0;
    auto& p = matMulPrimitive(batchA, batchB, m, n, k, ta, tb, bias != nullptr, relu);
    auto& st = dnnlState();
    p.a.set_data_handle(A);
    p.b.set_data_handle(B);
    p.c.set_data_handle(C);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}};
    if (bias) {
      p.bias.set_data_handle(bias);
      args[DNNL_ARG_BIAS] = p.bias;
    }
    p.prim.execute(st.stream, args);
    st.stream.wait();
  });
}

// ---------------------------------------------------------------------------------------------
// Max pooling, NHWC, channels innermost (so every loop below runs along C)

struct PoolShape {
  int64_t n, h, w, c, ho, wo, kh, kw, sh, sw, top, left;
};

PoolShape poolArgs(const Args& a, size_t first) {
  PoolShape p;
  int64_t* f[] = {&p.n, &p.h, &p.w, &p.c, &p.ho, &p.wo, &p.kh, &p.kw, &p.sh, &p.sw, &p.top, &p.left};
  for (size_t i = 0; i < 12; i++) *f[i] = intArg(a, first + i);
  for (int64_t v : {p.n, p.h, p.w, p.c, p.ho, p.wo, p.kh, p.kw, p.sh, p.sw}) {
    if (v < 1) throw std::invalid_argument("pooling sizes and strides must be positive");
  }
  if (p.top < 0 || p.left < 0) throw std::invalid_argument("pooling padding must not be negative");
  return p;
}

// y = the window maximum; windows hanging over the edge take the maximum of their inside.
MULTIVERSION void maxPoolLoop(const float* x, float* y, const PoolShape& p) {
  for (int64_t b = 0; b < p.n; b++) {
    for (int64_t i = 0; i < p.ho; i++) {
      for (int64_t j = 0; j < p.wo; j++) {
        float* out = y + ((b * p.ho + i) * p.wo + j) * p.c;
        for (int64_t ch = 0; ch < p.c; ch++) out[ch] = -INFINITY;
        for (int64_t u = 0; u < p.kh; u++) {
          int64_t r = i * p.sh + u - p.top;
          if (r < 0 || r >= p.h) continue;
          for (int64_t v = 0; v < p.kw; v++) {
            int64_t q = j * p.sw + v - p.left;
            if (q < 0 || q >= p.w) continue;
            const float* in = x + ((b * p.h + r) * p.w + q) * p.c;
            for (int64_t ch = 0; ch < p.c; ch++) out[ch] = in[ch] > out[ch] ? in[ch] : out[ch];
          }
        }
      }
    }
  }
}

// dx: each window's dy goes to its first maximum in row-major window order (a later position wins
// only when strictly greater), as tfjs's cpu kernel routes it; overlapping windows add up. A
// window of NaN or −∞ only passes nothing, also as on cpu.
MULTIVERSION void maxPoolGradLoop(const float* dy, const float* x, float* dx, const PoolShape& p, float* best, int32_t* at) {
  std::memset(dx, 0, sizeof(float) * p.n * p.h * p.w * p.c);
  for (int64_t b = 0; b < p.n; b++) {
    for (int64_t i = 0; i < p.ho; i++) {
      for (int64_t j = 0; j < p.wo; j++) {
        for (int64_t ch = 0; ch < p.c; ch++) best[ch] = -INFINITY, at[ch] = -1;
        for (int64_t u = 0; u < p.kh; u++) {
          int64_t r = i * p.sh + u - p.top;
          if (r < 0 || r >= p.h) continue;
          for (int64_t v = 0; v < p.kw; v++) {
            int64_t q = j * p.sw + v - p.left;
            if (q < 0 || q >= p.w) continue;
            int32_t pos = static_cast<int32_t>((b * p.h + r) * p.w + q);
            const float* in = x + pos * p.c;
            for (int64_t ch = 0; ch < p.c; ch++) {
              bool greater = in[ch] > best[ch];
              best[ch] = greater ? in[ch] : best[ch];
              at[ch] = greater ? pos : at[ch];
            }
          }
        }
        const float* g = dy + ((b * p.ho + i) * p.wo + j) * p.c;
        for (int64_t ch = 0; ch < p.c; ch++) {
          if (at[ch] >= 0) dx[static_cast<int64_t>(at[ch]) * p.c + ch] += g[ch];
        }
      }
    }
  }
}

// The models' 2×2/stride-2 windows without padding: the general loop's selects in the same order
// (a later position wins only when strictly greater, from −∞), without its bounds checks and
// per-window set-up, vectorized along the channels.
static inline __attribute__((always_inline)) void maxPool2x2Window(const float* __restrict x0, const float* __restrict x1, const float* __restrict x2,
                                                                   const float* __restrict x3, float* __restrict out, int64_t c) {
  for (int64_t ch = 0; ch < c; ch++) {
    float m = -INFINITY;
    m = x0[ch] > m ? x0[ch] : m;
    m = x1[ch] > m ? x1[ch] : m;
    m = x2[ch] > m ? x2[ch] : m;
    out[ch] = x3[ch] > m ? x3[ch] : m;
  }
}

// C is the channel count when known at compile time (0: p.c at run time), as for the gradient
// below: with lenet's six channels at run time each window was a short scalar loop, and the
// stock XNNPACK kernel was faster.
template <int64_t C>
static inline __attribute__((always_inline)) void maxPool2x2Rows(const float* x, float* y, const PoolShape& p) {
  const int64_t c = C > 0 ? C : p.c, row = p.w * c;
  for (int64_t b = 0; b < p.n; b++) {
    for (int64_t i = 0; i < p.ho; i++) {
      for (int64_t j = 0; j < p.wo; j++) {
        const float* x00 = x + ((b * p.h + 2 * i) * p.w + 2 * j) * c;
        maxPool2x2Window(x00, x00 + c, x00 + row, x00 + row + c, y + ((b * p.ho + i) * p.wo + j) * c, c);
      }
    }
  }
}

MULTIVERSION void maxPool2x2(const float* x, float* y, const PoolShape& p) {
  switch (p.c) {
    case 6: maxPool2x2Rows<6>(x, y, p); break;
    case 16: maxPool2x2Rows<16>(x, y, p); break;
    case 32: maxPool2x2Rows<32>(x, y, p); break;
    case 64: maxPool2x2Rows<64>(x, y, p); break;
    default: maxPool2x2Rows<0>(x, y, p);
  }
}

bool isPlain2x2(const PoolShape& p) {
  return p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2 && p.top == 0 && p.left == 0 && 2 * p.ho <= p.h && 2 * p.wo <= p.w;
}

// maxPool(heap, x, y, ...12 sizes)
napi_value MaxPool(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 15, "maxPool");
    PoolShape p = poolArgs(a, 3);
    float* x = f32Arg(a, 1, p.n * p.h * p.w * p.c);
    float* y = f32Arg(a, 2, p.n * p.ho * p.wo * p.c);
    if (isPlain2x2(p)) maxPool2x2(x, y, p);
    else maxPoolLoop(x, y, p);
  });
}

// One 2×2 window along the channels. sN: position N beats the maximum so far (strictly; −∞ to
// start, so NaN and −∞ never win); the last position to beat it is the first maximum, and dy goes
// there. Selects only, so it vectorizes.
static inline __attribute__((always_inline)) void maxPoolGrad2x2Window(const float* __restrict x0, const float* __restrict x1, const float* __restrict x2,
                                                                       const float* __restrict x3, const float* __restrict g, float* __restrict d0,
                                                                       float* __restrict d1, float* __restrict d2, float* __restrict d3, int64_t c) {
  for (int64_t ch = 0; ch < c; ch++) {
    const float v0 = x0[ch], v1 = x1[ch], v2 = x2[ch], v3 = x3[ch];
    const bool s0 = v0 > -INFINITY;
    const float m0 = s0 ? v0 : -INFINITY;
    const bool s1 = v1 > m0;
    const float m1 = s1 ? v1 : m0;
    const bool s2 = v2 > m1;
    const float m2 = s2 ? v2 : m1;
    const bool s3 = v3 > m2;
    // r: what is left of dy for the earlier positions.
    const float g3 = g[ch], r3 = s3 ? 0.f : g3;
    const float r2 = s2 ? 0.f : r3, r1 = s1 ? 0.f : r2;
    d3[ch] = s3 ? g3 : 0.f;
    d2[ch] = s2 ? r3 : 0.f;
    d1[ch] = s1 ? r2 : 0.f;
    d0[ch] = s0 ? r1 : 0.f;
  }
}

// The models' case, 2×2 windows with stride 2 and no padding: windows do not overlap, so every
// covered position is written exactly once (its window's dy or 0) and only an odd last row or
// column, which no window covers, needs zeroing: one pass over x and dx instead of three.
// Branch-free selects along the channels; first maximum wins, NaN never does (as on cpu).
// C is the channel count when known at compile time (0: p.c at run time): lenet's six channels
// otherwise leave a short loop with a scalar tail at every window.
template <int64_t C>
static inline __attribute__((always_inline)) void maxPoolGrad2x2Rows(const float* dy, const float* x, float* dx, const PoolShape& p) {
  const int64_t c = C > 0 ? C : p.c, row = p.w * c;
  for (int64_t b = 0; b < p.n; b++) {
    for (int64_t i = 0; i < p.ho; i++) {
      for (int64_t j = 0; j < p.wo; j++) {
        const int64_t p00 = ((b * p.h + 2 * i) * p.w + 2 * j) * c, p01 = p00 + c, p10 = p00 + row, p11 = p10 + c;
        const float* g = dy + ((b * p.ho + i) * p.wo + j) * c;
        maxPoolGrad2x2Window(x + p00, x + p01, x + p10, x + p11, g, dx + p00, dx + p01, dx + p10, dx + p11, c);
      }
      if (p.w > 2 * p.wo) {
        for (int64_t r = 2 * i; r < 2 * i + 2; r++) std::memset(dx + ((b * p.h + r) * p.w + 2 * p.wo) * c, 0, sizeof(float) * (p.w - 2 * p.wo) * c);
      }
    }
    if (p.h > 2 * p.ho) std::memset(dx + (b * p.h + 2 * p.ho) * row, 0, sizeof(float) * (p.h - 2 * p.ho) * row);
  }
}

MULTIVERSION void maxPoolGrad2x2(const float* dy, const float* x, float* dx, const PoolShape& p) {
  switch (p.c) {
    case 6: maxPoolGrad2x2Rows<6>(dy, x, dx, p); break;
    case 16: maxPoolGrad2x2Rows<16>(dy, x, dx, p); break;
    case 32: maxPoolGrad2x2Rows<32>(dy, x, dx, p); break;
    case 64: maxPoolGrad2x2Rows<64>(dy, x, dx, p); break;
    default: maxPoolGrad2x2Rows<0>(dy, x, dx, p);
  }
}

// maxPoolGrad(heap, dy, x, dx, ...12 sizes)
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 16, "maxPoolGrad");
    PoolShape p = poolArgs(a, 4);
    if (p.n * p.h * p.w > INT32_MAX) throw std::invalid_argument("maxPoolGrad: input too large");
    float* dy = f32Arg(a, 1, p.n * p.ho * p.wo * p.c);
    float* x = f32Arg(a, 2, p.n * p.h * p.w * p.c);
    float* dx = f32Arg(a, 3, p.n * p.h * p.w * p.c);
    if (isPlain2x2(p)) {
      maxPoolGrad2x2(dy, x, dx, p);
      return;
    }
    std::vector<float> best(p.c);
    std::vector<int32_t> at(p.c);
    maxPoolGradLoop(dy, x, dx, p, best.data(), at.data());
  });
}

// ---------------------------------------------------------------------------------------------
// BatchNorm over the last axis (C), statistics given

// y = (x − mean)·scale·rsqrt(var + ε) + offset, per channel
MULTIVERSION void batchNormLoop(const float* x, float* y, const float* k, const float* d, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; r++) {
    const float* in = x + r * c;
    float* out = y + r * c;
    for (int64_t ch = 0; ch < c; ch++) out[ch] = in[ch] * k[ch] + d[ch];
  }
}

// batchNorm(heap, x, mean, variance, offset|-1, scale|-1, y, rows, channels, epsilon)
napi_value BatchNorm(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 10, "batchNorm");
    int64_t rows = intArg(a, 7), c = intArg(a, 8);
    double eps = 0;
    napi_get_value_double(env, a.v[9], &eps);
    if (rows < 1 || c < 1) throw std::invalid_argument("batchNorm sizes must be positive");
    float* x = f32Arg(a, 1, rows * c);
    float* mean = f32Arg(a, 2, c);
    float* var = f32Arg(a, 3, c);
    float* offset = f32Arg(a, 4, c, true);
    float* scale = f32Arg(a, 5, c, true);
    float* y = f32Arg(a, 6, rows * c);
    std::vector<float> k(c), d(c);
    for (int64_t ch = 0; ch < c; ch++) {
      double kk = (scale ? scale[ch] : 1.0) / std::sqrt(static_cast<double>(var[ch]) + eps);
      k[ch] = static_cast<float>(kk);
      d[ch] = static_cast<float>((offset ? offset[ch] : 0.0) - mean[ch] * kk);
    }
    batchNormLoop(x, y, k.data(), d.data(), rows, c);
  });
}

// Σdy and Σdy·(x − mean) per channel, in float64; then dx = dy·scale·rs.
MULTIVERSION void batchNormGradSums(const float* dy, const float* x, const double* mean, double* sumDy, double* sumDyXm, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dy + r * c;
    const float* in = x + r * c;
    for (int64_t ch = 0; ch < c; ch++) {
      double gv = g[ch];
      sumDy[ch] += gv;
      sumDyXm[ch] += gv * (static_cast<double>(in[ch]) - mean[ch]);
    }
  }
}

MULTIVERSION void scaleRows(const float* src, float* dst, const float* k, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t ch = 0; ch < c; ch++) dst[r * c + ch] = src[r * c + ch] * k[ch];
  }
}

// batchNormGrad(heap, dy, x, mean, variance, scale|-1, dx, dmean, dvariance, dscale, doffset, rows, channels, epsilon)
napi_value BatchNormGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 14, "batchNormGrad");
    int64_t rows = intArg(a, 11), c = intArg(a, 12);
    double eps = 0;
    napi_get_value_double(env, a.v[13], &eps);
    if (rows < 1 || c < 1) throw std::invalid_argument("batchNormGrad sizes must be positive");
    float* dy = f32Arg(a, 1, rows * c);
    float* x = f32Arg(a, 2, rows * c);
    float* mean = f32Arg(a, 3, c);
    float* var = f32Arg(a, 4, c);
    float* scale = f32Arg(a, 5, c, true);
    float* dx = f32Arg(a, 6, rows * c);
    float* dMean = f32Arg(a, 7, c);
    float* dVar = f32Arg(a, 8, c);
    float* dScale = f32Arg(a, 9, c);
    float* dOffset = f32Arg(a, 10, c);
    std::vector<double> m(c), sumDy(c, 0.0), sumDyXm(c, 0.0);
    for (int64_t ch = 0; ch < c; ch++) m[ch] = mean[ch];
    batchNormGradSums(dy, x, m.data(), sumDy.data(), sumDyXm.data(), rows, c);
    std::vector<float> k(c);
    for (int64_t ch = 0; ch < c; ch++) {
      double rs = 1.0 / std::sqrt(static_cast<double>(var[ch]) + eps);
      double kk = (scale ? scale[ch] : 1.0) * rs;
      k[ch] = static_cast<float>(kk);
      dMean[ch] = static_cast<float>(-kk * sumDy[ch]);
      dVar[ch] = static_cast<float>(-0.5 * kk * rs * rs * sumDyXm[ch]);
      dScale[ch] = static_cast<float>(rs * sumDyXm[ch]);
      dOffset[ch] = static_cast<float>(sumDy[ch]);
    }
    scaleRows(dy, dx, k.data(), rows, c);
  });
}

// ---------------------------------------------------------------------------------------------
// Synchronized BatchNorm's passes (worker/layers/sync-batch-norm.ts), over [rows, C] in place on the
// heap. Each computes exactly what that module's JavaScript reference computes, operation for
// operation and in the same order per channel (float64 sums of float32 values, float32 x̂ and dx),
// so the results are bit-identical to it: vectorizing runs across channels, never reorders a
// channel's sum, and contraction into FMAs (which would round d·d differently) is off here.

// Σ src over rows of c floats, per channel, in float64 and in row order (each channel its own chain
// of adds, so vectorizing across channels changes no sum). C: the channel count where it is known
// at compile time (0: c at run time); then the sums stay in registers. With lenet's six channels
// known only at run time the loop went through memory, one element at a time.
template <int64_t C>
static inline __attribute__((always_inline)) void channelSums(const float* __restrict src, double* __restrict sums, int64_t rows, int64_t c) {
  if constexpr (C > 0) {
    double acc[C];
    for (int64_t ch = 0; ch < C; ch++) acc[ch] = sums[ch];
    for (int64_t r = 0; r < rows; r++) {
      const float* row = src + r * C;
      for (int64_t ch = 0; ch < C; ch++) acc[ch] += row[ch];
    }
    for (int64_t ch = 0; ch < C; ch++) sums[ch] = acc[ch];
  } else {
    for (int64_t r = 0; r < rows; r++) {
      const float* row = src + r * c;
      for (int64_t ch = 0; ch < c; ch++) sums[ch] += row[ch];
    }
  }
}

// A relu's backward pass through its output and the bias gradient: dz = dy·[y > 0], the same
// multiply as Step(y)·dy (so the same float32, signed zeros included), and Σ dz per channel
// accumulated in float64 in row order, as sumRowsLoop does (worker/direct-backprop.ts). Multiplying
// by 0 or 1 rather than choosing: relu masks are unpredictable, and the multiply vectorizes.
// With 16, 32 or 64 channels, one pass with the sums in registers (rows of whole vectors); with
// other counts the mask first, over the whole array (it vectorizes at any count), then the sums over
// dz while it is in cache. The fused loop with the count known only at run time took 127-133 µs
// over lenet's [32,28,28,6] (now 45-53) and 174-181 µs over cnn-dropout's [16,30,30,32] (now 85).
template <int64_t C>
static inline __attribute__((always_inline)) void reluBackwardRows(const float* __restrict dy, const float* __restrict y, float* __restrict dz, double* __restrict sums, int64_t rows) {
  double acc[C];
  for (int64_t ch = 0; ch < C; ch++) acc[ch] = sums[ch];
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dy + r * C;
    const float* v = y + r * C;
    float* out = dz + r * C;
    for (int64_t ch = 0; ch < C; ch++) {
      const float d = g[ch] * (v[ch] > 0.f ? 1.f : 0.f);
      out[ch] = d;
      acc[ch] += d;
    }
  }
  for (int64_t ch = 0; ch < C; ch++) sums[ch] = acc[ch];
}

MULTIVERSION void reluBackwardLoop(const float* dy, const float* y, float* dz, double* sums, int64_t rows, int64_t c) {
  switch (c) {
    case 16: return reluBackwardRows<16>(dy, y, dz, sums, rows);
    case 32: return reluBackwardRows<32>(dy, y, dz, sums, rows);
    case 64: return reluBackwardRows<64>(dy, y, dz, sums, rows);
  }
  const int64_t n = rows * c;
  const float* __restrict g = dy;
  const float* __restrict v = y;
  float* __restrict out = dz;
  for (int64_t i = 0; i < n; i++) out[i] = g[i] * (v[i] > 0.f ? 1.f : 0.f);
  if (c == 6) channelSums<6>(dz, sums, rows, c);
  else channelSums<0>(dz, sums, rows, c);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

// The loops below run along the channels of [rows, C] arrays. C is a compile-time constant for the
// CNN's 32 and 64 channels (0: c at run time): the per-channel accumulators and coefficients then
// stay in registers instead of a load and a store per element. Each channel's arithmetic is the
// same, in the same order, either way (contraction is off here), so the bits are too.
#define DTRAIN_BY_CHANNELS(fn, c, ...)        \
  switch (c) {                                \
    case 32: return fn<32>(__VA_ARGS__);      \
    case 64: return fn<64>(__VA_ARGS__);      \
    default: return fn<0>(__VA_ARGS__);       \
  }

// Two passes, as common/batch-moments.ts localMoments: mean, then Σ(x − mean)².
template <int64_t C>
static inline __attribute__((always_inline)) void bnMomentsRows(const float* __restrict x, double* __restrict mean, double* __restrict m2, int64_t rows, int64_t cRun) {
  constexpr int64_t L = C > 0 ? C : 1;
  const int64_t c = C > 0 ? C : cRun;
  double s[L], q[L];
  double* sum = C > 0 ? s : mean;
  double* sq = C > 0 ? q : m2;
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { sum[ch] = mean[ch]; sq[ch] = m2[ch]; }
  for (int64_t r = 0; r < rows; r++) {
    const float* in = x + r * c;
    for (int64_t ch = 0; ch < c; ch++) sum[ch] += in[ch];
  }
  for (int64_t ch = 0; ch < c; ch++) sum[ch] /= static_cast<double>(rows);
  for (int64_t r = 0; r < rows; r++) {
    const float* in = x + r * c;
    for (int64_t ch = 0; ch < c; ch++) {
      const double d = static_cast<double>(in[ch]) - sum[ch];
      sq[ch] += d * d;
    }
  }
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { mean[ch] = sum[ch]; m2[ch] = sq[ch]; }
}

MULTIVERSION void bnMomentsLoop(const float* x, double* mean, double* m2, int64_t rows, int64_t c) {
  DTRAIN_BY_CHANNELS(bnMomentsRows, c, x, mean, m2, rows, c)
}

// Σdy and Σdy·x̂ with x̂ = (x − mean)·rs in float32, as the reference's tfjs sub and mul make it.
template <int64_t C>
static inline __attribute__((always_inline)) void bnBackwardSumsRows(const float* __restrict dy, const float* __restrict x, const float* __restrict meanIn, const float* __restrict rsIn,
                                                                     double* __restrict sumDyOut, double* __restrict sumDyXhatOut, int64_t rows, int64_t cRun) {
  constexpr int64_t L = C > 0 ? C : 1;
  const int64_t c = C > 0 ? C : cRun;
  double a[L], b[L];
  float m[L], k[L];
  double* sumDy = C > 0 ? a : sumDyOut;
  double* sumDyXhat = C > 0 ? b : sumDyXhatOut;
  const float* mean = C > 0 ? m : meanIn;
  const float* rs = C > 0 ? k : rsIn;
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { a[ch] = sumDyOut[ch]; b[ch] = sumDyXhatOut[ch]; m[ch] = meanIn[ch]; k[ch] = rsIn[ch]; }
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dy + r * c;
    const float* in = x + r * c;
    for (int64_t ch = 0; ch < c; ch++) {
      const float xhat = (in[ch] - mean[ch]) * rs[ch];
      sumDy[ch] += g[ch];
      sumDyXhat[ch] += static_cast<double>(g[ch]) * static_cast<double>(xhat);
    }
  }
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { sumDyOut[ch] = a[ch]; sumDyXhatOut[ch] = b[ch]; }
}

MULTIVERSION void bnBackwardSumsLoop(const float* dy, const float* x, const float* mean, const float* rs, double* sumDy, double* sumDyXhat, int64_t rows, int64_t c) {
  DTRAIN_BY_CHANNELS(bnBackwardSumsRows, c, dy, x, mean, rs, sumDy, sumDyXhat, rows, c)
}

// One element of a BatchNorm's dx: ((dy − a) − x̂·b)·k, all float32 (contraction is off here), x̂
// recomputed from x as (x − mean)·rs. Both dx loops below use it, so they round alike.
static inline __attribute__((always_inline)) float bnDx(float dy, float x, float mean, float rs, float a, float b, float k) {
  const float xhat = (x - mean) * rs;
  const float t = dy - a;
  const float u = xhat * b;
  return (t - u) * k;
}

// dx = bnDx over [rows, C].
template <int64_t C>
static inline __attribute__((always_inline)) void bnGradInputRows(const float* __restrict dy, const float* __restrict x, float* __restrict dx, const float* __restrict mean, const float* __restrict rs,
                                                                  const float* __restrict a, const float* __restrict b, const float* __restrict k, int64_t rows, int64_t cRun) {
  const int64_t c = C > 0 ? C : cRun;
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dy + r * c;
    const float* in = x + r * c;
    float* out = dx + r * c;
    for (int64_t ch = 0; ch < c; ch++) out[ch] = bnDx(g[ch], in[ch], mean[ch], rs[ch], a[ch], b[ch], k[ch]);
  }
}

MULTIVERSION void bnGradInputLoop(const float* dy, const float* x, float* dx, const float* mean, const float* rs, const float* a, const float* b, const float* k, int64_t rows, int64_t c) {
  DTRAIN_BY_CHANNELS(bnGradInputRows, c, dy, x, dx, mean, rs, a, b, k, rows, c)
}

// bnGradInput's dx carried on through the relu whose output x is (the BatchNorm's input), in one
// pass, dx never stored: dz = dx·[x > 0] as reluBackwardRows makes it, bias[c] += dz (reluBackward's
// Σ dz) and inactive[c] −= dx·[x ≤ 0] (reluInactiveSumRows), each channel's sums in row order. Each
// value is the three loops' own: the same float32 dx (contraction is off here), the same multiply
// by 0 or 1, the same float64 additions in the same order.
template <int64_t C>
static inline __attribute__((always_inline)) void bnGradInputReluRows(const float* __restrict dy, const float* __restrict x, float* __restrict dz, const float* __restrict mean, const float* __restrict rs,
                                                                      const float* __restrict a, const float* __restrict b, const float* __restrict k, double* __restrict biasOut,
                                                                      double* __restrict inactiveOut, int64_t rows, int64_t cRun) {
  constexpr int64_t L = C > 0 ? C : 1;
  const int64_t c = C > 0 ? C : cRun;
  double s[L], q[L];
  double* bias = C > 0 ? s : biasOut;
  double* inactive = C > 0 ? q : inactiveOut;
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { s[ch] = biasOut[ch]; q[ch] = inactiveOut[ch]; }
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dy + r * c;
    const float* in = x + r * c;
    float* out = dz + r * c;
    for (int64_t ch = 0; ch < c; ch++) {
      const float v = in[ch];
      const float dx = bnDx(g[ch], v, mean[ch], rs[ch], a[ch], b[ch], k[ch]);
      const float d = dx * (v > 0.f ? 1.f : 0.f);
      out[ch] = d;
      bias[ch] += d;
      inactive[ch] -= static_cast<double>(dx) * (v <= 0.f ? 1.0 : 0.0);
    }
  }
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) { biasOut[ch] = s[ch]; inactiveOut[ch] = q[ch]; }
}

MULTIVERSION void bnGradInputReluLoop(const float* dy, const float* x, float* dz, const float* mean, const float* rs, const float* a, const float* b, const float* k, double* bias, double* inactive,
                                      int64_t rows, int64_t c) {
  DTRAIN_BY_CHANNELS(bnGradInputReluRows, c, dy, x, dz, mean, rs, a, b, k, bias, inactive, rows, c)
}

// −Σ dx·[y ≤ 0] per channel in float64 (a relu's inactive positions; worker/layers/pre-norm-bias.ts):
// the same multiply by 0 or 1 and subtraction, in the same order per channel, as its JavaScript.
template <int64_t C>
static inline __attribute__((always_inline)) void reluInactiveSumRows(const float* __restrict dx, const float* __restrict y, double* __restrict out, int64_t rows, int64_t cRun) {
  constexpr int64_t L = C > 0 ? C : 1;
  const int64_t c = C > 0 ? C : cRun;
  double s[L];
  double* sums = C > 0 ? s : out;
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) s[ch] = out[ch];
  for (int64_t r = 0; r < rows; r++) {
    const float* g = dx + r * c;
    const float* v = y + r * c;
    for (int64_t ch = 0; ch < c; ch++) sums[ch] -= static_cast<double>(g[ch]) * (v[ch] <= 0.f ? 1.0 : 0.0);
  }
  if (C > 0) for (int64_t ch = 0; ch < c; ch++) out[ch] = s[ch];
}

MULTIVERSION void reluInactiveSumLoop(const float* dx, const float* y, double* sums, int64_t rows, int64_t c) {
  DTRAIN_BY_CHANNELS(reluInactiveSumRows, c, dx, y, sums, rows, c)
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// A typed array's data and length when `v` is one of type `want`; else nullptr.
void* typedArrayOf(napi_env env, napi_value v, napi_typedarray_type want, size_t& length) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  napi_typedarray_type type;
  void* data = nullptr;
  if (!is || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) return nullptr;
  return data;
}

// A typed array argument of type `want`: its data and length, or `refusal` thrown. N-API may give a
// null data pointer for an empty array: the type decides, not the pointer (typedArrayOf's null
// means "not that type" and cannot say so for an empty one).
void* typedArg(napi_env env, napi_value x, napi_typedarray_type want, size_t& length, const std::string& refusal) {
  bool is = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_is_typedarray(env, x, &is) != napi_ok || !is || napi_get_typedarray_info(env, x, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) {
    throw std::invalid_argument(refusal);
  }
  return data;
}

// A Float64Array argument of exactly `count` values.
double* f64Out(const Args& a, size_t i, int64_t count, const char* name) {
  size_t length = 0;
  void* data = typedArrayOf(a.env, a.v[i], napi_float64_array, length);
  if (data == nullptr || static_cast<int64_t>(length) != count) {
    throw std::invalid_argument(std::string(name) + ": argument " + std::to_string(i) + " must be a Float64Array of " + std::to_string(count) + " values");
  }
  return static_cast<double*>(data);
}

// Arguments i and i + 1: the rows and channels of a [rows, C] operand, both positive.
void rowsChannelsArgs(const Args& a, size_t i, int64_t& rows, int64_t& c, const char* name) {
  rows = intArg(a, i);
  c = intArg(a, i + 1);
  if (rows < 1 || c < 1) throw std::invalid_argument(std::string(name) + ": rows and channels must be positive");
}

// bnMoments(heap, x, rows, channels, out: Float64Array(1 + 2C)): out = [rows, mean…, M2…]
napi_value BnMoments(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 5, "bnMoments");
    int64_t rows, c;
    rowsChannelsArgs(a, 2, rows, c, "bnMoments");
    const float* x = f32Arg(a, 1, rows * c);
    double* out = f64Out(a, 4, 1 + 2 * c, "bnMoments");
    std::fill(out, out + 1 + 2 * c, 0.0);
    out[0] = static_cast<double>(rows);
    bnMomentsLoop(x, out + 1, out + 1 + c, rows, c);
  });
}

// bnBackwardSums(heap, dy, x, meanRs, rows, channels, out: Float64Array(2C)): meanRs is [2, C]
// float32 on the heap (mean, rs; a [3, C] mean, rs, k will do); out = [Σdy…, Σdy·x̂…]
napi_value BnBackwardSums(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 7, "bnBackwardSums");
    int64_t rows, c;
    rowsChannelsArgs(a, 4, rows, c, "bnBackwardSums");
    const float* dy = f32Arg(a, 1, rows * c);
    const float* x = f32Arg(a, 2, rows * c);
    const float* coeff = f32Arg(a, 3, 2 * c);
    double* out = f64Out(a, 6, 2 * c, "bnBackwardSums");
    std::fill(out, out + 2 * c, 0.0);
    bnBackwardSumsLoop(dy, x, coeff, coeff + c, out, out + c, rows, c);
  });
}

// reluInactiveSum(heap, dx, y, rows, channels, out: Float64Array(C)): out = −Σ dx·[y ≤ 0] per channel
napi_value ReluInactiveSum(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 6, "reluInactiveSum");
    int64_t rows, c;
    rowsChannelsArgs(a, 3, rows, c, "reluInactiveSum");
    const float* dx = f32Arg(a, 1, rows * c);
    const float* y = f32Arg(a, 2, rows * c);
    double* out = f64Out(a, 5, c, "reluInactiveSum");
    std::fill(out, out + c, 0.0);
    reluInactiveSumLoop(dx, y, out, rows, c);
  });
}

// reluBackward(heap, dy, y, dz, rows, channels, sum): dz = dy·[y > 0], and sum [C] (float32 on
// the heap) = Σ dz over the rows, summed in float64 and rounded once.
napi_value ReluBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 7, "reluBackward");
    int64_t rows, c;
    rowsChannelsArgs(a, 4, rows, c, "reluBackward");
    const float* dy = f32Arg(a, 1, rows * c);
    const float* y = f32Arg(a, 2, rows * c);
    float* dz = f32Arg(a, 3, rows * c);
    float* sum = f32Arg(a, 6, c);
    std::vector<double> acc(c, 0.0);
    reluBackwardLoop(dy, y, dz, acc.data(), rows, c);
    for (int64_t ch = 0; ch < c; ch++) sum[ch] = static_cast<float>(acc[ch]);
  });
}

// The operands bnGradInput and bnGradInputRelu share, arguments 1-7: dy, x, meanRsK [3, C], ab [2, C],
// the output [rows, C], rows, channels.
struct BnGradOperands {
  int64_t rows, c;
  const float *dy, *x, *mrk, *ab;
  float* out;
};

BnGradOperands bnGradOperands(const Args& a, const char* name) {
  BnGradOperands o;
  rowsChannelsArgs(a, 6, o.rows, o.c, name);
  o.dy = f32Arg(a, 1, o.rows * o.c);
  o.x = f32Arg(a, 2, o.rows * o.c);
  o.mrk = f32Arg(a, 3, 3 * o.c);
  o.ab = f32Arg(a, 4, 2 * o.c);
  o.out = f32Arg(a, 5, o.rows * o.c);
  return o;
}

// bnGradInput(heap, dy, x, meanRsK, ab, dx, rows, channels): meanRsK is [3, C] float32 on the heap
// (mean, rs, k), ab is [2, C] (a, b); dx = ((dy − a) − x̂·b)·k, x̂ = (x − mean)·rs
napi_value BnGradInput(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const BnGradOperands o = bnGradOperands(readArgs(env, info, 8, "bnGradInput"), "bnGradInput");
    const int64_t c = o.c;
    bnGradInputLoop(o.dy, o.x, o.out, o.mrk, o.mrk + c, o.ab, o.ab + c, o.mrk + 2 * c, o.rows, c);
  });
}

// bnGradInputRelu(heap, dy, x, meanRsK, ab, dz, rows, channels, sum, inactive: Float64Array(C)):
// bnGradInput, then reluBackward and reluInactiveSum through x (a relu's output), in one pass: dz,
// sum [C] (float32 on the heap) = Σ dz summed in float64 and rounded once, inactive = −Σ dx·[x ≤ 0].
napi_value BnGradInputRelu(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 10, "bnGradInputRelu");
    const BnGradOperands o = bnGradOperands(a, "bnGradInputRelu");
    const int64_t c = o.c;
    float* sum = f32Arg(a, 8, c);
    double* inactive = f64Out(a, 9, c, "bnGradInputRelu");
    std::vector<double> acc(c, 0.0);
    std::fill(inactive, inactive + c, 0.0);
    bnGradInputReluLoop(o.dy, o.x, o.out, o.mrk, o.mrk + c, o.ab, o.ab + c, o.mrk + 2 * c, acc.data(), inactive, o.rows, c);
    for (int64_t ch = 0; ch < c; ch++) sum[ch] = static_cast<float>(acc[ch]);
  });
}

// ---------------------------------------------------------------------------------------------
// Bias add: out[r·C + c] = a[r·C + c] + bias[c] (a bias broadcast along the leading axes). With few
// channels the per-row loop barely vectorizes (lenet's first activation has 6), so the rows are
// walked in chunks of a whole number of rows at least 64 floats long, against the bias repeated
// to that length: one long vectorizable loop whatever C is. Same single float32 addition per
// element as any other order, so the result is exact.

MULTIVERSION void biasAddLoop(const float* a, const float* pattern, float* out, int64_t n, int64_t period) {
  int64_t i = 0;
  for (; i + period <= n; i += period) {
    const float* __restrict in = a + i;
    float* __restrict o = out + i;
    for (int64_t k = 0; k < period; k++) o[k] = in[k] + pattern[k];
  }
  for (int64_t k = 0; i + k < n; k++) out[i + k] = a[i + k] + pattern[k];
}

// biasAdd(heap, a, bias, out, rows, channels)
napi_value BiasAdd(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 6, "biasAdd");
    int64_t rows, c;
    rowsChannelsArgs(a, 4, rows, c, "biasAdd");
    const float* x = f32Arg(a, 1, rows * c);
    const float* bias = f32Arg(a, 2, c);
    float* out = f32Arg(a, 3, rows * c);
    const int64_t repeat = (64 + c - 1) / c;
    std::vector<float> pattern(repeat * c);
    for (int64_t k = 0; k < repeat * c; k++) pattern[k] = bias[k % c];
    biasAddLoop(x, pattern.data(), out, rows * c, repeat * c);
  });
}

// ---------------------------------------------------------------------------------------------
// Sums over leading axes: dst[c] = scale·Σ_r src[r·cols + c], in float64 like the cpu backend.
// Per-channel bias gradients and statistics of NHWC tensors; memory-bound, one pass.

MULTIVERSION void sumRowsLoop(const float* src, double* acc, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float* row = src + r * cols;
    for (int64_t c = 0; c < cols; c++) acc[c] += row[c];
  }
}

// sumRows(heap, src, dst, rows, cols, scale)
napi_value SumRows(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = readArgs(env, info, 6, "sumRows");
    int64_t rows = intArg(a, 3), cols = intArg(a, 4);
    double scale = 0;
    napi_get_value_double(env, a.v[5], &scale);
    if (rows < 1 || cols < 1) throw std::invalid_argument("sumRows sizes must be positive");
    float* src = f32Arg(a, 1, rows * cols);
    float* dst = f32Arg(a, 2, cols);
    std::vector<double> acc(cols, 0.0);
    sumRowsLoop(src, acc.data(), rows, cols);
    for (int64_t c = 0; c < cols; c++) dst[c] = static_cast<float>(acc[c] * scale);
  });
}

// ---------------------------------------------------------------------------------------------
// Standardization of uint8 images (the mlp's input): out = (x − mean[j]) / std[j] in float64,
// rounded to float32, exactly as common/data/preprocess.ts computes it in JavaScript (IEEE
// subtraction and division are correctly rounded in both; no contraction is possible), vectorized.

template <typename T>
T* typedArrayData(napi_env env, napi_value v, napi_typedarray_type want, size_t& length, const char* what) {
  void* data = typedArrayOf(env, v, want, length);
  if (data == nullptr) throw std::invalid_argument(std::string("standardize: ") + what + " has the wrong type");
  return static_cast<T*>(data);
}

MULTIVERSION void standardizeLoop(const uint8_t* x, const float* mean, const float* stdev, float* out, size_t images, size_t features) {
  for (size_t i = 0; i < images; i++) {
    const uint8_t* in = x + i * features;
    float* o = out + i * features;
    for (size_t j = 0; j < features; j++) o[j] = static_cast<float>((static_cast<double>(in[j]) - static_cast<double>(mean[j])) / static_cast<double>(stdev[j]));
  }
}

// standardize(images: Uint8Array, mean: Float32Array, std: Float32Array, out: Float32Array)
napi_value Standardize(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 4, "standardize");
    size_t n, features, stdCount, outCount;
    const uint8_t* x = typedArrayData<uint8_t>(env, v[0], napi_uint8_array, n, "images (Uint8Array)");
    const float* mean = typedArrayData<float>(env, v[1], napi_float32_array, features, "mean (Float32Array)");
    const float* stdev = typedArrayData<float>(env, v[2], napi_float32_array, stdCount, "std (Float32Array)");
    float* out = typedArrayData<float>(env, v[3], napi_float32_array, outCount, "out (Float32Array)");
    if (features == 0 || stdCount != features || n % features != 0 || outCount != n) {
      throw std::invalid_argument("standardize: expected images of whole rows of " + std::to_string(features) + " features and an output of the same length");
    }
    standardizeLoop(x, mean, stdev, out, n / features, features);
  });
}

// ---------------------------------------------------------------------------------------------
// The shared-memory step's stripe (common/step-stripe.ts) in one pass over the parameters: sum the
// slots' gradient sums, scale by 1/count, apply Adam, and (for a step of one slot) take Σ g² of the
// slot for the result screen. Bit for bit what the WebAssembly SIMD kernels compute one after the
// other (common/reduce-simd.ts, then common/adam-simd.ts): the same IEEE operations in the same
// order per lane, float32 sums from 0 in slot order (float64 with a reduction grain), × inv in
// float64 rounded to float32, then Adam in float32. No contraction into FMAs, which would round
// once where the SIMD kernels round twice. Σ g² is summed in another order than the SIMD kernel's
// (sum-squares-simd.ts): the two agree to rounding, as that kernel and the JavaScript loop do.
// The wasm kernels run four lanes per instruction; this runs sixteen where the CPU has AVX-512, and
// makes one pass where they make three.

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "no-math-errno")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

struct AdamScalars {
  float b1, b2, a1, a2, step, sc2, eps;
};

// The portable loop, one lane at a time: slot k's value of lane j is g[k·stride + j] (T: float, or
// double with a reduction grain). Float32 slots are summed in float32, float64 ones in float64.
// `raw` (float32 g, one slot): r = g as it lies, no sum from 0 and no scaling; Adam on a mean
// gradient computed elsewhere (adamInPlace), where 0 + g would turn a −0 into +0.
template <typename T>
float stripeReducedScalar(const T* g, int64_t j, int64_t stride, int64_t slots, double inv, bool raw) {
  if constexpr (std::is_same_v<T, float>) {
    if (raw) return g[j];
  }
  T acc = T(0) + g[j];
  for (int64_t k = 1; k < slots; k++) acc = acc + g[k * stride + j];
  return static_cast<float>(static_cast<double>(acc) * inv);
}

template <typename T>
double stripeScalar(const T* g, int64_t stride, int64_t slots, const float* w, const float* m, const float* v, float* wOut, float* mOut, float* vOut, int64_t n,
                    double inv, const AdamScalars& s, bool squares, bool raw, float* wCopy, float* gCopy) {
  double sq = 0;
  for (int64_t j = 0; j < n; j++) {
    if constexpr (std::is_same_v<T, float>) {
      if (gCopy != nullptr) gCopy[j] = g[j];
    }
    if (squares) sq += static_cast<double>(g[j]) * static_cast<double>(g[j]);
    const float r = stripeReducedScalar(g, j, stride, slots, inv, raw);
    const float mj = s.b1 * m[j] + s.a1 * r;
    const float vj = s.b2 * v[j] + s.a2 * (r * r);
    mOut[j] = mj;
    vOut[j] = vj;
    const float wj = w[j] - (s.step * mj) / (std::sqrt(vj) * s.sc2 + s.eps);
    wOut[j] = wj;
    if (wCopy != nullptr) wCopy[j] = wj;
  }
  return sq;
}

#if defined(__x86_64__)
// GCC 12's AVX-512 headers warn of their own undefined pass-through operands (-W[maybe-]uninitialized).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// Sixteen lanes per instruction; lanes past n are masked off (loads read 0, stores skip them).

// The lanes of the sixteen from j that lie before n: all of them but in the last block.
inline __mmask16 lanes16(int64_t n, int64_t j) {
  return n - j >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - j)) - 1);
}

// Lanes 0-7 and 8-15 of x, each widened to float64 (exactly).
__attribute__((target("avx512f"))) void widen16(__m512 x, __m512d& lo, __m512d& hi) {
  lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
  hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}

// (lo, hi) · inv in float64, each rounded to float32, as sixteen lanes.
__attribute__((target("avx512f"))) __m512 scaledToFloat16(__m512d lo, __m512d hi, __m512d inv) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_mul_pd(lo, inv)))), _mm256_castps_pd(_mm512_cvtpd_ps(_mm512_mul_pd(hi, inv))), 1));
}

__attribute__((target("avx512f"))) __m512 stripeReduced16(const float* g, int64_t stride, int64_t slots, __mmask16 k16, __m512d inv) {
  __m512 acc = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(k16, g));
  for (int64_t k = 1; k < slots; k++) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k16, g + k * stride));
  __m512d lo, hi;
  widen16(acc, lo, hi);
  return scaledToFloat16(lo, hi, inv);
}

__attribute__((target("avx512f"))) __m512 stripeReduced16(const double* g, int64_t stride, int64_t slots, __mmask16 k16, __m512d inv) {
  const __mmask8 kLo = static_cast<__mmask8>(k16), kHi = static_cast<__mmask8>(k16 >> 8);
  __m512d lo = _mm512_add_pd(_mm512_setzero_pd(), _mm512_maskz_loadu_pd(kLo, g));
  __m512d hi = _mm512_add_pd(_mm512_setzero_pd(), _mm512_maskz_loadu_pd(kHi, g + 8));
  for (int64_t k = 1; k < slots; k++) {
    lo = _mm512_add_pd(lo, _mm512_maskz_loadu_pd(kLo, g + k * stride));
    hi = _mm512_add_pd(hi, _mm512_maskz_loadu_pd(kHi, g + k * stride + 8));
  }
  return scaledToFloat16(lo, hi, inv);
}

// Σ x² of slot 0's sixteen lanes into two float64 accumulators.
__attribute__((target("avx512f"))) void squares16(const float* g, __mmask16 k16, __m512d& sqLo, __m512d& sqHi) {
  __m512d lo, hi;
  widen16(_mm512_maskz_loadu_ps(k16, g), lo, hi);
  sqLo = _mm512_add_pd(sqLo, _mm512_mul_pd(lo, lo));
  sqHi = _mm512_add_pd(sqHi, _mm512_mul_pd(hi, hi));
}

__attribute__((target("avx512f"))) void squares16(const double* g, __mmask16 k16, __m512d& sqLo, __m512d& sqHi) {
  const __m512d lo = _mm512_maskz_loadu_pd(static_cast<__mmask8>(k16), g);
  const __m512d hi = _mm512_maskz_loadu_pd(static_cast<__mmask8>(k16 >> 8), g + 8);
  sqLo = _mm512_add_pd(sqLo, _mm512_mul_pd(lo, lo));
  sqHi = _mm512_add_pd(sqHi, _mm512_mul_pd(hi, hi));
}

// How far ahead of the lane it works on (in floats: 1 KB) the AVX-512 stripe asks for w, m, v and the
// backend's weight copy. In training those streams come back from memory between two stripes, more of
// them than the hardware prefetchers keep ahead of: `dtrain train --model mlp` at its defaults, the
// stripe was faster in 7 of 7 interleaved pairs (e.g. 0.27 -> 0.22 ms), lenet's read the same, and
// over arrays already in cache the prefetches cost (145 -> 180 µs in a throwaway loop). Measurements
// and what did not help: docs/shared-step.md, "The stripe's weight and moment streams prefetched".
// No value changes.
constexpr int64_t kStripePrefetch = 256;

template <typename T>
__attribute__((target("avx512f"))) double stripeAvx512(const T* g, int64_t stride, int64_t slots, const float* w, const float* m, const float* v, float* wOut, float* mOut, float* vOut,
                                                       int64_t n, double inv, const AdamScalars& s, bool squares, bool raw, float* wCopy, float* gCopy) {
  const __m512d invV = _mm512_set1_pd(inv);
  const __m512 b1 = _mm512_set1_ps(s.b1), b2 = _mm512_set1_ps(s.b2), a1 = _mm512_set1_ps(s.a1), a2 = _mm512_set1_ps(s.a2);
  const __m512 step = _mm512_set1_ps(s.step), sc2 = _mm512_set1_ps(s.sc2), eps = _mm512_set1_ps(s.eps);
  __m512d sqLo = _mm512_setzero_pd(), sqHi = _mm512_setzero_pd();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k16 = lanes16(n, j);
    if (j + kStripePrefetch < n) {
      _mm_prefetch(reinterpret_cast<const char*>(w + j + kStripePrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(m + j + kStripePrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(v + j + kStripePrefetch), _MM_HINT_T0);
      if (wCopy != nullptr) _mm_prefetch(reinterpret_cast<const char*>(wCopy + j + kStripePrefetch), _MM_HINT_T0);
    }
    __m512 r;
    if constexpr (std::is_same_v<T, float>) {
      r = raw ? _mm512_maskz_loadu_ps(k16, g + j) : stripeReduced16(g + j, stride, slots, k16, invV);
      if (gCopy != nullptr) _mm512_mask_storeu_ps(gCopy + j, k16, _mm512_maskz_loadu_ps(k16, g + j));
    } else {
      r = stripeReduced16(g + j, stride, slots, k16, invV);
    }
    if (squares) squares16(g + j, k16, sqLo, sqHi);
    const __m512 mj = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(k16, m + j)), _mm512_mul_ps(a1, r));
    const __m512 vj = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k16, v + j)), _mm512_mul_ps(a2, _mm512_mul_ps(r, r)));
    const __m512 denom = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vj), sc2), eps);
    const __m512 wj = _mm512_sub_ps(_mm512_maskz_loadu_ps(k16, w + j), _mm512_div_ps(_mm512_mul_ps(step, mj), denom));
    _mm512_mask_storeu_ps(mOut + j, k16, mj);
    _mm512_mask_storeu_ps(vOut + j, k16, vj);
    _mm512_mask_storeu_ps(wOut + j, k16, wj);
    if (wCopy != nullptr) _mm512_mask_storeu_ps(wCopy + j, k16, wj);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(sqLo, sqHi));
}
#pragma GCC diagnostic pop
#endif

template <typename T>
double stripeLoop(const T* g, int64_t stride, int64_t slots, const float* w, const float* m, const float* v, float* wOut, float* mOut, float* vOut, int64_t n, double inv,
                  const AdamScalars& s, bool squares, bool portable, bool raw = false, float* wCopy = nullptr, float* gCopy = nullptr) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512 && !portable) return stripeAvx512(g, stride, slots, w, m, v, wOut, mOut, vOut, n, inv, s, squares, raw, wCopy, gCopy);
#endif
  return stripeScalar(g, stride, slots, w, m, v, wOut, mOut, vOut, n, inv, s, squares, raw, wCopy, gCopy);
}

// ---------------------------------------------------------------------------------------------
// The WebSocket coordinator's passes over a step's gradients, each bit for bit its JavaScript loop
// (coordinator/gradient-passes.ts): fold a result into the sum, scale the sum to the mean with the
// safety check of coordinator/adam-guard.ts, Adam in place on the trainer's own arrays (the stripe's
// loop reading g as it lies), and Σ x² in float64 for the result
// screen and the codec's finiteness check.

// dst = (first ? 0 : dst) + src in float32: the sum coordinator/aggregate.ts folds.
void foldLoop(float* __restrict dst, const float* __restrict src, int64_t n, bool first) {
  if (first) {
    for (int64_t i = 0; i < n; i++) dst[i] = 0.0f + src[i];
  } else {
    for (int64_t i = 0; i < n; i++) dst[i] = dst[i] + src[i];
  }
}

// x = fl32(x · inv) (the product in float64); returns the first index whose result is not within
// ±limit (NaN included), or −1.
bool withinLimit(float r, double limit) {
  return static_cast<double>(r) <= limit && static_cast<double>(r) >= -limit;
}

// The first index past ±limit, searched only once a vector check found one.
int64_t firstOutside(const float* x, int64_t n, double limit) {
  for (int64_t i = 0; i < n; i++) {
    if (!withinLimit(x[i], limit)) return i;
  }
  return -1;
}

int64_t scaleScalar(float* x, int64_t n, double inv, double limit) {
  int64_t bad = -1;
  for (int64_t i = 0; i < n; i++) {
    x[i] = static_cast<float>(static_cast<double>(x[i]) * inv);
    if (bad < 0 && !withinLimit(x[i], limit)) bad = i;
  }
  return bad;
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// The stripe's scaling (widen, × inv in float64, round to float32), sixteen lanes at a time; the
// bound is checked on the rounded values, widened again (exactly).
__attribute__((target("avx512f"))) int64_t scaleAvx512(float* x, int64_t n, double inv, double limit) {
  const __m512d invV = _mm512_set1_pd(inv), hiV = _mm512_set1_pd(limit), loV = _mm512_set1_pd(-limit);
  __mmask8 outside = 0;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k16 = lanes16(n, j);
    __m512d lo, hi;
    widen16(_mm512_maskz_loadu_ps(k16, x + j), lo, hi);
    const __m512 r = scaledToFloat16(lo, hi, invV);
    _mm512_mask_storeu_ps(x + j, k16, r);
    widen16(r, lo, hi);
    // Not (≤ limit and ≥ −limit), NaN included: the ordered comparisons are false for NaN.
    outside |= static_cast<__mmask8>(~(_mm512_cmp_pd_mask(lo, hiV, _CMP_LE_OQ) & _mm512_cmp_pd_mask(lo, loV, _CMP_GE_OQ)));
    outside |= static_cast<__mmask8>(~(_mm512_cmp_pd_mask(hi, hiV, _CMP_LE_OQ) & _mm512_cmp_pd_mask(hi, loV, _CMP_GE_OQ)));
  }
  return outside ? firstOutside(x, n, limit) : -1;
}
#pragma GCC diagnostic pop
#endif

int64_t scaleLoop(float* x, int64_t n, double inv, double limit) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return scaleAvx512(x, n, inv, limit);
#endif
  return scaleScalar(x, n, inv, limit);
}

double squaresScalar(const float* x, int64_t n) {
  // Eight running sums: independent additions, so the loop is not bound by one sum's latency.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; k++) acc[k] += static_cast<double>(x[i + k]) * static_cast<double>(x[i + k]);
  }
  for (; i < n; i++) acc[0] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) double squaresAvx512(const float* x, int64_t n) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k16 = lanes16(n, j);
    squares16(x + j, k16, lo, hi);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
#pragma GCC diagnostic pop
#endif

double squaresLoop(const float* x, int64_t n) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return squaresAvx512(x, n);
#endif
  return squaresScalar(x, n);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// The stripe's scalars from argument i on: inv (float64), then Adam's b1, b2, a1, a2, step, sc2, eps.
// The SIMD Adam kernel takes its scalars as float32 parameters: the same rounding here.
AdamScalars stripeScalars(const Args& a, size_t i, double& inv, const char* name) {
  double d[8];
  for (size_t k = 0; k < 8; k++) {
    if (napi_get_value_double(a.env, a.v[i + k], &d[k]) != napi_ok) throw std::invalid_argument(std::string(name) + ": argument " + std::to_string(i + k) + " must be a number");
  }
  inv = d[0];
  return AdamScalars{static_cast<float>(d[1]), static_cast<float>(d[2]), static_cast<float>(d[3]), static_cast<float>(d[4]), static_cast<float>(d[5]), static_cast<float>(d[6]), static_cast<float>(d[7])};
}

// Flags: 1 = return the (first) gradient's Σ g²; 2 = the portable loop even where AVX-512 is present (tests).
int64_t stripeFlags(const Args& a, size_t i, const char* name) {
  const int64_t flags = intArg(a, i);
  if (flags < 0 || flags > 3) throw std::invalid_argument(std::string(name) + ": argument " + std::to_string(i) + " (flags) must be 0-3, got " + std::to_string(flags));
  return flags;
}

// A stripe's weights and moments: the current ones, then the next ones.
struct StripeOperands {
  float *w, *m, *v, *wOut, *mOut, *vOut;
};

// The six float32 operands of n values at byte-offset arguments i … i + 5, in StripeOperands' order.
StripeOperands stripeOperands(const Args& a, size_t i, int64_t n) {
  return StripeOperands{f32Arg(a, i, n), f32Arg(a, i + 1, n), f32Arg(a, i + 2, n), f32Arg(a, i + 3, n), f32Arg(a, i + 4, n), f32Arg(a, i + 5, n)};
}

// A stripe call: exactly `argc` arguments, argument 0 a Uint8Array over the step memory on an 8-byte
// boundary; `body` computes the call's Σ g² from them. Returns it, or throws a JavaScript error.
template <typename Body>
napi_value stripeCall(napi_env env, napi_callback_info info, size_t argc, const char* name, Body body) {
  return guarded(env, [&] {
    std::vector<napi_value> v = exactArgs(env, info, argc, name);
    size_t bytes = 0;
    uint8_t* base = static_cast<uint8_t*>(typedArrayOf(env, v[0], napi_uint8_array, bytes));
    if (base == nullptr) throw std::invalid_argument(std::string(name) + ": argument 0 must be a Uint8Array over the step's memory");
    if (reinterpret_cast<uintptr_t>(base) % 8 != 0) throw std::invalid_argument(std::string(name) + ": the memory's view must start on an 8-byte boundary");
    return numberValue(env, body(Args{env, std::move(v), base, bytes}));
  });
}

// stripeStep(memory: Uint8Array over the step memory, lanes, g, stride, slots, wide, w, m, v, wOut,
// mOut, vOut, inv, b1, b2, a1, a2, step, sc2, eps, flags) → Σ g² of slot 0 (0 unless flags has 1).
// Offsets and the stride are in bytes; every operand must lie inside `memory`.
napi_value StripeStep(napi_env env, napi_callback_info info) {
  return stripeCall(env, info, 21, "stripeStep", [](const Args& a) {
    const uint8_t* base = a.heap;
    const size_t bytes = a.heapBytes;
    const int64_t n = intArg(a, 1);
    const int64_t stride = intArg(a, 3), slots = intArg(a, 4), wide = intArg(a, 5);
    const int64_t width = wide ? 8 : 4;
    const int64_t limit = static_cast<int64_t>(bytes);
    // Each of these is at most the memory's size, so the products below cannot overflow.
    if (n < 0 || n > limit || slots < 1 || slots > limit || stride < 0 || stride > limit || (wide != 0 && wide != 1) || stride % width != 0 || (slots > 1 && stride < n * width)) {
      throw std::invalid_argument("stripeStep: expected lanes ≥ 0, slots ≥ 1, wide 0 or 1 and a stride of whole values past each slot's lanes");
    }
    // Slot 0 as an operand of n values of `width` bytes, then the last slot's end inside the memory.
    const int64_t g = intArg(a, 2);
    if (g < 0 || g > limit || g % width != 0 || static_cast<uint64_t>(g) + static_cast<uint64_t>(slots - 1) * static_cast<uint64_t>(stride) + static_cast<uint64_t>(n * width) > bytes) {
      throw std::out_of_range("stripeStep: the slots (byte offset " + std::to_string(g) + ", " + std::to_string(slots) + " of " + std::to_string(n) + " values) lie outside the memory of " + std::to_string(bytes) + " bytes");
    }
    const StripeOperands o = stripeOperands(a, 6, n);
    double inv = 0;
    const AdamScalars s = stripeScalars(a, 12, inv, "stripeStep");
    const int64_t flags = stripeFlags(a, 20, "stripeStep");
    const bool squares = (flags & 1) != 0, portable = (flags & 2) != 0;
    return wide ? stripeLoop(reinterpret_cast<const double*>(base + g), stride / 8, slots, o.w, o.m, o.v, o.wOut, o.mOut, o.vOut, n, inv, s, squares, portable)
                : stripeLoop(reinterpret_cast<const float*>(base + g), stride / 4, slots, o.w, o.m, o.v, o.wOut, o.mOut, o.vOut, n, inv, s, squares, portable);
  });
}

// stripeStepFrom(memory, lanes, gradient: Float32Array, gOut, w, m, v, wOut, mOut, vOut, inv, b1, b2,
// a1, a2, step, sc2, eps, flags, weightsCopy: Float32Array | null) → Σ g² (0 unless flags has 1).
// A step of one slot whose gradient still lies in the compute backend's own memory (the wasm heap):
// stripeStep over one slot, reading the gradient where the backend left it instead of from a copy
// in the slot; with gOut ≥ 0 it also writes the gradient into the slot there in the same pass (−1:
// not at all); with weightsCopy, also the next weights (a new tensor of the backend's), so that the
// next step need not upload them. The same bits as stripeStep. gOut … vOut are byte offsets into
// `memory`; gradient and weightsCopy hold exactly `lanes` values, lie outside `memory` and do not
// overlap each other.
napi_value StripeStepFrom(napi_env env, napi_callback_info info) {
  return stripeCall(env, info, 20, "stripeStepFrom", [env](const Args& a) {
    const std::vector<napi_value>& v = a.v;
    const uint8_t* base = a.heap;
    const size_t bytes = a.heapBytes;
    const int64_t n = intArg(a, 1);
    if (n < 0 || n > static_cast<int64_t>(bytes)) throw std::invalid_argument("stripeStepFrom: expected lanes ≥ 0 and within the memory, got " + std::to_string(n));
    const uintptr_t span = static_cast<uintptr_t>(n) * 4, m0 = reinterpret_cast<uintptr_t>(base), m1 = m0 + bytes;
    // An operand outside the memory: [p, p + span) overlaps neither [m0, m1) nor `other`'s lanes.
    auto outside = [&](const void* p, const void* other, const char* what) {
      const uintptr_t p0 = reinterpret_cast<uintptr_t>(p), o0 = reinterpret_cast<uintptr_t>(other);
      if (n > 0 && ((p0 < m1 && m0 < p0 + span) || (other != nullptr && p0 < o0 + span && o0 < p0 + span))) {
        throw std::invalid_argument(std::string("stripeStepFrom: ") + what + " overlaps the memory or the gradient");
      }
    };
    size_t gLength = 0;
    const float* g = static_cast<const float*>(typedArg(env, v[2], napi_float32_array, gLength, "stripeStepFrom: argument 2 (gradient) must be a Float32Array"));
    if (static_cast<int64_t>(gLength) != n) throw std::invalid_argument("stripeStepFrom: the gradient holds " + std::to_string(gLength) + " values, expected " + std::to_string(n));
    outside(g, nullptr, "the gradient");
    float* gOut = f32Arg(a, 3, n, true);
    const StripeOperands o = stripeOperands(a, 4, n);
    double inv = 0;
    const AdamScalars s = stripeScalars(a, 10, inv, "stripeStepFrom");
    const int64_t flags = stripeFlags(a, 18, "stripeStepFrom");
    float* copy = nullptr;
    napi_valuetype kind;
    if (napi_typeof(env, v[19], &kind) != napi_ok) throw std::invalid_argument("stripeStepFrom: argument 19 is unreadable");
    if (kind != napi_null) {
      size_t copyLength = 0;
      copy = static_cast<float*>(typedArg(env, v[19], napi_float32_array, copyLength, "stripeStepFrom: argument 19 (weightsCopy) must be a Float32Array or null"));
      if (static_cast<int64_t>(copyLength) != n) throw std::invalid_argument("stripeStepFrom: weightsCopy holds " + std::to_string(copyLength) + " values, expected " + std::to_string(n));
      outside(copy, g, "weightsCopy");
    }
    return stripeLoop(g, 0, 1, o.w, o.m, o.v, o.wOut, o.mOut, o.vOut, n, inv, s, (flags & 1) != 0, (flags & 2) != 0, false, copy, gOut);
  });
}

// ---------------------------------------------------------------------------------------------
// The coordinator's gradient passes (see foldLoop above). Operands are whole Float32Arrays.

// A Float32Array argument's data and length.
float* floatsArg(napi_env env, napi_value x, size_t& length, const char* what) {
  return static_cast<float*>(typedArg(env, x, napi_float32_array, length, std::string(what) + " must be a Float32Array"));
}

double numberArg(napi_env env, napi_value x, const char* what) {
  double d = 0;
  if (napi_get_value_double(env, x, &d) != napi_ok) throw std::invalid_argument(std::string(what) + " must be a number");
  return d;
}

// The two ranges overlap (a fold into itself, or Adam's operands sharing memory where they must not).
bool overlaps(const float* a, const float* b, size_t n) {
  // As addresses: < between pointers into different arrays is unspecified in C++.
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b), bytes = n * sizeof(float);
  return n > 0 && x < y + bytes && y < x + bytes;
}

// foldInto(dst: Float32Array, src: Float32Array, first: boolean): dst = (first ? 0 : dst) + src.
napi_value FoldInto(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 3, "foldInto");
    size_t n = 0, m = 0;
    float* dst = floatsArg(env, v[0], n, "foldInto: dst");
    const float* src = floatsArg(env, v[1], m, "foldInto: src");
    bool first = false;
    if (napi_get_value_bool(env, v[2], &first) != napi_ok) throw std::invalid_argument("foldInto: first must be a boolean");
    if (m != n) throw std::invalid_argument("foldInto: expected src of " + std::to_string(n) + " floats, got " + std::to_string(m));
    if (overlaps(dst, src, n)) throw std::invalid_argument("foldInto: dst and src overlap");
    foldLoop(dst, src, static_cast<int64_t>(n), first);
  });
}

// scaleBounded(x: Float32Array, inv, limit) → the first index past ±limit after scaling, or −1.
napi_value ScaleBounded(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 3, "scaleBounded");
    size_t n = 0;
    float* x = floatsArg(env, v[0], n, "scaleBounded: x");
    return numberValue(env, static_cast<double>(scaleLoop(x, static_cast<int64_t>(n), numberArg(env, v[1], "scaleBounded: inv"), numberArg(env, v[2], "scaleBounded: limit"))));
  });
}

// sumSquares(x: Float32Array) → Σ x² in float64 (NaN or Infinity where a value is not finite).
napi_value SumSquares(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 1, "sumSquares");
    size_t n = 0;
    const float* x = floatsArg(env, v[0], n, "sumSquares: x");
    return numberValue(env, squaresLoop(x, static_cast<int64_t>(n)));
  });
}

// adamInPlace(w, g, m, v: Float32Array, b1, b2, a1, a2, step, sc2, eps): Adam over every lane, w, m
// and v rewritten where they lie; the scalars rounded to float32 as the SIMD kernel takes them.
napi_value AdamInPlace(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 11, "adamInPlace");
    size_t n = 0, ng = 0, nm = 0, nv = 0;
    float* w = floatsArg(env, v[0], n, "adamInPlace: w");
    const float* g = floatsArg(env, v[1], ng, "adamInPlace: g");
    float* m = floatsArg(env, v[2], nm, "adamInPlace: m");
    float* vv = floatsArg(env, v[3], nv, "adamInPlace: v");
    if (ng != n || nm != n || nv != n) throw std::invalid_argument("adamInPlace: expected w, g, m and v of one length, got " + std::to_string(n) + ", " + std::to_string(ng) + ", " + std::to_string(nm) + " and " + std::to_string(nv));
    if (overlaps(w, g, n) || overlaps(w, m, n) || overlaps(w, vv, n) || overlaps(g, m, n) || overlaps(g, vv, n) || overlaps(m, vv, n)) throw std::invalid_argument("adamInPlace: w, g, m and v must not overlap");
    float d[7];
    const char* names[] = {"b1", "b2", "a1", "a2", "step", "sc2", "eps"};
    for (int i = 0; i < 7; i++) d[i] = static_cast<float>(numberArg(env, v[4 + i], names[i]));
    const AdamScalars s{d[0], d[1], d[2], d[3], d[4], d[5], d[6]};
    // g as it lies (raw): the SIMD Adam kernel reads it so, −0 included.
    stripeLoop(g, 0, 1, w, m, vv, w, m, vv, static_cast<int64_t>(n), 1.0, s, false, false, true);
  });
}

// ---------------------------------------------------------------------------------------------
// gatherRows(dst: Uint8Array, dstOffset, src: Uint8Array, indices: Uint32Array, rowBytes): copies
// row indices[j] of src (rowBytes each) to dst at dstOffset + j·rowBytes: the shared-memory step's
// gather of a slice's images (coordinator/shared-step.ts). JavaScript's TypedArray.set into shared
// memory copies word by word (V8's relaxed memmove); this is one memmove per row, with the next
// row's lines prefetched while the current one is copied.

napi_value GatherRows(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    const std::vector<napi_value> v = exactArgs(env, info, 5, "gatherRows");
    auto view = [&](napi_value x, napi_typedarray_type want, size_t& length) {
      return typedArg(env, x, want, length, "gatherRows: expected (Uint8Array, offset, Uint8Array, Uint32Array, rowBytes)");
    };
    size_t dstBytes = 0, srcBytes = 0, count = 0;
    uint8_t* dst = static_cast<uint8_t*>(view(v[0], napi_uint8_array, dstBytes));
    const uint8_t* src = static_cast<const uint8_t*>(view(v[2], napi_uint8_array, srcBytes));
    const uint32_t* indices = static_cast<const uint32_t*>(view(v[3], napi_uint32_array, count));
    if (count == 0) return;
    double offset, row;
    if (napi_get_value_double(env, v[1], &offset) != napi_ok || napi_get_value_double(env, v[4], &row) != napi_ok || !(offset >= 0) || !(row >= 1) || offset != std::floor(offset) || row != std::floor(row) || offset > static_cast<double>(dstBytes) || row > static_cast<double>(srcBytes)) {
      throw std::invalid_argument("gatherRows: expected a whole dstOffset inside dst and a whole rowBytes of at least 1 and at most src's length");
    }
    const size_t rowBytes = static_cast<size_t>(row), at = static_cast<size_t>(offset), rows = srcBytes / rowBytes;
    if (count > (dstBytes - at) / rowBytes) throw std::out_of_range("gatherRows: " + std::to_string(count) + " rows of " + std::to_string(rowBytes) + " bytes do not fit in dst after byte " + std::to_string(at));
    // Checked as copied: indices in shared memory cannot change between the check and the use.
    std::vector<uint32_t> rowsAt(indices, indices + count);
    for (size_t j = 0; j < count; j++) {
      if (rowsAt[j] >= rows) throw std::out_of_range("gatherRows: index " + std::to_string(rowsAt[j]) + " at position " + std::to_string(j) + " is past src's " + std::to_string(rows) + " rows");
    }
    for (size_t j = 0; j < count; j++) {
      if (j + 1 < count) {
        const uint8_t* next = src + static_cast<size_t>(rowsAt[j + 1]) * rowBytes;
        for (size_t b = 0; b < rowBytes; b += 64) __builtin_prefetch(next + b);
      }
      // memmove: dst and src may be views of one buffer.
      std::memmove(dst + at + j * rowBytes, src + static_cast<size_t>(rowsAt[j]) * rowBytes, rowBytes);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// populatePages(view: Uint8Array) → bytes: maps every whole page inside the view now, rather than
// one page fault per page at its first write in a step. madvise(MADV_POPULATE_WRITE) (Linux 5.14+)
// maps them in one system call; then each page is touched once with an atomic add of 0, which writes
// nothing but makes the access a write: on a paravirtualized VM (this project's, shadow page tables)
// the first access to a page still traps to the hypervisor after the guest has mapped it. Measured
// there for 16 MiB: 35-42 ms against 58-66 ms faulted in page by page, and off the step's path.
// Values are unchanged, even under concurrent writers. Where madvise is refused (older kernels) the
// touches alone map the pages. Returns the bytes touched (0 for a view holding no whole page).

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

napi_value PopulatePages(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    double result = 0;
    const std::vector<napi_value> v = exactArgs(env, info, 1, "populatePages");
    size_t bytes = 0;
    uint8_t* data = static_cast<uint8_t*>(typedArg(env, v[0], napi_uint8_array, bytes, "populatePages: argument 0 must be a Uint8Array"));
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || (page & (page - 1)) != 0) throw std::runtime_error("populatePages: the system's page size is unknown");
    const uintptr_t p = static_cast<uintptr_t>(page), start = reinterpret_cast<uintptr_t>(data), end = start + bytes;
    const uintptr_t first = (start + p - 1) & ~(p - 1), last = end & ~(p - 1);
    if (bytes > 0 && last > first) {
      madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
      // volatile: a compiler may not fold an add of 0 into a load, which would not be a write access.
      for (uintptr_t at = first; at < last; at += p) __atomic_fetch_add(reinterpret_cast<volatile int32_t*>(at), 0, __ATOMIC_RELAXED);
      result = static_cast<double>(last - first);
    }
    return numberValue(env, result);
  });
}

// ---------------------------------------------------------------------------------------------
// keepFreedMemory(mmapThreshold, trimThreshold) → boolean: glibc's malloc told to keep the memory
// it frees (common/freed-memory.ts): blocks up to mmapThreshold bytes come from the heap instead of
// a mapping of their own, and the heap is trimmed only past trimThreshold bytes free at its top.
// True when glibc took both; false elsewhere (another C library).

napi_value KeepFreedMemory(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    bool ok = false;
    const std::vector<napi_value> v = exactArgs(env, info, 2, "keepFreedMemory");
    const double mmap = numberArg(env, v[0], "keepFreedMemory: argument 0 (mmapThreshold)"), trim = numberArg(env, v[1], "keepFreedMemory: argument 1 (trimThreshold)");
    if (!(mmap >= 0 && mmap <= 2147483647.0 && trim >= 0 && trim <= 2147483647.0) || mmap != std::floor(mmap) || trim != std::floor(trim)) {
      throw std::invalid_argument("keepFreedMemory: expected whole byte counts from 0 to 2^31 - 1, got " + std::to_string(mmap) + " and " + std::to_string(trim));
    }
#if defined(__GLIBC__)
    ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap)) == 1 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim)) == 1;
#endif
    napi_value out;
    napi_get_boolean(env, ok, &out);
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// info(): what is loaded, for the backend_selected log

napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  const dnnl_version_t* ver = dnnl_version();
  std::string version = std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." + std::to_string(ver->patch);
  napi_create_string_utf8(env, version.c_str(), version.size(), &v);
  napi_set_named_property(env, obj, "onednn", v);
  const char* isas[] = {"any", "sse41", "avx", "avx2", "avx512_core", "other"};
  int isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: isa = 1; break;
    case dnnl::cpu_isa::avx: isa = 2; break;
    case dnnl::cpu_isa::avx2: isa = 3; break;
    case dnnl::cpu_isa::avx512_core: isa = 4; break;
    default: isa = dnnl::get_effective_cpu_isa() == dnnl::cpu_isa::all ? 0 : 5;
  }
  // Anything newer than avx512_core (VNNI, BF16, AMX) is still AVX-512 for float32.
  if (isa == 5 && static_cast<int>(dnnl::get_effective_cpu_isa()) > static_cast<int>(dnnl::cpu_isa::avx512_core)) isa = 4;
  napi_create_string_utf8(env, isas[isa], NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "isa", v);
  napi_create_int32(env, omp_get_max_threads(), &v);
  napi_set_named_property(env, obj, "threads", v);
  napi_create_string_utf8(env, lastImpl.c_str(), lastImpl.size(), &v);
  napi_set_named_property(env, obj, "lastImplementation", v);
  return obj;
}

}  // namespace

NAPI_MODULE_INIT() {
  // One thread per call: dtrain runs one worker thread per core, and each is single-threaded.
  omp_set_num_threads(1);
  struct Fn {
    const char* name;
    napi_callback cb;
  } fns[] = {{"conv2d", Conv2D}, {"conv2dBackpropInput", Conv2DBackpropInput}, {"conv2dBackpropFilter", Conv2DBackpropFilter},
             {"matMul", MatMul}, {"maxPool", MaxPool}, {"maxPoolGrad", MaxPoolGrad}, {"batchNorm", BatchNorm},
             {"batchNormGrad", BatchNormGrad}, {"bnMoments", BnMoments}, {"bnBackwardSums", BnBackwardSums},
             {"bnGradInput", BnGradInput}, {"bnGradInputRelu", BnGradInputRelu}, {"reluInactiveSum", ReluInactiveSum}, {"reluBackward", ReluBackward}, {"biasAdd", BiasAdd}, {"sumRows", SumRows}, {"standardize", Standardize}, {"stripeStep", StripeStep}, {"stripeStepFrom", StripeStepFrom}, {"gatherRows", GatherRows}, {"populatePages", PopulatePages}, {"keepFreedMemory", KeepFreedMemory},
             {"foldInto", FoldInto}, {"scaleBounded", ScaleBounded}, {"sumSquares", SumSquares}, {"adamInPlace", AdamInPlace}, {"info", Info}};
  for (const Fn& f : fns) {
    napi_value fn;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn);
    napi_set_named_property(env, exports, f.name, fn);
  }
  return exports;
}
