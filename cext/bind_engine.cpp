// Bindings for the layer kernels (src/ftp_core/). Arrays cross without copies: every input must
// be a C-contiguous float32 numpy array of the documented shape (else ValueError naming the
// argument and its shape); outputs are new arrays. The GIL is released during the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "ftp_core/activation.hpp"
#include "ftp_core/build_info.hpp"
#include "ftp_core/conv.hpp"
#include "ftp_core/gemm/gemm.hpp"
#include "ftp_core/layers.hpp"
#include "ftp_core/threadpool.hpp"

namespace py = pybind11;

namespace {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

// Checks dtype, layout and rank; returns the data pointer (no copy).
const float* arr(const char* fn, const char* name, const py::array& a, int ndim, const char* expect) {
  const bool f32 = a.dtype().is(py::dtype::of<float>());
  const bool contig = (a.flags() & py::array::c_style) != 0;
  if (!f32 || !contig || (ndim >= 0 && a.ndim() != ndim)) {
    std::ostringstream s;
    s << fn << ": argument '" << name << "' must be a C-contiguous float32 array of shape " << expect
      << "; got " << (contig ? "" : "non-contiguous ") << py::str(a.dtype()).cast<std::string>()
      << " array of shape " << shape_str(a);
    throw py::value_error(s.str());
  }
  return static_cast<const float*>(a.data());
}

const float* opt_bias(const char* fn, const py::object& bias, py::ssize_t n) {
  if (bias.is_none()) return nullptr;
  py::array b = py::reinterpret_borrow<py::array>(bias);
  const float* p = arr(fn, "bias", b, 1, "(O,)");
  if (b.shape(0) != n) {
    throw py::value_error(std::string(fn) + ": argument 'bias' has shape " + shape_str(b) +
                          ", expected (" + std::to_string(n) + ",)");
  }
  return p;
}

ftp::Act act_of(const char* fn, const std::string& name) {
  try {
    return ftp::parse_act(name);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string(fn) + ": " + e.what());
  }
}

ftp::Pad4 pad_of(const char* fn, const std::vector<int>& p) {
  if (p.size() != 4 || p[0] < 0 || p[1] < 0 || p[2] < 0 || p[3] < 0)
    throw py::value_error(std::string(fn) + ": pad must be 4 non-negative ints (top, left, bottom, right)");
  return {p[0], p[1], p[2], p[3]};
}

// Output buffers come from a cache of freed ones: a fresh numpy array of a few MB costs its
// page faults (kernel zeroing) on every layer of every forward, a noticeable share of a conv.
// Freed buffers (up to kMaxCached bytes) are kept for the next array of a similar size.
class BufferCache {
 public:
  static constexpr size_t kMaxCached = size_t(256) << 20;

  float* get(size_t bytes, size_t* capacity) {
    bytes = (bytes + 4095) / 4096 * 4096;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first <= bytes + bytes / 4) {
        float* p = it->second;
        *capacity = it->first;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    *capacity = bytes;
    return static_cast<float*>(p);
  }

  void put(float* p, size_t capacity) {
    std::lock_guard<std::mutex> lk(mu_);
    if (cached_ + capacity > kMaxCached) {
      std::free(p);
      return;
    }
    free_.emplace(capacity, p);
    cached_ += capacity;
  }

  size_t trim() {
    std::lock_guard<std::mutex> lk(mu_);
    size_t n = cached_;
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
    return n;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, float*> free_;
  size_t cached_ = 0;
};

BufferCache& buffer_cache() {
  static BufferCache* cache = new BufferCache();  // never destroyed: arrays may outlive exit order
  return *cache;
}

struct CachedBuffer {
  float* data;
  size_t capacity;
};

py::array_t<float> new_array(const std::vector<py::ssize_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= (size_t)d;
  auto* cb = new CachedBuffer{nullptr, 0};
  cb->data = buffer_cache().get(std::max<size_t>(n, 1) * sizeof(float), &cb->capacity);
  py::capsule owner(cb, [](void* v) {
    auto* b = static_cast<CachedBuffer*>(v);
    buffer_cache().put(b->data, b->capacity);
    delete b;
  });
  return py::array_t<float>(shape, cb->data, owner);
}

py::array_t<float> new_chw(py::ssize_t c, py::ssize_t h, py::ssize_t w) {
  return new_array(std::vector<py::ssize_t>{c, h, w});
}

void check_window(const char* fn, int H, int W, int kh, int kw, int sh, int sw, ftp::Pad4 p) {
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1)
    throw py::value_error(std::string(fn) + ": kernel and stride must be >= 1");
  if (H + p.top + p.bottom < kh || W + p.left + p.right < kw) {
    std::ostringstream s;
    s << fn << ": padded input " << H << "x" << W << " + pad (" << p.top << ", " << p.left << ", "
      << p.bottom << ", " << p.right << ") is smaller than the kernel " << kh << "x" << kw;
    throw py::value_error(s.str());
  }
}

std::shared_ptr<ftp::ConvWeights> make_weights(const py::array& w, int groups) {
  const float* p = arr("ConvWeights", "weight", w, 4, "(O, I/groups, kh, kw)");
  if (groups < 1 || w.shape(0) % groups != 0)
    throw py::value_error("ConvWeights: filters (" + std::to_string(w.shape(0)) +
                          ") must be a multiple of groups (" + std::to_string(groups) + ")");
  return std::make_shared<ftp::ConvWeights>(p, (int)w.shape(0), (int)w.shape(1), (int)w.shape(2),
                                            (int)w.shape(3), groups);
}

py::array_t<float> conv2d(const py::array& x, ftp::ConvWeights& w, const py::object& bias,
                          std::pair<int, int> stride, const std::vector<int>& pad,
                          const std::string& activation, const py::object& out_region) {
  const char* fn = "conv2d";
  const float* xp = arr(fn, "x", x, 3, "(C, H, W)");
  const int C = (int)x.shape(0), H = (int)x.shape(1), W = (int)x.shape(2);
  if (C != w.in_per_group * w.groups) {
    std::ostringstream s;
    s << fn << ": input 'x' of shape " << shape_str(x) << " has " << C << " channels, weights expect "
      << w.in_per_group << " x " << w.groups << " groups = " << w.in_per_group * w.groups;
    throw py::value_error(s.str());
  }
  const float* bp = opt_bias(fn, bias, w.out_channels);
  const ftp::Pad4 p = pad_of(fn, pad);
  check_window(fn, H, W, w.kh, w.kw, stride.first, stride.second, p);
  const ftp::Act act = act_of(fn, activation);
  const int OH = ftp::window_out(H, p.top, p.bottom, w.kh, stride.first);
  const int OW = ftp::window_out(W, p.left, p.right, w.kw, stride.second);
  ftp::OutRect region{0, 0, OH, OW};
  if (!out_region.is_none()) {
    const auto v = out_region.cast<std::vector<int>>();
    if (v.size() != 4 || v[0] < 0 || v[1] < 0 || v[0] >= v[2] || v[1] >= v[3] || v[2] > OH || v[3] > OW) {
      std::ostringstream s;
      s << fn << ": out_region must be (top, left, bottom, right) inside the " << OH << "x" << OW
        << " output, non-empty";
      throw py::value_error(s.str());
    }
    region = {v[0], v[1], v[2], v[3]};
  }
  auto out = new_chw(w.out_channels, region.bottom - region.top, region.right - region.left);
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    ftp::conv2d(xp, C, H, W, w, bp, stride.first, stride.second, p, act, op, &region);
  }
  return out;
}

}  // namespace

void bind_engine(py::module_& m) {
  m.def("build_info", &ftp::build_info, "compiler and target architecture of this build");

  // ---- threads and ISA ----
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    py::gil_scoped_release nogil;
    ftp::set_num_threads(n);
  }, py::arg("n"), "Size of the kernel thread pool (default: $DEEPTHINGS_THREADS or all cores).");
  m.def("get_num_threads", &ftp::get_num_threads);
  m.def("default_num_threads", &ftp::default_num_threads);
  m.def("available_isas", &ftp::available_isas, "ISAs compiled in and supported by this CPU");
  m.def("active_isa", [] { return std::string(ftp::isa_name(ftp::active_isa())); });
  m.def("set_isa", [](const std::string& name) {
    try {
      ftp::set_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("set_isa: ") + e.what());
    }
  }, py::arg("name"), "Force the GEMM kernel path: scalar, avx2, avx512 or neon.");
  m.def("active_kernel", [] {
    const auto& k = ftp::active_kernel();
    return py::make_tuple(k.name, k.mr, k.nr);
  }, "(name, MR, NR) of the GEMM micro-kernel in use");
  m.def("trim_buffer_cache", [] { return buffer_cache().trim(); },
        "Free the cached output buffers (returns bytes freed). Up to 256 MiB of freed layer outputs "
        "are kept for reuse.");
  m.def("buffer_cache_bytes", [] { return buffer_cache().cached(); });
  m.def("set_winograd", &ftp::set_winograd_enabled, py::arg("enabled"),
        "Use Winograd F(2x2,3x3) for 3x3 stride-1 convs (default on); off forces im2col + GEMM");
  m.def("winograd_enabled", &ftp::winograd_enabled);
  m.def("gemm_blocking", [] { return py::make_tuple(ftp::kGemmMC, ftp::kGemmNC, ftp::kGemmKC); },
        "(MC, NC, KC) cache blocking; per-thread im2col/packed-B block <= KC*NC floats");

  // ---- GEMM (for kernel tests and benchmarks) ----
  m.def("gemm", [](const py::array& a, const py::array& b, const py::object& bias,
                   const std::string& activation) {
    const float* ap = arr("gemm", "a", a, 2, "(M, K)");
    const float* bp = arr("gemm", "b", b, 2, "(K, N)");
    if (a.shape(1) != b.shape(0))
      throw py::value_error("gemm: a " + shape_str(a) + " and b " + shape_str(b) + " do not chain");
    const size_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
    const float* biasp = opt_bias("gemm", bias, M);
    const ftp::Act act = act_of("gemm", activation);
    py::array_t<float> c = new_array({(py::ssize_t)M, (py::ssize_t)N});
    float* cp = c.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::gemm(ftp::active_kernel(), M, N, K, ap, K, bp, N, biasp, act, cp, N);
    }
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("bias") = py::none(), py::arg("activation") = "linear",
     "act(a @ b + bias[:, None]) with the active micro-kernel");

  // ---- convolution ----
  py::class_<ftp::ConvWeights, std::shared_ptr<ftp::ConvWeights>>(
      m, "ConvWeights", "Conv weights (O, I/groups, kh, kw), copied once and packed per ISA on first use")
      .def(py::init(&make_weights), py::arg("weight"), py::arg("groups") = 1)
      .def_readonly("out_channels", &ftp::ConvWeights::out_channels)
      .def_readonly("in_per_group", &ftp::ConvWeights::in_per_group)
      .def_readonly("groups", &ftp::ConvWeights::groups)
      .def_property_readonly("kernel", [](const ftp::ConvWeights& w) { return py::make_tuple(w.kh, w.kw); });
  m.def("conv2d", &conv2d, py::arg("x"), py::arg("weights"), py::arg("bias") = py::none(),
        py::arg("stride") = std::pair<int, int>{1, 1}, py::arg("pad") = std::vector<int>{0, 0, 0, 0},
        py::arg("activation") = "linear", py::arg("out_region") = py::none(),
        "act(conv(x, weights) + bias); x (C, H, W); pad = (top, left, bottom, right); out_region = "
        "(top, left, bottom, right): only that part of the output (half-open), bit-identical to it");
  m.def("conv2d_weights", [](const py::array& x, const py::array& w, const py::object& bias,
                             std::pair<int, int> stride, const std::vector<int>& pad, int groups,
                             const std::string& activation) {
    auto cw = make_weights(w, groups);
    return conv2d(x, *cw, bias, stride, pad, activation, py::none());
  }, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
     py::arg("stride") = std::pair<int, int>{1, 1}, py::arg("pad") = std::vector<int>{0, 0, 0, 0},
     py::arg("groups") = 1, py::arg("activation") = "linear",
     "conv2d with raw weights (packs them on every call: use ConvWeights for layers)");

  // ---- other layers ----
  m.def("maxpool2d", [](const py::array& x, std::pair<int, int> size, std::pair<int, int> stride,
                        const std::vector<int>& pad) {
    const float* xp = arr("maxpool2d", "x", x, 3, "(C, H, W)");
    const int C = (int)x.shape(0), H = (int)x.shape(1), W = (int)x.shape(2);
    const ftp::Pad4 p = pad_of("maxpool2d", pad);
    check_window("maxpool2d", H, W, size.first, size.second, stride.first, stride.second, p);
    const int OH = ftp::window_out(H, p.top, p.bottom, size.first, stride.first);
    const int OW = ftp::window_out(W, p.left, p.right, size.second, stride.second);
    auto out = new_chw(C, OH, OW);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::maxpool2d(xp, C, H, W, size.first, size.second, stride.first, stride.second, p, op);
    }
    return out;
  }, py::arg("x"), py::arg("size"), py::arg("stride"), py::arg("pad") = std::vector<int>{0, 0, 0, 0},
     "max pooling; padded cells never win");

  m.def("global_avgpool", [](const py::array& x) {
    const float* xp = arr("global_avgpool", "x", x, 3, "(C, H, W)");
    const int C = (int)x.shape(0), H = (int)x.shape(1), W = (int)x.shape(2);
    if (H * W == 0) throw py::value_error("global_avgpool: empty map " + shape_str(x));
    auto out = new_chw(C, 1, 1);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::global_avgpool(xp, C, H, W, op);
    }
    return out;
  }, py::arg("x"), "(C, H, W) -> (C, 1, 1) mean");

  m.def("upsample", [](const py::array& x, int factor, float scale) {
    const float* xp = arr("upsample", "x", x, 3, "(C, H, W)");
    if (factor < 1) throw py::value_error("upsample: factor must be >= 1");
    const int C = (int)x.shape(0), H = (int)x.shape(1), W = (int)x.shape(2);
    auto out = new_chw(C, (py::ssize_t)H * factor, (py::ssize_t)W * factor);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::upsample(xp, C, H, W, factor, scale, op);
    }
    return out;
  }, py::arg("x"), py::arg("factor"), py::arg("scale") = 1.0f);

  m.def("reorg", [](const py::array& x, int stride) {
    const float* xp = arr("reorg", "x", x, 3, "(C, H, W)");
    const int C = (int)x.shape(0), H = (int)x.shape(1), W = (int)x.shape(2);
    if (stride < 1) throw py::value_error("reorg: stride must be >= 1");
    const int s2 = stride * stride;
    if (H % stride || W % stride || C % s2)
      throw py::value_error("reorg: input " + shape_str(x) + " not divisible by stride " + std::to_string(stride) +
                            " (Darknet's order needs C % stride^2 == 0 and H, W % stride == 0)");
    auto out = new_chw((py::ssize_t)C * s2, H / stride, W / stride);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::reorg(xp, C, H, W, stride, false, op);
    }
    return out;
  }, py::arg("x"), py::arg("stride"), "Darknet reorg (its own element order, not space-to-depth)");

  m.def("shortcut", [](const py::array& prev, const py::array& add, const std::string& activation,
                       float alpha, float beta) {
    const float* pp = arr("shortcut", "prev", prev, 3, "(C, H, W)");
    const float* ap = arr("shortcut", "add", add, 3, "(C, H, W)");
    const ftp::Act act = act_of("shortcut", activation);
    auto out = new_chw(prev.shape(0), prev.shape(1), prev.shape(2));
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::shortcut(pp, (int)prev.shape(0), (int)prev.shape(1), (int)prev.shape(2), ap, (int)add.shape(0),
                    (int)add.shape(1), (int)add.shape(2), alpha, beta, act, op);
    }
    return out;
  }, py::arg("prev"), py::arg("add"), py::arg("activation") = "linear", py::arg("alpha") = 1.0f,
     py::arg("beta") = 1.0f, "act(alpha*prev + beta*add) with Darknet's rules for unequal shapes");

  m.def("route", [](const std::vector<py::array>& xs) {
    if (xs.empty()) throw py::value_error("route: needs at least one input");
    std::vector<const float*> ptrs;
    std::vector<size_t> sizes;
    py::ssize_t C = 0, H = -1, W = -1;
    for (size_t i = 0; i < xs.size(); ++i) {
      std::string nm = "xs[" + std::to_string(i) + "]";
      ptrs.push_back(arr("route", nm.c_str(), xs[i], 3, "(C, H, W)"));
      if (H < 0) {
        H = xs[i].shape(1);
        W = xs[i].shape(2);
      } else if (xs[i].shape(1) != H || xs[i].shape(2) != W) {
        throw py::value_error("route: input " + nm + " has shape " + shape_str(xs[i]) + ", expected (*, " +
                              std::to_string(H) + ", " + std::to_string(W) + ")");
      }
      sizes.push_back(xs[i].size());
      C += xs[i].shape(0);
    }
    auto out = new_chw(C, H, W);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      for (size_t i = 0; i < ptrs.size(); ++i) {
        std::copy(ptrs[i], ptrs[i] + sizes[i], op);
        op += sizes[i];
      }
    }
    return out;
  }, py::arg("xs"), "concatenate CHW maps along channels");

  m.def("connected", [](const py::array& x, const py::array& w, const py::object& bias,
                        const std::string& activation) {
    const float* xp = arr("connected", "x", x, -1, "(any shape, flattened)");
    const float* wp = arr("connected", "weight", w, 2, "(O, I)");
    if ((py::ssize_t)x.size() != w.shape(1))
      throw py::value_error("connected: input has " + std::to_string(x.size()) + " values, weight " +
                            shape_str(w) + " expects " + std::to_string(w.shape(1)));
    const float* bp = opt_bias("connected", bias, w.shape(0));
    const ftp::Act act = act_of("connected", activation);
    auto out = new_chw(w.shape(0), 1, 1);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::connected(xp, w.shape(1), wp, w.shape(0), bp, act, op);
    }
    return out;
  }, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = "linear",
     "act(weight @ x.ravel() + bias) -> (O, 1, 1)");

  m.def("softmax", [](const py::array& x, int groups, float temperature) {
    const float* xp = arr("softmax", "x", x, -1, "(any shape)");
    if (groups < 1 || x.size() % groups)
      throw py::value_error("softmax: " + std::to_string(x.size()) + " values do not split into " +
                            std::to_string(groups) + " groups");
    py::array_t<float> out = new_array(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      ftp::softmax(xp, x.size(), groups, temperature, op);
    }
    return out;
  }, py::arg("x"), py::arg("groups") = 1, py::arg("temperature") = 1.0f);

  m.def("activate", [](const py::array& x, const std::string& activation) {
    const float* xp = arr("activate", "x", x, -1, "(any shape)");
    const ftp::Act act = act_of("activate", activation);
    py::array_t<float> out = new_array(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      std::copy(xp, xp + x.size(), op);
      ftp::act_inplace(act, op, x.size());
    }
    return out;
  }, py::arg("x"), py::arg("activation"), "Darknet activation, elementwise (new array)");
}
