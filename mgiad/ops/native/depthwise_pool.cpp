// Learnable depthwise pooling Π, R (paper §IV): 3×3, stride 2, padding 1, one group per input
// channel, m = 1 or 2 output channels per group; fp32, channels_last. Forward, input gradient and
// weight gradient.
//
// oneDNN runs the m = 2 case (the resolution transfers of MGiaD, whose widths double) several
// times slower than two m = 1 convolutions of the same size (docs/performance.md). Here the m
// outputs of a group are m accumulator rows of C_in channels — each a plain multiply-add over the
// input's channels, which the compiler vectorises — interleaved into the output's m·C_in
// channels once per pixel. The weights are rearranged to [m][9][C_in] (w[j][t][g] = W[m·g + j, 0, t]).
//
// Input gradient: gathered per input pixel from the ≤ 4 output pixels whose window holds it
// (even rows and columns take the centre tap, odd ones the two outer taps), so no two threads
// write the same element. Weight gradient: per output row in float, across rows and threads in
// double.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

using i64 = int64_t;

struct Shape {
  i64 N, C, H, W, m, Ho, Wo;
};

Shape shape_of(const at::Tensor& x, i64 m) {
  TORCH_CHECK(m == 1 || m == 2, "mgiad depthwise_pool: 1 or 2 output channels per group, got ", m);
  const i64 H = x.size(2), W = x.size(3);
  return {x.size(0), x.size(1), H, W, m, (H - 1) / 2 + 1, (W - 1) / 2 + 1};
}

void check_cl(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == at::kFloat && t.device().is_cpu() &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad depthwise_pool: ", what, " must be a 4-D float32 channels_last CPU tensor");
}

// [m·C, 1, 3, 3] -> [m][9][C]
std::vector<float> rearrange(const at::Tensor& weight, i64 C, i64 m) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == m * C && weight.size(1) == 1 &&
                  weight.size(2) == 3 && weight.size(3) == 3 && weight.scalar_type() == at::kFloat,
              "mgiad depthwise_pool: weight must be float32 [", m * C, ", 1, 3, 3]");
  at::Tensor w = weight.contiguous();
  const float* wp = w.data_ptr<float>();
  std::vector<float> out(static_cast<size_t>(m * 9 * C));
  for (i64 g = 0; g < C; ++g)
    for (i64 j = 0; j < m; ++j)
      for (i64 t = 0; t < 9; ++t) out[(j * 9 + t) * C + g] = wp[(m * g + j) * 9 + t];
  return out;
}

i64 grain(i64 work_per_item) { return std::max<i64>(1, (1 << 16) / std::max<i64>(1, work_per_item)); }

// f(t, xr) for each tap t = 3·di + dk of output pixel (n, i, k) whose input pixel lies inside the
// image (the padding's zeros add nothing); xr: that input pixel's C channels.
template <class F>
inline void for_each_tap(const float* xp, const Shape& s, i64 n, i64 i, i64 k, F&& f) {
  for (int di = 0; di < 3; ++di) {
    const i64 p = 2 * i + di - 1;
    if (p < 0 || p >= s.H) continue;
    for (int dk = 0; dk < 3; ++dk) {
      const i64 q = 2 * k + dk - 1;
      if (q < 0 || q >= s.W) continue;
      f(di * 3 + dk, xp + ((n * s.H + p) * s.W + q) * s.C);
    }
  }
}

template <int M>
at::Tensor forward_m(const at::Tensor& x, const std::vector<float>& w, const Shape& s) {
  at::Tensor y = at::empty({s.N, M * s.C, s.Ho, s.Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const i64 C = s.C;
  at::parallel_for(0, s.N * s.Ho, grain(s.Wo * C * 9 * M), [&](i64 begin, i64 end) {
    std::vector<float> acc(static_cast<size_t>(M * C));
    for (i64 row = begin; row < end; ++row) {
      const i64 n = row / s.Ho, i = row % s.Ho;
      for (i64 k = 0; k < s.Wo; ++k) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for_each_tap(xp, s, n, i, k, [&](int t, const float* xr) {
          for (int j = 0; j < M; ++j) {
            const float* wr = w.data() + (j * 9 + t) * C;
            float* a = acc.data() + j * C;
            for (i64 g = 0; g < C; ++g) a[g] += wr[g] * xr[g];
          }
        });
        float* yr = yp + ((n * s.Ho + i) * s.Wo + k) * M * C;
        if (M == 1) {
          std::copy(acc.begin(), acc.end(), yr);
        } else {
          const float *a0 = acc.data(), *a1 = acc.data() + C;
          for (i64 g = 0; g < C; ++g) {
            yr[2 * g] = a0[g];
            yr[2 * g + 1] = a1[g];
          }
        }
      }
    }
  });
  return y;
}

// The output pixels (o, tap) whose window holds input index p: centre tap for even p, the two
// outer taps for odd p. Returns how many (≤ 2).
int sources(i64 p, i64 n_out, i64* o, int* tap) {
  int c = 0;
  if (p % 2 == 0) {
    o[c] = p / 2, tap[c++] = 1;
  } else {
    if ((p + 1) / 2 < n_out) o[c] = (p + 1) / 2, tap[c++] = 0;
    o[c] = (p - 1) / 2, tap[c++] = 2;
  }
  return c;
}

template <int M>
at::Tensor input_grad_m(const at::Tensor& gy, const std::vector<float>& w, const Shape& s) {
  at::Tensor gx = at::empty({s.N, s.C, s.H, s.W}, gy.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* gp = gy.data_ptr<float>();
  float* xp = gx.data_ptr<float>();
  const i64 C = s.C;
  at::parallel_for(0, s.N * s.H, grain(s.W * C * 4 * M), [&](i64 begin, i64 end) {
    for (i64 row = begin; row < end; ++row) {
      const i64 n = row / s.H, p = row % s.H;
      i64 oi[2], ok[2];
      int ti[2], tk[2];
      const int ni = sources(p, s.Ho, oi, ti);
      for (i64 q = 0; q < s.W; ++q) {
        const int nk = sources(q, s.Wo, ok, tk);
        float* d = xp + ((n * s.H + p) * s.W + q) * C;
        std::fill(d, d + C, 0.0f);
        for (int a = 0; a < ni; ++a)
          for (int b = 0; b < nk; ++b) {
            const float* gr = gp + ((n * s.Ho + oi[a]) * s.Wo + ok[b]) * M * C;
            const int t = ti[a] * 3 + tk[b];
            const float* w0 = w.data() + t * C;
            if (M == 1) {
              for (i64 g = 0; g < C; ++g) d[g] += w0[g] * gr[g];
            } else {
              const float* w1 = w.data() + (9 + t) * C;
              for (i64 g = 0; g < C; ++g) d[g] += w0[g] * gr[2 * g] + w1[g] * gr[2 * g + 1];
            }
          }
      }
    }
  });
  return gx;
}

template <int M>
at::Tensor weight_grad_m(const at::Tensor& gy, const at::Tensor& x, const Shape& s) {
  const i64 C = s.C, per = M * 9 * C;
  const i64 nthreads = std::max<i64>(1, at::get_num_threads());
  std::vector<double> sums(static_cast<size_t>(nthreads * per), 0.0);
  const float *gp = gy.data_ptr<float>(), *xp = x.data_ptr<float>();
  at::parallel_for(0, s.N * s.Ho, grain(s.Wo * C * 9 * M), [&](i64 begin, i64 end) {
    const i64 tid = at::get_thread_num();
    TORCH_CHECK(tid < nthreads, "mgiad depthwise_pool: thread ", tid, " of ", nthreads);
    double* total = sums.data() + tid * per;
    std::vector<float> acc(static_cast<size_t>(per)), gj(static_cast<size_t>(M * C));
    for (i64 row = begin; row < end; ++row) {
      const i64 n = row / s.Ho, i = row % s.Ho;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (i64 k = 0; k < s.Wo; ++k) {
        const float* gr = gp + ((n * s.Ho + i) * s.Wo + k) * M * C;
        for (i64 g = 0; g < C; ++g)
          for (int j = 0; j < M; ++j) gj[j * C + g] = gr[M * g + j];
        for_each_tap(xp, s, n, i, k, [&](int t, const float* xr) {
          for (int j = 0; j < M; ++j) {
            float* a = acc.data() + (j * 9 + t) * C;
            const float* g_ = gj.data() + j * C;
            for (i64 g = 0; g < C; ++g) a[g] += g_[g] * xr[g];
          }
        });
      }
      for (i64 e = 0; e < per; ++e) total[e] += acc[e];
    }
  });
  at::Tensor gw = at::empty({M * C, 1, 3, 3}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* out = gw.data_ptr<float>();
  for (i64 g = 0; g < C; ++g)
    for (int j = 0; j < M; ++j)
      for (int t = 0; t < 9; ++t) {
        double v = 0.0;
        for (i64 th = 0; th < nthreads; ++th) v += sums[th * per + (j * 9 + t) * C + g];
        out[(M * g + j) * 9 + t] = static_cast<float>(v);
      }
  return gw;
}

at::Tensor forward(const at::Tensor& x, const at::Tensor& weight) {
  check_cl(x, "x");
  const i64 m = weight.size(0) / std::max<i64>(1, x.size(1));
  const Shape s = shape_of(x, m);
  const auto w = rearrange(weight, s.C, m);
  return m == 1 ? forward_m<1>(x, w, s) : forward_m<2>(x, w, s);
}

// grad: the output's gradient; C, H, W: the input's channels and size (two sizes give one output size)
at::Tensor input_grad_groups(const at::Tensor& grad, const at::Tensor& weight, int64_t C, int64_t H,
                             int64_t W) {
  check_cl(grad, "grad");
  TORCH_CHECK(C > 0 && weight.size(0) % C == 0, "mgiad depthwise_pool: ", weight.size(0),
              " output channels are not a multiple of ", C, " input channels");
  const i64 m = weight.size(0) / C;
  const Shape s{grad.size(0), C, H, W, m, (H - 1) / 2 + 1, (W - 1) / 2 + 1};
  TORCH_CHECK(m == 1 || m == 2, "mgiad depthwise_pool: 1 or 2 output channels per group, got ", m);
  TORCH_CHECK(grad.size(1) == m * C && grad.size(2) == s.Ho && grad.size(3) == s.Wo,
              "mgiad depthwise_pool: gradient of shape ", grad.sizes(), " for an input of ", H, "x", W);
  const auto w = rearrange(weight, C, m);
  return m == 1 ? input_grad_m<1>(grad, w, s) : input_grad_m<2>(grad, w, s);
}

at::Tensor weight_grad(const at::Tensor& grad, const at::Tensor& x, int64_t m) {
  check_cl(grad, "grad");
  check_cl(x, "x");
  const Shape s = shape_of(x, m);
  TORCH_CHECK(grad.size(0) == s.N && grad.size(1) == m * s.C && grad.size(2) == s.Ho && grad.size(3) == s.Wo,
              "mgiad depthwise_pool: gradient of shape ", grad.sizes(), " for an input of shape ", x.sizes());
  return m == 1 ? weight_grad_m<1>(grad, x, s) : weight_grad_m<2>(grad, x, s);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(MGIAD_NS, m) {
  m.def("pool_forward(Tensor x, Tensor weight) -> Tensor", &forward);
  m.def("pool_input_grad(Tensor grad, Tensor weight, int C, int H, int W) -> Tensor", &input_grad_groups);
  m.def("pool_weight_grad(Tensor grad, Tensor x, int m) -> Tensor", &weight_grad);
}
