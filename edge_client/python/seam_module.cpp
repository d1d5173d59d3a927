// The Python module `seam`: a user's own PyTorch front model trains against a
// Seam cloud. The user keeps the model, data loader and optimizer; Seam
// carries the cut (encode, mutual TLS, the cloud's step, the decoded gradient).
//
//   sess = seam.EdgeSession(server="127.0.0.1:7443", job="fmnist-vit", ca=..., cert=..., key=...,
//                           job_dir="job")
//   for x, y, ids in loader:
//       a = front(x)
//       g, stats = sess.exchange(a, y, ids)
//       a.backward(g); opt.step(); opt.zero_grad()
//
// Tensors cross without copies where the layout allows (a float32 contiguous
// activation is encoded in place; the gradient is returned as decoded). The
// GIL is released while a step is on the network. Errors keep their messages:
// invalid_argument -> ValueError, the rest -> RuntimeError.
#include <torch/extension.h>

#include "seam/edge_client/client.hpp"

namespace py = pybind11;
namespace se = seam::edge;
namespace t = seam::training;

namespace {

std::vector<std::int64_t> ids_of(const py::object& ids) {
  if (THPVariable_Check(ids.ptr())) {
    at::Tensor x = THPVariable_Unpack(ids.ptr()).to(at::kLong).contiguous();
    return std::vector<std::int64_t>(x.data_ptr<std::int64_t>(), x.data_ptr<std::int64_t>() + x.numel());
  }
  return ids.cast<std::vector<std::int64_t>>();
}

py::dict metrics_dict(const t::StepMetrics& m) {
  py::dict d;
  d["step"] = m.step;
  d["loss"] = m.loss;
  d["accuracy"] = m.accuracy;
  d["bytes_up"] = m.bytes_up;
  d["bytes_down"] = m.bytes_down;
  d["naive_up"] = m.naive_up;
  d["naive_down"] = m.naive_down;
  d["ratio_up"] = m.ratio_up;
  d["ratio_down"] = m.ratio_down;
  d["encode_ms"] = m.encode_ms;
  d["link_ms"] = m.link_ms;
  d["cloud_ms"] = m.cloud_ms;
  d["decode_ms"] = m.decode_ms;
  return d;
}

std::unique_ptr<se::Client> open_session(const std::string& server, const std::string& job, const std::string& ca,
                                         const std::string& cert, const std::string& key, const std::string& job_dir,
                                         const std::string& state_dir, const std::string& client_id,
                                         std::uint64_t checkpoint_every, int max_attempts) {
  se::EdgeOptions o;
  o.server = server;
  o.job = job;
  o.ca_file = ca;
  o.cert_file = cert;
  o.key_file = key;
  o.job_dir = job_dir;
  o.state_dir = state_dir;
  o.client_id = client_id;
  o.checkpoint_every = checkpoint_every;
  o.max_attempts = max_attempts;
  auto c = std::make_unique<se::Client>(o);
  py::gil_scoped_release nogil;
  c->join();
  return c;
}

}  // namespace

PYBIND11_MODULE(seam, m) {
  m.doc() = "Seam split fine-tuning: the edge side for PyTorch scripts (docs/edge.md)";
  py::class_<se::Client>(m, "EdgeSession")
      .def(py::init(&open_session), py::arg("server"), py::arg("job"), py::arg("ca"), py::arg("cert"), py::arg("key"),
           py::arg("job_dir") = "", py::arg("state_dir") = "", py::arg("client_id") = "python",
           py::arg("checkpoint_every") = 0, py::arg("max_attempts") = 6,
           "Joins the job: loads its front half's identity from job_dir (default STATE_DIR/job), resumes the "
           "session's state from state_dir, connects over mutual TLS.")
      .def(
          "exchange",
          [](se::Client& c, const at::Tensor& a, const at::Tensor& y, const py::object& ids, const py::object& mask) {
            std::vector<std::int64_t> v = ids_of(ids);
            at::Tensor mk = mask.is_none() ? at::Tensor() : THPVariable_Unpack(mask.ptr());
            seam::session::ExchangeResult r;
            {
              py::gil_scoped_release nogil;
              r = c.exchange(a, y, v, mk);
            }
            return py::make_tuple(r.gradient, metrics_dict(r.metrics));
          },
          py::arg("activation"), py::arg("labels"), py::arg("ids"), py::arg("mask") = py::none(),
          "Sends the activation of the cut (encoded with the job's codec), lets the cloud train its half on "
          "`labels`, returns (gradient w.r.t. the activation, step metrics). Call activation.backward(gradient).")
      .def(
          "infer",
          [](se::Client& c, const at::Tensor& a, bool classes, const py::object& mask) {
            at::Tensor mk = mask.is_none() ? at::Tensor() : THPVariable_Unpack(mask.ptr());
            py::gil_scoped_release nogil;
            return c.infer_activation(a, classes ? seam::session::InferOutput::classes : seam::session::InferOutput::logits,
                                      mk);
          },
          py::arg("activation"), py::arg("classes") = false, py::arg("mask") = py::none(),
          "Inference through the cloud's half on the cut activation: logits [B, C], or the classes (int64 [B]) "
          "with classes=True. Changes no state.")
      .def(
          "save",
          [](se::Client& c) {
            py::gil_scoped_release nogil;
            return c.save();
          },
          "Checkpoints Seam's side of the session (codec state, step) with the cloud; the front model is yours.")
      .def_property_readonly("step", &se::Client::step, "the step to train next")
      .def("cancel", &se::Client::cancel, "thread-safe: the next exchange raises instead of starting")
      .def(
          "stats",
          [](se::Client& c) {
            auto s = c.stats();
            py::dict d;
            d["step"] = s.step;
            d["steps_this_run"] = s.steps_this_run;
            d["bytes_up"] = s.bytes_up;
            d["bytes_down"] = s.bytes_down;
            d["naive_up"] = s.traffic.naive_up;
            d["naive_down"] = s.traffic.naive_down;
            d["reconnects"] = s.reconnects;
            return d;
          })
      .def("close", &se::Client::close, "ends the session (Goodbye)")
      .def("__enter__", [](se::Client& c) -> se::Client& { return c; }, py::return_value_policy::reference)
      .def("__exit__", [](se::Client& c, py::args) { c.close(); });
}
