// Fused BatchNorm + ReLU (+ residual) for fp32 channels_last tensors: y = σ(BN(x)) [+ res].
//
// Unfused, PyTorch runs BatchNorm (a statistics pass and an apply pass), ReLU (a pass in place)
// and the residual sum (a pass) forward, and the ReLU mask (a pass) and BatchNorm's two passes
// backward, and keeps the ReLU output for backward. Here forward is one statistics pass and one
// apply pass; backward recomputes the ReLU mask from x (BN(x) > 0, the very formula forward
// used) inside BatchNorm's two passes, so only x is kept (docs/performance.md).
//
// Layout: a channels_last [N, C, H, W] tensor is a row-major [M, C] matrix, M = N·H·W. The
// loops run over rows outside and channels inside, written for the compiler's vectoriser
// (these passes are bound by memory, not arithmetic: plain loops at -O3 with the ISA's flags
// suffice, unlike the convolutions).
//
// Statistics: per-channel sums of x − x₀ and (x − x₀)² (x₀ = the first row, a shift that keeps
// E[x²] − E[x]² free of cancellation when |mean| >> std), in float over blocks of 64 rows and
// in double across blocks and threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

namespace {

using i64 = int64_t;
constexpr i64 kBlock = 64;                 // rows summed in float before the double sum
constexpr i64 kGrainBytes = 1 << 16;       // at least this much of x per parallel task

void check_rows(const at::Tensor& t, const char* what, const at::Tensor& like) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == at::kFloat && t.device().is_cpu(),
              "mgiad bn_relu: ", what, " must be a 4-D float32 CPU tensor");
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad bn_relu: ", what, " must be channels_last contiguous");
  TORCH_CHECK(t.sizes() == like.sizes(), "mgiad bn_relu: ", what, " has shape ", t.sizes(),
              ", expected ", like.sizes());
}

void check_channel(const at::Tensor& t, const char* what, i64 C) {
  TORCH_CHECK(t.dim() == 1 && t.numel() == C && t.scalar_type() == at::kFloat &&
                  t.is_contiguous() && t.device().is_cpu(),
              "mgiad bn_relu: ", what, " must be a contiguous float32 CPU vector of ", C,
              " elements");
}

i64 grain(i64 C) { return std::max<i64>(1, kGrainBytes / (4 * std::max<i64>(1, C))); }

// Per-thread double accumulators: nthreads × k × C, summed after the parallel loop.
struct Partials {
  i64 nthreads, k, C;
  std::vector<double> v;
  Partials(i64 k_, i64 C_)
      : nthreads(std::max<i64>(1, at::get_num_threads())), k(k_), C(C_),
        v(static_cast<size_t>(nthreads * k * C), 0.0) {}
  double* of_thread() {
    const i64 tid = at::get_thread_num();
    TORCH_CHECK(tid < nthreads, "mgiad bn_relu: thread ", tid, " of ", nthreads);
    return v.data() + tid * k * C;
  }
  double total(i64 j, i64 c) const {
    double s = 0.0;
    for (i64 t = 0; t < nthreads; ++t) s += v[(t * k + j) * C + c];
    return s;
  }
};

// (mean, invstd, var) of each channel over N·H·W, var biased, invstd = 1/sqrt(var + eps).
std::tuple<at::Tensor, at::Tensor, at::Tensor> stats(const at::Tensor& x, double eps) {
  check_rows(x, "x", x);
  const i64 C = x.size(1), M = x.numel() / std::max<i64>(1, C);
  TORCH_CHECK(M > 0, "mgiad bn_relu: statistics of an empty batch");
  const float* xp = x.data_ptr<float>();
  std::vector<float> x0(xp, xp + C);
  Partials acc(2, C);
  at::parallel_for(0, M, grain(C), [&](i64 begin, i64 end) {
    double* d = acc.of_thread();
    std::vector<float> s(C), q(C);
    for (i64 b = begin; b < end; b += kBlock) {
      std::fill(s.begin(), s.end(), 0.0f);
      std::fill(q.begin(), q.end(), 0.0f);
      for (i64 m = b; m < std::min(end, b + kBlock); ++m) {
        const float* row = xp + m * C;
        for (i64 c = 0; c < C; ++c) {
          const float v = row[c] - x0[c];
          s[c] += v;
          q[c] += v * v;
        }
      }
      for (i64 c = 0; c < C; ++c) {
        d[c] += s[c];
        d[C + c] += q[c];
      }
    }
  });
  auto opts = x.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor mean = at::empty({C}, opts), invstd = at::empty({C}, opts), var = at::empty({C}, opts);
  for (i64 c = 0; c < C; ++c) {
    const double s = acc.total(0, c) / M, q = acc.total(1, c) / M;
    const double v = std::max(0.0, q - s * s);
    mean.data_ptr<float>()[c] = static_cast<float>(x0[c] + s);
    var.data_ptr<float>()[c] = static_cast<float>(v);
    invstd.data_ptr<float>()[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
  }
  return {mean, invstd, var};
}

// y = max(x·scale + shift, 0) [+ residual]
at::Tensor apply(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                 const std::optional<at::Tensor>& residual) {
  check_rows(x, "x", x);
  const i64 C = x.size(1), M = x.numel() / std::max<i64>(1, C);
  check_channel(scale, "scale", C);
  check_channel(shift, "shift", C);
  if (residual) check_rows(*residual, "residual", x);
  at::Tensor y = at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float *xp = x.data_ptr<float>(), *a = scale.data_ptr<float>(), *b = shift.data_ptr<float>();
  const float* rp = residual ? residual->data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, M, grain(C), [&](i64 begin, i64 end) {
    for (i64 m = begin; m < end; ++m) {
      const float* xr = xp + m * C;
      float* yr = yp + m * C;
      if (rp) {
        const float* rr = rp + m * C;
        for (i64 c = 0; c < C; ++c) yr[c] = std::max(xr[c] * a[c] + b[c], 0.0f) + rr[c];
      } else {
        for (i64 c = 0; c < C; ++c) yr[c] = std::max(xr[c] * a[c] + b[c], 0.0f);
      }
    }
  });
  return y;
}

// Gradients of y = max(x·scale + shift, 0) with scale = γ·invstd, shift = β − mean·scale.
// training: mean and invstd are the batch's (they depend on x); else constants.
// Returns (grad x, grad γ, grad β).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& gy, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& invstd,
    const at::Tensor& scale, const at::Tensor& shift, bool training) {
  check_rows(x, "x", x);
  check_rows(gy, "grad", x);
  const i64 C = x.size(1), M = x.numel() / std::max<i64>(1, C);
  for (const auto* t : {&mean, &invstd, &scale, &shift}) check_channel(*t, "a statistic", C);
  const float *xp = x.data_ptr<float>(), *gp = gy.data_ptr<float>();
  const float *mu = mean.data_ptr<float>(), *a = scale.data_ptr<float>(), *b = shift.data_ptr<float>();
  // pass 1: Σ dy' and Σ dy'·(x − mean), dy' = dy where the ReLU passed
  Partials acc(2, C);
  at::parallel_for(0, M, grain(C), [&](i64 begin, i64 end) {
    double* d = acc.of_thread();
    std::vector<float> s(C), p(C);
    for (i64 blk = begin; blk < end; blk += kBlock) {
      std::fill(s.begin(), s.end(), 0.0f);
      std::fill(p.begin(), p.end(), 0.0f);
      for (i64 m = blk; m < std::min(end, blk + kBlock); ++m) {
        const float *xr = xp + m * C, *gr = gp + m * C;
        for (i64 c = 0; c < C; ++c) {
          const float g = xr[c] * a[c] + b[c] > 0.0f ? gr[c] : 0.0f;
          s[c] += g;
          p[c] += g * (xr[c] - mu[c]);
        }
      }
      for (i64 c = 0; c < C; ++c) {
        d[c] += s[c];
        d[C + c] += p[c];
      }
    }
  });
  auto opts = x.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor gw = at::empty({C}, opts), gb = at::empty({C}, opts);
  // pass 2: dx = scale·(dy' − Σdy'/M) − k·(x − μ), k = scale·invstd²·Σdy'(x − μ)/M; the
  // two sums are BatchNorm's dependence of mean and invstd on x (none outside training)
  std::vector<float> k(C, 0.0f), off(C, 0.0f);
  const float* is = invstd.data_ptr<float>();
  for (i64 c = 0; c < C; ++c) {
    const double sdy = acc.total(0, c), sdyx = acc.total(1, c);
    gw.data_ptr<float>()[c] = static_cast<float>(sdyx * is[c]);
    gb.data_ptr<float>()[c] = static_cast<float>(sdy);
    if (training) {
      const double kc = static_cast<double>(a[c]) * is[c] * is[c] * sdyx / M;
      k[c] = static_cast<float>(kc);
      off[c] = static_cast<float>(static_cast<double>(a[c]) * sdy / M);
    }
  }
  at::Tensor gx = at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  float* gxp = gx.data_ptr<float>();
  at::parallel_for(0, M, grain(C), [&](i64 begin, i64 end) {
    for (i64 m = begin; m < end; ++m) {
      const float *xr = xp + m * C, *gr = gp + m * C;
      float* o = gxp + m * C;
      for (i64 c = 0; c < C; ++c) {
        const float g = xr[c] * a[c] + b[c] > 0.0f ? gr[c] : 0.0f;
        o[c] = a[c] * g - k[c] * (xr[c] - mu[c]) - off[c];
      }
    }
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(MGIAD_NS, m) {
  m.def("bn_stats(Tensor x, float eps) -> (Tensor, Tensor, Tensor)", &stats);
  m.def("bn_relu_apply(Tensor x, Tensor scale, Tensor shift, Tensor? residual) -> Tensor", &apply);
  m.def("bn_relu_backward(Tensor grad, Tensor x, Tensor mean, Tensor invstd, Tensor scale, "
        "Tensor shift, bool training) -> (Tensor, Tensor, Tensor)", &backward);
}
