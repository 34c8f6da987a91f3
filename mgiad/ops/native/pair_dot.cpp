// The channel-pair transfers Π̂, R̂ (c → c/2) and P̂ (c/2 → c) on fp32 channels_last tensors,
// whose channels are the innermost, contiguous dimension: a row of c values per pixel.
//
//   pair_sum:    y[m, j]      = w[2j] · x[m, 2j] + w[2j+1] · x[m, 2j+1]  (R̂, Π̂; P̂'s input gradient)
//   pair_spread: y[m, 2j + k] = w[2j + k] · x[m, j],  k = 0, 1           (P̂; R̂'s, Π̂'s input gradient)
//   pair_dot:    d[c] = Σ_{n,h,w} wide[n, c, h, w] · narrow[n, c/2, h, w]  (their weight gradient)
//
// The built-in path computes the first two as multiplies over stride-2 channel views, which
// PyTorch runs element by element; here each is one pass over contiguous rows. pair_sum rounds
// as that path does (w[2j]·x[2j] rounded, the second product added by a fused multiply-add, as
// addcmul_ does), so both give the same bits. oneDNN computes pair_dot as the weight gradient of
// a 1×1 convolution with c/2 groups, several times slower than the one pass over both tensors
// that it needs (docs/performance.md); sums in float over blocks of 64 pixels, in double across
// blocks and threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using i64 = int64_t;

at::Tensor pair_dot(const at::Tensor& wide, const at::Tensor& narrow) {
  for (const auto* t : {&wide, &narrow})
    TORCH_CHECK(t->dim() == 4 && t->scalar_type() == at::kFloat && t->device().is_cpu() &&
                    t->is_contiguous(at::MemoryFormat::ChannelsLast),
                "mgiad pair_dot: 4-D float32 channels_last CPU tensors expected");
  const i64 C = wide.size(1), half = narrow.size(1);
  TORCH_CHECK(C == 2 * half && wide.size(0) == narrow.size(0) && wide.size(2) == narrow.size(2) &&
                  wide.size(3) == narrow.size(3),
              "mgiad pair_dot: shapes ", wide.sizes(), " and ", narrow.sizes(),
              " are not [N, 2c, H, W] and [N, c, H, W]");
  const i64 M = wide.numel() / std::max<i64>(1, C);
  const i64 nthreads = std::max<i64>(1, at::get_num_threads());
  std::vector<double> sums(static_cast<size_t>(nthreads * C), 0.0);
  const float *wp = wide.data_ptr<float>(), *np = narrow.data_ptr<float>();
  constexpr i64 kBlock = 64;
  at::parallel_for(0, M, std::max<i64>(1, (1 << 16) / std::max<i64>(1, C)), [&](i64 begin, i64 end) {
    const i64 tid = at::get_thread_num();
    TORCH_CHECK(tid < nthreads, "mgiad pair_dot: thread ", tid, " of ", nthreads);
    double* total = sums.data() + tid * C;
    std::vector<float> even(half), odd(half);
    for (i64 b = begin; b < end; b += kBlock) {
      std::fill(even.begin(), even.end(), 0.0f);
      std::fill(odd.begin(), odd.end(), 0.0f);
      for (i64 m = b; m < std::min(end, b + kBlock); ++m) {
        const float *wr = wp + m * C, *nr = np + m * half;
        for (i64 j = 0; j < half; ++j) {
          even[j] += wr[2 * j] * nr[j];
          odd[j] += wr[2 * j + 1] * nr[j];
        }
      }
      for (i64 j = 0; j < half; ++j) {
        total[2 * j] += even[j];
        total[2 * j + 1] += odd[j];
      }
    }
  });
  at::Tensor d = at::empty({C}, wide.options().memory_format(at::MemoryFormat::Contiguous));
  float* out = d.data_ptr<float>();
  for (i64 c = 0; c < C; ++c) {
    double s = 0.0;
    for (i64 t = 0; t < nthreads; ++t) s += sums[t * C + c];
    out[c] = static_cast<float>(s);
  }
  return d;
}

void check_pair(const at::Tensor& x, const at::Tensor& w, i64 wide, const char* op) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad ", op, ": x must be a 4-D float32 channels_last CPU tensor");
  TORCH_CHECK(w.dim() == 1 && w.numel() == wide && w.scalar_type() == at::kFloat &&
                  w.is_contiguous() && w.device().is_cpu(),
              "mgiad ", op, ": w must be a contiguous float32 CPU vector of ", wide, " weights");
}

at::Tensor empty_rows(const at::Tensor& x, i64 channels) {
  return at::empty({x.size(0), channels, x.size(2), x.size(3)},
                   x.options().memory_format(at::MemoryFormat::ChannelsLast));
}

constexpr i64 kRowsPerTask = 1 << 14;  // floats of x per parallel task, at least

at::Tensor pair_sum(const at::Tensor& x, const at::Tensor& w) {
  const i64 C = x.size(1), half = C / 2;
  check_pair(x, w, C, "pair_sum");
  TORCH_CHECK(C % 2 == 0, "mgiad pair_sum: an even number of channels expected, got ", C);
  at::Tensor y = empty_rows(x, half);
  const i64 M = x.numel() / std::max<i64>(1, C);
  const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, M, std::max<i64>(1, kRowsPerTask / std::max<i64>(1, C)), [&](i64 begin, i64 end) {
    for (i64 m = begin; m < end; ++m) {
      const float* xr = xp + m * C;
      float* yr = yp + m * half;
      for (i64 j = 0; j < half; ++j) {
        // the built-in path's rounding: the even product rounded, the odd one added by a fused
        // multiply-add (addcmul_ on the CPU)
        yr[j] = std::fma(xr[2 * j + 1], wp[2 * j + 1], wp[2 * j] * xr[2 * j]);
      }
    }
  });
  return y;
}

at::Tensor pair_spread(const at::Tensor& x, const at::Tensor& w) {
  const i64 half = x.size(1), C = 2 * half;
  check_pair(x, w, C, "pair_spread");
  at::Tensor y = empty_rows(x, C);
  const i64 M = x.numel() / std::max<i64>(1, half);
  const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, M, std::max<i64>(1, kRowsPerTask / std::max<i64>(1, C)), [&](i64 begin, i64 end) {
    for (i64 m = begin; m < end; ++m) {
      const float* xr = xp + m * half;
      float* yr = yp + m * C;
      for (i64 j = 0; j < half; ++j) {
        yr[2 * j] = wp[2 * j] * xr[j];
        yr[2 * j + 1] = wp[2 * j + 1] * xr[j];
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(MGIAD_NS, m) {
  m.def("pair_dot(Tensor wide, Tensor narrow) -> Tensor", &pair_dot);
  m.def("pair_sum(Tensor x, Tensor w) -> Tensor", &pair_sum);
  m.def("pair_spread(Tensor x, Tensor w) -> Tensor", &pair_spread);
}
