// The weight gradient of the channel-pair transfers Π̂, R̂ (c → c/2) and P̂ (c/2 → c): one pass
//   d[c] = Σ_{n,h,w} wide[n, c, h, w] · narrow[n, c/2, h, w]   (c/2 rounded down)
// over fp32 channels_last tensors, where wide is the side with c channels (R̂'s input, P̂'s
// output gradient). oneDNN computes it as the weight gradient of a 1×1 convolution with c/2
// groups, several times slower than the one pass over both tensors that it needs
// (docs/performance.md). Sums in float over blocks of 64 pixels, in double across blocks and
// threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
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

}  // namespace

TORCH_LIBRARY_FRAGMENT(MGIAD_NS, m) {
  m.def("pair_dot(Tensor wide, Tensor narrow) -> Tensor", &pair_dot);
}
