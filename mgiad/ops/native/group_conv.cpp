// Grouped 3x3 convolution with 4 or 8 input = output channels per group: stride 1, padding 1,
// fp32, channels_last (NHWC) memory. Forward, input gradient and weight gradient.
//
// Built twice by mgiad/ops/native.py, once per instruction set (-mavx2 -mfma, and in addition
// -mavx512f -mavx512bw -mavx512vl -mavx512dq), each into its own operator namespace MGIAD_NS;
// the loader picks the one the CPU runs. Everything but the registration is internal to this
// file, so two builds loaded into one process cannot resolve each other's symbols.
//
// "Rotate the outputs, not the inputs". A 128-bit lane of a SIMD vector is one group of 4
// channels (4g..4g+3), so the same code serves 4, 8 and 16 float lanes. The group's output
//     y[4g+j] = sum_ci W[4g+j, ci] x[4g+ci]                       (per tap, summed over 9 taps)
// is written with ci = (j + r) mod 4 as a sum over the rotation r = 0..3. Accumulator z_r
// takes the input vector as it is in memory, lane 4g+i holding x[4g+i], times a weight vector
// pre-rotated per lane, wr_r[4g+i] = W[4g + ((i - r) mod 4), i]; its lane 4g+i then holds the
// contribution of x[4g+i] to output j = (i - r) mod 4. At the end
//     y[4g+j] = z_0[4g+j] + z_1[4g+(j+1)%4] + z_2[4g+(j+2)%4] + z_3[4g+(j+3)%4],
// one in-lane permute per rotation, 36 FMAs per output vector and none shuffled inside.
//
// 8 channels per group (G = 8): a 256-bit half-vector is one group, two 4-lane blocks h = 0, 4.
// Inputs from the same block are the scheme above; inputs from the other block are the same
// with the input vector's two 128-bit lanes exchanged (one permute per input vector, shared by
// all taps and rotations that read it), times a second set of rotated weights
//     wr_r[8g+h+i] = W[8g+h+(i-r)%4, h+i],   wr_{4+r}[8g+h+i] = W[8g+h+(i-r)%4, (h^4)+i],
// into the same 4 accumulators: 72 FMAs per output vector, the same final in-lane rotations.
//
// Input gradient: the same kernel on the output gradient with the per-group transposed,
// spatially flipped weights. Weight gradient: the output gradient rotated (once per pixel and
// pass) times the unshuffled input gives the per-lane products in exactly the layout of wr;
// per-thread partial sums, reduced and un-rotated at the end.
//
// Threads: at::parallel_for over the N*H output rows (OpenMP, hence -fopenmp).

#include <immintrin.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#ifndef MGIAD_NS
#error "MGIAD_NS (the operator namespace of this build) must be defined"
#endif
#if !defined(__AVX2__) || !defined(__FMA__)
#error "build with -mavx2 -mfma at least"
#endif

namespace {

using i64 = int64_t;

// Rotation within every group of 4 lanes: lane j takes lane (j + R) mod 4.
template <int R>
constexpr int rot_imm() {
  return ((0 + R) & 3) | (((1 + R) & 3) << 2) | (((2 + R) & 3) << 4) | (((3 + R) & 3) << 6);
}

struct V128 {
  using T = __m128;
  static constexpr int L = 4;
  static T load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, T v) { _mm_storeu_ps(p, v); }
  static T zero() { return _mm_setzero_ps(); }
  static T add(T a, T b) { return _mm_add_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm_fmadd_ps(a, b, c); }
  template <int R>
  static T rot(T v) {
    if constexpr ((R & 3) == 0) return v; else return _mm_permute_ps(v, rot_imm<R & 3>());
  }
};

struct V256 {
  using T = __m256;
  static constexpr int L = 8;
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T zero() { return _mm256_setzero_ps(); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  template <int R>
  static T rot(T v) {
    if constexpr ((R & 3) == 0) return v; else return _mm256_permute_ps(v, rot_imm<R & 3>());
  }
  // exchange the two 128-bit lanes of every 256-bit group
  static T swap(T v) { return _mm256_permute2f128_ps(v, v, 0x01); }
};

#ifdef __AVX512F__
struct V512 {
  using T = __m512;
  static constexpr int L = 16;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T zero() { return _mm512_setzero_ps(); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  template <int R>
  static T rot(T v) {
    if constexpr ((R & 3) == 0) return v; else return _mm512_permute_ps(v, rot_imm<R & 3>());
  }
  static T swap(T v) { return _mm512_shuffle_f32x4(v, v, 0xB1); }  // 128-bit lanes 1 0 3 2
};
#endif

// Register tiles, per vector width and build: P output pixels per forward block (4 accumulators
// each), RB rotations per weight-gradient pass (3 taps x RB accumulators). AVX2 has 16 vector
// registers, AVX-512 32 (also for 256- and 128-bit vectors).
#ifdef __AVX512F__
constexpr int kRegs = 32;
#else
constexpr int kRegs = 16;
#endif
#ifndef MGIAD_FWD_P  // measured best on Zen 4 (benchmarks/native_kernels.py --tune): 4 and 3
#define MGIAD_FWD_P (kRegs == 32 ? 4 : 3)
#endif
#ifndef MGIAD_WGRAD_RB
#define MGIAD_WGRAD_RB (kRegs == 32 ? 4 : 2)
#endif
#ifndef MGIAD_FWD_P8  // G = 8: 4 accumulators and 2 input vectors per pixel
#define MGIAD_FWD_P8 (kRegs == 32 ? 4 : 2)
#endif
#ifndef MGIAD_WGRAD_RB8  // G = 8: 6 accumulators per rotation
#define MGIAD_WGRAD_RB8 (kRegs == 32 ? 2 : 1)
#endif
template <int G>
constexpr int kP = G == 4 ? MGIAD_FWD_P : MGIAD_FWD_P8;
template <int G>
constexpr int kRB = G == 4 ? MGIAD_WGRAD_RB : MGIAD_WGRAD_RB8;
static_assert(kRB<4> == 1 || kRB<4> == 2 || kRB<4> == 4, "rotations per pass divide 4");
static_assert(kRB<8> == 1 || kRB<8> == 2 || kRB<8> == 4, "rotations per pass divide 4");

// ---------------------------------------------------------------------------------------------
// Forward (and input gradient): P pixels w0..w0+P-1 of one output row, channels c0..c0+L-1.
// xr[kh]: input row h+kh-1 (nullptr outside the image); wr: rotated weights [9][G][C].
// EDGE: a pixel of the block may touch column -1 or W (those taps read zeros).
// ar: the addend's row (y = addend + conv), or nullptr.
template <class V, int G, int P, bool EDGE>
inline void fwd_block(const float* const* xr, const float* wr, float* yr, const float* ar, i64 w0,
                      i64 W, i64 C, i64 c0) {
  using T = typename V::T;
  T z[4][P];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r)
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) z[r][p] = V::zero();
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; ++kh) {
    const float* x = xr[kh];
    if (x == nullptr) continue;
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      const float* wt = wr + (kh * 3 + kw) * G * C + c0;
      T xv[P];
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) {
        const i64 col = w0 + p + kw - 1;
        xv[p] = (EDGE && (col < 0 || col >= W)) ? V::zero() : V::load(x + col * C + c0);
      }
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const T wv = V::load(wt + r * C);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) z[r][p] = V::fma(xv[p], wv, z[r][p]);
      }
      if constexpr (G == 8) {
        T xs[P];
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) xs[p] = V::swap(xv[p]);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const T wv = V::load(wt + (4 + r) * C);
#pragma GCC unroll 8
          for (int p = 0; p < P; ++p) z[r][p] = V::fma(xs[p], wv, z[r][p]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    const T a = V::add(z[0][p], V::template rot<1>(z[1][p]));
    const T b = V::add(V::template rot<2>(z[2][p]), V::template rot<3>(z[3][p]));
    const T y = V::add(a, b);
    // the addend added to the rounded convolution: the bits of a separate sum addend + conv
    V::store(yr + (w0 + p) * C + c0, ar ? V::add(V::load(ar + (w0 + p) * C + c0), y) : y);
  }
}

template <class V, int G, int P, bool EDGE>
inline void fwd_chunks(const float* const* xr, const float* wr, float* yr, const float* ar, i64 w,
                       i64 W, i64 C, i64& c0) {
  for (; c0 + V::L <= C; c0 += V::L) fwd_block<V, G, P, EDGE>(xr, wr, yr, ar, w, W, C, c0);
}

// All channel chunks of a pixel block before the next block (C is a multiple of G).
template <int G, int P, bool EDGE>
inline void fwd_pixels(const float* const* xr, const float* wr, float* yr, const float* ar, i64 w,
                       i64 W, i64 C) {
  i64 c0 = 0;
#ifdef __AVX512F__
  fwd_chunks<V512, G, P, EDGE>(xr, wr, yr, ar, w, W, C, c0);
#endif
  fwd_chunks<V256, G, P, EDGE>(xr, wr, yr, ar, w, W, C, c0);
  if constexpr (G == 4) fwd_chunks<V128, G, P, EDGE>(xr, wr, yr, ar, w, W, C, c0);
}

// One output row: blocks of kP pixels (EDGE only where a block touches column -1 or W, so
// small images run full register tiles too), the rest in blocks of 2 and 1. Every channel chunk
// of a block before the next block (1.3x faster than chunk by chunk at C >= 64 on Zen 4).
template <int G>
inline void fwd_row(const float* const* xr, const float* wr, float* yr, const float* ar, i64 W,
                    i64 C) {
  constexpr int P = kP<G>;
  i64 w = 0;
  for (; w + P <= W; w += P) {
    if (w == 0 || w + P >= W) fwd_pixels<G, P, true>(xr, wr, yr, ar, w, W, C);
    else fwd_pixels<G, P, false>(xr, wr, yr, ar, w, W, C);
  }
  if constexpr (P > 2) for (; w + 2 <= W; w += 2) fwd_pixels<G, 2, true>(xr, wr, yr, ar, w, W, C);
  for (; w < W; ++w) fwd_pixels<G, 1, true>(xr, wr, yr, ar, w, W, C);
}

// Rows per task: enough work per thread start (a few hundred thousand FMAs).
inline i64 grain(i64 W, i64 C, i64 G) {
  const i64 per_row = W * C * G * 9;
  return std::max<i64>(1, (1 << 18) / std::max<i64>(1, per_row));
}

void check_input(const at::Tensor& x, const char* what, i64 G) {
  TORCH_CHECK(x.device().is_cpu(), "mgiad group_conv3x3: ", what, " must be a CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat, "mgiad group_conv3x3: ", what, " must be float32, got ",
              x.scalar_type());
  TORCH_CHECK(x.dim() == 4, "mgiad group_conv3x3: ", what, " must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(G == 4 || G == 8, "mgiad group_conv3x3: 4 or 8 channels per group, got ", G);
  TORCH_CHECK(x.size(1) % G == 0, "mgiad group_conv3x3: ", what, " channels must be a multiple of ",
              G, " (", G, " per group), got ", x.size(1));
}

i64 check_weight(const at::Tensor& w, i64 C) {
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kFloat,
              "mgiad group_conv3x3: weight must be a CPU float32 tensor");
  TORCH_CHECK(w.dim() == 4 && w.size(0) == C && (w.size(1) == 4 || w.size(1) == 8) &&
                  w.size(2) == 3 && w.size(3) == 3,
              "mgiad group_conv3x3: weight must be [C, 4, 3, 3] or [C, 8, 3, 3] with C = ", C,
              ", got ", w.sizes());
  return w.size(1);
}

// Rotated weights wr[t][q][c], c = G*g + h + i (h = 0 for G = 4; 0 or 4 for G = 8), for the
// rotation q = r < 4 from the same 4-channel block and (G = 8) q = 4 + r from the other one:
//     wr[t][r][c]   = Wt[g; h + (i-r)%4, h + i, t],   wr[t][4+r][c] = Wt[g; h + (i-r)%4, (h^4) + i, t]
// with Wt[g; o, ci, t] = W[G*g + o, ci, t] (forward) or W[G*g + ci, o, 8-t] (input gradient:
// transposed per group, spatially flipped).
std::vector<float> rotated(const at::Tensor& w_, bool adjoint) {
  const at::Tensor w = w_.contiguous();
  const float* W = w.data_ptr<float>();
  const i64 C = w.size(0), G = w.size(1);
  auto Wt = [&](i64 g, int o, int ci, int t) {
    return adjoint ? W[((G * g + ci) * G + o) * 9 + (8 - t)] : W[((G * g + o) * G + ci) * 9 + t];
  };
  std::vector<float> wr(9 * G * C);
  for (i64 g = 0; g < C / G; ++g)
    for (int h = 0; h < G; h += 4)
      for (int i = 0; i < 4; ++i)
        for (int r = 0; r < 4; ++r)
          for (int t = 0; t < 9; ++t) {
            const int o = h + ((i - r) & 3);
            wr[(t * G + r) * C + G * g + h + i] = Wt(g, o, h + i, t);
            if (G == 8) wr[(t * G + 4 + r) * C + G * g + h + i] = Wt(g, o, (h ^ 4) + i, t);
          }
  return wr;
}

// y = conv(x) [+ addend]; addend: a channels_last tensor of x's shape, or undefined.
at::Tensor conv(const at::Tensor& x_, const std::vector<float>& wr, i64 G,
                const at::Tensor& addend = at::Tensor()) {
  const at::Tensor x = x_.contiguous(at::MemoryFormat::ChannelsLast);
  const i64 N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor y = at::empty({N, C, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float* w = wr.data();
  const float* ap = addend.defined() ? addend.data_ptr<float>() : nullptr;
  const i64 row = W * C;
  at::parallel_for(0, N * H, grain(W, C, G), [&](i64 begin, i64 end) {
    for (i64 nh = begin; nh < end; ++nh) {
      const i64 n = nh / H, h = nh % H;
      const float* img = xp + n * H * row;
      const float* xr[3] = {h > 0 ? img + (h - 1) * row : nullptr, img + h * row,
                            h + 1 < H ? img + (h + 1) * row : nullptr};
      const float* ar = ap ? ap + nh * row : nullptr;
      if (G == 4) fwd_row<4>(xr, w, yp + nh * row, ar, W, C);
      else fwd_row<8>(xr, w, yp + nh * row, ar, W, C);
    }
  });
  return y;
}

at::Tensor forward(const at::Tensor& x, const at::Tensor& weight) {
  const i64 G = check_weight(weight, x.dim() == 4 ? x.size(1) : -1);
  check_input(x, "input", G);
  return conv(x, rotated(weight, false), G);
}

// addend + conv(x): the residual f − A u of a smoothing step in one pass (weight = −A).
at::Tensor forward_add(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& addend) {
  const i64 G = check_weight(weight, x.dim() == 4 ? x.size(1) : -1);
  check_input(x, "input", G);
  TORCH_CHECK(addend.device().is_cpu() && addend.scalar_type() == at::kFloat &&
                  addend.sizes() == x.sizes() && addend.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad group_conv3x3: the addend must be a float32 channels_last CPU tensor of the "
              "input's shape ", x.sizes(), ", got ", addend.sizes());
  return conv(x, rotated(weight, false), G, addend);
}

at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight) {
  const i64 G = check_weight(weight, grad.dim() == 4 ? grad.size(1) : -1);
  check_input(grad, "grad_output", G);
  return conv(grad, rotated(weight, true), G);
}

// ---------------------------------------------------------------------------------------------
// Weight gradient. acc: this thread's sums [9][G][C] in the layout of wr. One pass: taps
// t = 3kh..3kh+2, rotations R0..R0+RB-1, channels c0..c0+L-1. a: sums from the same 4-channel
// block; bt (G = 8): sums from the other block, kept with the two 128-bit lanes exchanged
// (x * swap(dy_r) instead of swap(x) * dy_r: one permute per pixel and rotation, not per tap).
template <class V, int G, int RB, int R0, bool LEFT, bool RIGHT>
inline void wgrad_pixel(typename V::T (&a)[3][RB], typename V::T (&bt)[3][RB], const float* dy,
                        const float* x, i64 w, i64 C, i64 c0) {
  using T = typename V::T;
  const T d = V::load(dy + w * C + c0);
  T dr[RB], ds[RB];
  // lane c = 4b+i of the rotation r must hold dy[4b + (i-r)%4]: lane i takes lane (i + 4 - r) % 4
#pragma GCC unroll 4
  for (int rr = 0; rr < RB; ++rr) {
    if (rr == 0) dr[rr] = V::template rot<(4 - R0) & 3>(d);
    if constexpr (RB > 1) if (rr == 1) dr[rr] = V::template rot<(4 - R0 - 1) & 3>(d);
    if constexpr (RB > 2) if (rr == 2) dr[rr] = V::template rot<(4 - R0 - 2) & 3>(d);
    if constexpr (RB > 3) if (rr == 3) dr[rr] = V::template rot<(4 - R0 - 3) & 3>(d);
    if constexpr (G == 8) ds[rr] = V::swap(dr[rr]);
  }
#pragma GCC unroll 3
  for (int kw = 0; kw < 3; ++kw) {
    if ((LEFT && kw == 0) || (RIGHT && kw == 2)) continue;
    const T xv = V::load(x + (w + kw - 1) * C + c0);
#pragma GCC unroll 4
    for (int rr = 0; rr < RB; ++rr) {
      a[kw][rr] = V::fma(xv, dr[rr], a[kw][rr]);
      if constexpr (G == 8) bt[kw][rr] = V::fma(xv, ds[rr], bt[kw][rr]);
    }
  }
}

// Rows h0..h1-1 of one image: x, dy point at the image, row = W*C floats.
struct RowBlock {
  const float* x;
  const float* dy;
  i64 h0, h1, H, W, C;
};

// One pass over a block of rows; the 3*RB (G = 8: 6*RB) sums stay in registers for the block.
template <class V, int G, int RB, int R0>
inline void wgrad_pass(float* acc, int kh, const RowBlock& b, i64 c0) {
  using T = typename V::T;
  const i64 W = b.W, C = b.C, row = W * C;
  const i64 h_lo = std::max<i64>(b.h0, 1 - kh), h_hi = std::min<i64>(b.h1, b.H + 1 - kh);
  if (h_lo >= h_hi) return;
  T a[3][RB], bt[3][RB];
  auto same = [&](int kw, int rr) { return acc + ((kh * 3 + kw) * G + R0 + rr) * C + c0; };
  auto other = [&](int kw, int rr) { return acc + ((kh * 3 + kw) * G + 4 + R0 + rr) * C + c0; };
#pragma GCC unroll 3
  for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 4
    for (int rr = 0; rr < RB; ++rr) {
      a[kw][rr] = V::load(same(kw, rr));
      if constexpr (G == 8) bt[kw][rr] = V::swap(V::load(other(kw, rr)));
    }
  for (i64 h = h_lo; h < h_hi; ++h) {  // input row h+kh-1 is inside the image
    const float* dy = b.dy + h * row;
    const float* x = b.x + (h + kh - 1) * row;
    if (W == 1) {
      wgrad_pixel<V, G, RB, R0, true, true>(a, bt, dy, x, 0, C, c0);
      continue;
    }
    wgrad_pixel<V, G, RB, R0, true, false>(a, bt, dy, x, 0, C, c0);
    for (i64 w = 1; w < W - 1; ++w) wgrad_pixel<V, G, RB, R0, false, false>(a, bt, dy, x, w, C, c0);
    wgrad_pixel<V, G, RB, R0, false, true>(a, bt, dy, x, W - 1, C, c0);
  }
#pragma GCC unroll 3
  for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 4
    for (int rr = 0; rr < RB; ++rr) {
      V::store(same(kw, rr), a[kw][rr]);
      if constexpr (G == 8) V::store(other(kw, rr), V::swap(bt[kw][rr]));
    }
}

template <class V, int G>
inline void wgrad_chunk(float* acc, const RowBlock& b, i64 c0) {
  constexpr int RB = kRB<G>;
  for (int kh = 0; kh < 3; ++kh) {
    if constexpr (RB == 4) {
      wgrad_pass<V, G, 4, 0>(acc, kh, b, c0);
    } else if constexpr (RB == 2) {
      wgrad_pass<V, G, 2, 0>(acc, kh, b, c0);
      wgrad_pass<V, G, 2, 2>(acc, kh, b, c0);
    } else {
      wgrad_pass<V, G, 1, 0>(acc, kh, b, c0);
      wgrad_pass<V, G, 1, 1>(acc, kh, b, c0);
      wgrad_pass<V, G, 1, 2>(acc, kh, b, c0);
      wgrad_pass<V, G, 1, 3>(acc, kh, b, c0);
    }
  }
}

template <int G>
inline void wgrad_block(float* acc, const RowBlock& b) {
  i64 c0 = 0;
#ifdef __AVX512F__
  for (; c0 + 16 <= b.C; c0 += 16) wgrad_chunk<V512, G>(acc, b, c0);
#endif
  for (; c0 + 8 <= b.C; c0 += 8) wgrad_chunk<V256, G>(acc, b, c0);
  if constexpr (G == 4) for (; c0 + 4 <= b.C; c0 += 4) wgrad_chunk<V128, G>(acc, b, c0);
}

// Rows per block: about 64 KiB of input and output gradient (L2-resident while every channel
// chunk and tap row sweeps over it), at most one image.
inline i64 wgrad_rows(i64 H, i64 W, i64 C) {
  return std::clamp<i64>((64 * 1024) / std::max<i64>(1, 8 * W * C), 1, H);
}

at::Tensor weight_grad(const at::Tensor& grad_, const at::Tensor& x_, int64_t G) {
  check_input(grad_, "grad_output", G);
  check_input(x_, "input", G);
  TORCH_CHECK(grad_.sizes() == x_.sizes(), "mgiad group_conv3x3: grad_output ", grad_.sizes(),
              " and input ", x_.sizes(), " must have one shape (stride 1, padding 1)");
  const at::Tensor dy = grad_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor x = x_.contiguous(at::MemoryFormat::ChannelsLast);
  const i64 N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const i64 nthreads = std::max<i64>(1, at::get_num_threads());
  const i64 per_thread = 9 * G * C;
  std::vector<float> sums(nthreads * per_thread, 0.0f);
  const float* xp = x.data_ptr<float>();
  const float* dp = dy.data_ptr<float>();
  const i64 row = W * C, rows = wgrad_rows(H, W, C), blocks_per_image = (H + rows - 1) / rows;
  if (x.numel() > 0) {
    const i64 per_block = std::max<i64>(1, rows * W * C * G * 9);
    at::parallel_for(0, N * blocks_per_image, std::max<i64>(1, (1 << 18) / per_block),
                     [&](i64 begin, i64 end) {
      const i64 tid = at::get_thread_num();
      TORCH_CHECK(tid < nthreads, "mgiad group_conv3x3: thread ", tid, " of ", nthreads);
      float* acc = sums.data() + tid * per_thread;
      for (i64 blk = begin; blk < end; ++blk) {
        const i64 n = blk / blocks_per_image, h0 = (blk % blocks_per_image) * rows;
        const RowBlock b{xp + n * H * row, dp + n * H * row, h0, std::min(H, h0 + rows), H, W, C};
        if (G == 4) wgrad_block<4>(acc, b);
        else wgrad_block<8>(acc, b);
      }
    });
  }
  at::Tensor gw = at::empty({C, G, 3, 3}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* out = gw.data_ptr<float>();
  auto total = [&](i64 q) {  // sum over the threads of element q of the [9][G][C] layout
    float s = 0.0f;
    for (i64 k = 0; k < nthreads; ++k) s += sums[k * per_thread + q];
    return s;
  };
  for (i64 g = 0; g < C / G; ++g)
    for (int h = 0; h < G; h += 4)
      for (int i = 0; i < 4; ++i)
        for (int r = 0; r < 4; ++r)
          for (int t = 0; t < 9; ++t) {
            const i64 o = G * g + h + ((i - r) & 3), c = G * g + h + i;
            out[(o * G + h + i) * 9 + t] = total((t * G + r) * C + c);
            if (G == 8) out[(o * G + (h ^ 4) + i) * 9 + t] = total((t * G + 4 + r) * C + c);
          }
  return gw;
}

// How many threads at::parallel_for gives n one-item tasks: 1 when the build lacks OpenMP.
int64_t parallel_threads(int64_t n) {
  std::vector<char> seen(std::max<i64>(1, at::get_num_threads()), 0);
  at::parallel_for(0, n, 1, [&](i64, i64) {
    const i64 t = at::get_thread_num();
    if (t < static_cast<i64>(seen.size())) seen[t] = 1;
  });
  int64_t used = 0;
  for (char c : seen) used += c;
  return used;
}

std::string isa() {
#ifdef __AVX512F__
  return "avx512";
#else
  return "avx2";
#endif
}

}  // namespace

#define MGIAD_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)

MGIAD_LIBRARY(MGIAD_NS, m) {
  m.def("forward(Tensor x, Tensor weight) -> Tensor", &forward);
  m.def("forward_add(Tensor x, Tensor weight, Tensor addend) -> Tensor", &forward_add);
  m.def("input_grad(Tensor grad, Tensor weight) -> Tensor", &input_grad);
  m.def("weight_grad(Tensor grad, Tensor x, int group_size=4) -> Tensor", &weight_grad);
  m.def("isa() -> str", &isa);
  m.def("parallel_threads(int n) -> int", &parallel_threads);
}
