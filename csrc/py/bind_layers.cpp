// Bindings of the conv2d / pooling kernels and of their size rules (conv_out_size,
// pool_out_size: Python derives output shapes through these, never by a formula of its own).
#include <pybind11/pybind11.h>

#include "cpu/conv_gemm.h"
#include "cpu/memory.h"
#include "fusekit/conv_args.h"
#include "fusekit/pool_args.h"
#include "py/bindings.h"


namespace fusekit::bind {

void bind_layers(pybind11::module_& m) {
  using pybind11::arg;
  // The size rules divide by the stride: reachable from Python, so checked here first.
  const auto check_window = [](int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) {
    if (size < 0 || k < 1 || s < 1 || p < 0 || d < 1)
      throw pybind11::value_error("window sizes: size >= 0, kernel, stride and dilation >= 1, padding >= 0");
  };
  // Sized constructors take every field in one call (a pybind11 attribute write costs about
  // as much as a small kernel) and derive the output size by the size rule.
  auto pool = pybind11::class_<Pool2dParams>(m, "Pool2dParams").def(pybind11::init<>());
  pool.def(pybind11::init([check_window](int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                         bool ceil_mode) {
    if (n < 0 || c < 0) throw pybind11::value_error("pool sizes must be non-negative");
    check_window(h, kh, sh, ph, dh);
    check_window(w, kw, sw, pw, dw);
    Pool2dParams q{};
    q.n = n, q.c = c, q.h = h, q.w = w, q.kh = kh, q.kw = kw, q.sh = sh, q.sw = sw, q.ph = ph, q.pw = pw;
    q.dh = dh, q.dw = dw;
    q.oh = pool_out_size(h, kh, sh, ph, dh, ceil_mode);
    q.ow = pool_out_size(w, kw, sw, pw, dw, ceil_mode);
    return q;
  }), arg("n"), arg("c"), arg("h"), arg("w"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"),
      arg("dh"), arg("dw"), arg("ceil_mode"));
  pool.def_readwrite("n", &Pool2dParams::n).def_readwrite("c", &Pool2dParams::c)
      .def_readwrite("h", &Pool2dParams::h).def_readwrite("w", &Pool2dParams::w)
      .def_readwrite("oh", &Pool2dParams::oh).def_readwrite("ow", &Pool2dParams::ow)
      .def_readwrite("kh", &Pool2dParams::kh).def_readwrite("kw", &Pool2dParams::kw)
      .def_readwrite("sh", &Pool2dParams::sh).def_readwrite("sw", &Pool2dParams::sw)
      .def_readwrite("ph", &Pool2dParams::ph).def_readwrite("pw", &Pool2dParams::pw)
      .def_readwrite("dh", &Pool2dParams::dh).def_readwrite("dw", &Pool2dParams::dw)
      .def_readwrite("count_include_pad", &Pool2dParams::count_include_pad)
      .def_readwrite("divisor_override", &Pool2dParams::divisor_override);

  auto pa = pybind11::class_<PoolArgs>(m, "PoolArgs").def(pybind11::init<>());
  def_dtype(pa, &PoolArgs::dtype);
  pa.def_readwrite("device", &PoolArgs::device)
      .def_readwrite("stream", &PoolArgs::stream)
      .def_readwrite("num_threads", &PoolArgs::num_threads)
      .def_readwrite("q", &PoolArgs::q)
      .def_readwrite("channels_last", &PoolArgs::channels_last)
      .def_readwrite("input", &PoolArgs::in).def_readwrite("input_nbytes", &PoolArgs::in_nbytes)
      .def_readwrite("out", &PoolArgs::out).def_readwrite("out_nbytes", &PoolArgs::out_nbytes)
      .def_readwrite("indices", &PoolArgs::indices).def_readwrite("indices_nbytes", &PoolArgs::indices_nbytes)
      .def_readwrite("window_codes", &PoolArgs::window_codes)
      .def_readwrite("window_codes_nbytes", &PoolArgs::window_codes_nbytes)
      .def_readwrite("grad_out", &PoolArgs::grad_out).def_readwrite("grad_out_nbytes", &PoolArgs::grad_out_nbytes)
      .def_readwrite("grad_in", &PoolArgs::grad_in).def_readwrite("grad_in_nbytes", &PoolArgs::grad_in_nbytes);

  auto conv = pybind11::class_<Conv2dParams>(m, "Conv2dParams").def(pybind11::init<>());
  conv.def(pybind11::init([check_window](int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co, int64_t kh,
                                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                         int64_t dw, int64_t groups) {
    if (n < 0 || ci < 0 || co < 0 || groups < 1) throw pybind11::value_error("conv sizes must be non-negative");
    check_window(h, kh, sh, ph, dh);
    check_window(w, kw, sw, pw, dw);
    Conv2dParams q{};
    q.n = n, q.ci = ci, q.h = h, q.w = w, q.co = co, q.kh = kh, q.kw = kw, q.sh = sh, q.sw = sw, q.ph = ph;
    q.pw = pw, q.dh = dh, q.dw = dw, q.groups = groups;
    q.oh = conv_out_size(h, kh, sh, ph, dh);
    q.ow = conv_out_size(w, kw, sw, pw, dw);
    return q;
  }), arg("n"), arg("ci"), arg("h"), arg("w"), arg("co"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"),
      arg("pw"), arg("dh"), arg("dw"), arg("groups"));
  conv.def_readwrite("n", &Conv2dParams::n).def_readwrite("ci", &Conv2dParams::ci)
      .def_readwrite("h", &Conv2dParams::h).def_readwrite("w", &Conv2dParams::w)
      .def_readwrite("co", &Conv2dParams::co).def_readwrite("oh", &Conv2dParams::oh)
      .def_readwrite("ow", &Conv2dParams::ow).def_readwrite("kh", &Conv2dParams::kh)
      .def_readwrite("kw", &Conv2dParams::kw).def_readwrite("sh", &Conv2dParams::sh)
      .def_readwrite("sw", &Conv2dParams::sw).def_readwrite("ph", &Conv2dParams::ph)
      .def_readwrite("pw", &Conv2dParams::pw).def_readwrite("dh", &Conv2dParams::dh)
      .def_readwrite("dw", &Conv2dParams::dw).def_readwrite("groups", &Conv2dParams::groups);

  auto ca = pybind11::class_<ConvArgs>(m, "ConvArgs").def(pybind11::init<>());
  def_dtype(ca, &ConvArgs::dtype);
  ca.def_readwrite("device", &ConvArgs::device)
      .def_readwrite("stream", &ConvArgs::stream)
      .def_readwrite("num_threads", &ConvArgs::num_threads)
      .def_readwrite("direct", &ConvArgs::direct)
      .def_readwrite("q", &ConvArgs::q)
      .def_readwrite("input", &ConvArgs::input).def_readwrite("input_nbytes", &ConvArgs::input_nbytes)
      .def_readwrite("weight", &ConvArgs::weight).def_readwrite("weight_nbytes", &ConvArgs::weight_nbytes)
      .def_readwrite("bias", &ConvArgs::bias).def_readwrite("bias_nbytes", &ConvArgs::bias_nbytes)
      .def_readwrite("out", &ConvArgs::out).def_readwrite("out_nbytes", &ConvArgs::out_nbytes)
      .def_readwrite("grad_out", &ConvArgs::grad_out).def_readwrite("grad_out_nbytes", &ConvArgs::grad_out_nbytes)
      .def_readwrite("grad_input", &ConvArgs::grad_input)
      .def_readwrite("grad_input_nbytes", &ConvArgs::grad_input_nbytes)
      .def_readwrite("grad_weight", &ConvArgs::grad_weight)
      .def_readwrite("grad_weight_nbytes", &ConvArgs::grad_weight_nbytes)
      .def_readwrite("grad_bias", &ConvArgs::grad_bias).def_readwrite("grad_bias_nbytes", &ConvArgs::grad_bias_nbytes);

  pybind11::class_<ConvPoolArgs>(m, "ConvPoolArgs")
      .def(pybind11::init<>())
      .def_readwrite("conv", &ConvPoolArgs::conv)
      .def_readwrite("pool", &ConvPoolArgs::pool)
      .def_readwrite("out", &ConvPoolArgs::out).def_readwrite("out_nbytes", &ConvPoolArgs::out_nbytes)
      .def_readwrite("indices", &ConvPoolArgs::indices).def_readwrite("indices_nbytes", &ConvPoolArgs::indices_nbytes)
      .def_readwrite("window_codes", &ConvPoolArgs::window_codes)
      .def_readwrite("window_codes_nbytes", &ConvPoolArgs::window_codes_nbytes)
      .def_readwrite("grad_out", &ConvPoolArgs::grad_out)
      .def_readwrite("grad_out_nbytes", &ConvPoolArgs::grad_out_nbytes)
      .def_readwrite("grad_conv", &ConvPoolArgs::grad_conv)
      .def_readwrite("grad_conv_nbytes", &ConvPoolArgs::grad_conv_nbytes);

  const auto nogil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def("conv2d_forward", &conv2d_forward, arg("args"), nogil);
  m.def("conv2d_backward", &conv2d_backward, arg("args"), nogil);
  m.def("conv_relu_maxpool_forward", &conv_relu_maxpool_forward, arg("args"), nogil);
  m.def("conv_relu_maxpool_backward", &conv_relu_maxpool_backward, arg("args"), nogil);
  pybind11::enum_<PoolOp>(m, "PoolOp")
      .value("MaxForward", PoolOp::MaxForward)
      .value("MaxBackward", PoolOp::MaxBackward)
      .value("AvgForward", PoolOp::AvgForward)
      .value("AvgBackward", PoolOp::AvgBackward);
  m.def("pool2d", &pool2d, arg("op"), arg("args"), nogil);
  m.def("pool2d_window_codes", &pool2d_window_codes, arg("q"));
  m.def("conv_channel_tiles", &cpu::conv_channel_tiles);
  m.def("conv_channel_tiled", [](const Conv2dParams& q, bool input_grad) {
    return input_grad ? cpu::conv_channel_tiled(q.co / q.groups, q.h, q.w, q.kh, q.kw, 1, 1, q.dh, q.dw,
                                                q.sh != 1 || q.sw != 1, q.ci / q.groups)
                      : cpu::conv_channel_tiled(q.ci / q.groups, q.oh, q.ow, q.kh, q.kw, q.sh, q.sw, q.dh, q.dw,
                                                false, q.co / q.groups);
  }, arg("q"), arg("input_grad"), "Whether the CPU's GEMM convolution takes the channel-tiled path (tests).");
  m.def("set_conv_channel_tiles", &cpu::set_conv_channel_tiles, arg("enabled"),
        "Allows (default) or forbids the CPU convolution's channel-tiled path (tests: both paths agree).");
  m.def("conv_out_size", [check_window](int64_t n, int64_t k, int64_t s, int64_t p, int64_t d) {
    check_window(n, k, s, p, d);
    return conv_out_size(n, k, s, p, d);
  }, arg("size"), arg("kernel"), arg("stride"), arg("padding"), arg("dilation"));
  m.def("pool_out_size", [check_window](int64_t n, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil) {
    check_window(n, k, s, p, d);
    return pool_out_size(n, k, s, p, d, ceil);
  }, arg("size"), arg("kernel"), arg("stride"), arg("padding"), arg("dilation"), arg("ceil_mode"));
  m.def("advise_huge_pages", &cpu::advise_huge_pages, arg("ptr"), arg("nbytes"));
}

}  // namespace fusekit::bind
