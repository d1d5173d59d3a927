// The C API over seam::edge::Client. Every entry point catches everything:
// no exception crosses the boundary; each failure becomes a status and the
// handle's message.
#include "seam_edge.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "seam/edge_client/client.hpp"
#include "seam/session/protocol.hpp"
#include "seam/transport/errors.hpp"

struct seam_session {
  std::unique_ptr<seam::edge::Client> client;  // null when seam_open failed
  std::string error;
  seam_progress_fn progress = nullptr;
  void* progress_user = nullptr;
};

namespace {

namespace se = seam::edge;
namespace t = seam::training;

seam_status fail(seam_session* s, seam_status st, const std::string& why) {
  s->error = why;
  return st;
}

// Maps whatever a call threw to a status, keeping its message.
seam_status failed(seam_session* s) {
  try {
    throw;
  } catch (const se::Cancelled& e) {
    return fail(s, SEAM_E_CANCELLED, e.what());
  } catch (const se::StateError& e) {
    return fail(s, SEAM_E_STATE, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(s, SEAM_E_ARGUMENT, e.what());
  } catch (const seam::session::SessionError& e) {
    return fail(s, SEAM_E_REFUSED, e.what());
  } catch (const seam::transport::TransportError& e) {
    return fail(s, e.peer_code() ? SEAM_E_REFUSED : SEAM_E_NETWORK, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    return fail(s, SEAM_E_IO, e.what());
  } catch (const c10::Error& e) {
    return fail(s, SEAM_E_INTERNAL, e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return fail(s, SEAM_E_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    const std::string what = e.what();
    const bool io = what.find("job folder") != std::string::npos || what.find("cannot read") != std::string::npos ||
                    what.find("checkpoint") != std::string::npos || what.find("front half") != std::string::npos;
    return fail(s, io ? SEAM_E_IO : SEAM_E_INTERNAL, what);
  } catch (...) {
    return fail(s, SEAM_E_INTERNAL, "unknown error");
  }
}

// Runs f on a joined-or-not client; the common checks and the catch-all.
template <class F>
seam_status call(seam_session* s, const char* what, F&& f) {
  if (!s) return SEAM_E_NULL_HANDLE;
  s->error.clear();
  if (!s->client) return fail(s, SEAM_E_STATE, std::string(what) + ": the session failed to open");
  if (s->client->closed()) return fail(s, SEAM_E_STATE, std::string(what) + ": the session is closed");
  try {
    return f(*s->client);
  } catch (...) {
    return failed(s);
  }
}

// The dtype is read as its bytes: a C caller may store any int in the enum,
// and loading an out-of-range value through the C++ enum type is undefined.
at::ScalarType scalar_of(const seam_dtype& dtype, const char* name) {
  std::underlying_type_t<seam_dtype> d;
  std::memcpy(&d, &dtype, sizeof d);
  if (d == SEAM_FLOAT32) return at::kFloat;
  if (d == SEAM_INT64) return at::kLong;
  if (d == SEAM_INT32) return at::kInt;
  throw std::invalid_argument(std::string(name) + ": unknown dtype " + std::to_string(d));
}

// A view of the app's memory (no copy); the call reads it and returns.
at::Tensor view(const seam_tensor& x, const char* name) {
  if (!x.data) throw std::invalid_argument(std::string(name) + ": data is NULL");
  if (x.ndim < 1 || x.ndim > 8 || !x.shape)
    throw std::invalid_argument(std::string(name) + ": ndim must be 1..8 with a shape (got " + std::to_string(x.ndim) + ")");
  std::vector<std::int64_t> shape(x.shape, x.shape + x.ndim);
  for (auto d : shape)
    if (d < 1) throw std::invalid_argument(std::string(name) + ": shape " + c10::str(at::IntArrayRef(shape)) + " has a dimension < 1");
  return at::from_blob(const_cast<void*>(x.data), shape, at::TensorOptions().dtype(scalar_of(x.dtype, name)));
}

t::TaskBatch batch_of(const seam_batch* b, bool need_labels) {
  if (!b) throw std::invalid_argument("batch is NULL");
  t::TaskBatch tb;
  tb.x = view(b->inputs, "inputs");
  const std::int64_t n = tb.x.size(0);
  if (need_labels || b->labels.data) {
    tb.labels = view(b->labels, "labels");
    if (tb.labels.scalar_type() != at::kLong)
      throw std::invalid_argument(std::string("labels: dtype must be SEAM_INT64 (got ") + c10::toString(tb.labels.scalar_type()) + ")");
  }
  if (b->mask.data) tb.mask = view(b->mask, "mask").to(at::kLong);
  if (b->ids) tb.ids.assign(b->ids, b->ids + n);
  else if (need_labels) throw std::invalid_argument("ids: NULL; give one sample id per row");
  return tb;
}

void copy_result(const t::StepMetrics& m, seam_step_result* out) {
  if (!out) return;
  *out = seam_step_result{m.step, m.loss, m.accuracy, m.bytes_up, m.bytes_down, m.naive_up, m.naive_down,
                          m.edge_ms, m.encode_ms, m.link_ms, m.cloud_ms, m.decode_ms};
}

seam_status open_with(seam_session** out, const std::function<se::EdgeOptions()>& options) {
  if (!out) return SEAM_E_ARGUMENT;
  *out = new (std::nothrow) seam_session;
  if (!*out) return SEAM_E_INTERNAL;
  seam_session* s = *out;
  try {
    s->client = std::make_unique<se::Client>(options());
    s->client->set_progress([s](const t::StepMetrics& m) {
      if (!s->progress) return;
      seam_step_result r;
      copy_result(m, &r);
      if (s->progress(&r, s->progress_user) != 0) s->client->cancel();
    });
    return SEAM_OK;
  } catch (...) {
    s->client.reset();
    return failed(s);
  }
}

}  // namespace

extern "C" {

const char* seam_version(void) { return "seam-edge 0.1.0 (protocol 3.1)"; }

seam_status seam_open(const char* config_text, seam_session** out) {
  return open_with(out, [&] {
    if (!config_text) throw std::invalid_argument("config text is NULL");
    return se::options_from_text(config_text);
  });
}

seam_status seam_open_file(const char* path, seam_session** out) {
  return open_with(out, [&] {
    if (!path) throw std::invalid_argument("config path is NULL");
    return se::options_from_file(path);
  });
}

seam_status seam_join(seam_session* s, uint64_t* next_step) {
  return call(s, "join", [&](se::Client& c) {
    const auto n = c.join();
    if (next_step) *next_step = n;
    return SEAM_OK;
  });
}

seam_status seam_train_step(seam_session* s, const seam_batch* batch, seam_step_result* out) {
  return call(s, "train_step", [&](se::Client& c) {
    auto m = c.train_step(batch_of(batch, true));
    if (!m) {
      s->error = "the cloud resumed at step " + std::to_string(c.step()) + ": feed the batch of that step next";
      return SEAM_ROLLED_BACK;
    }
    copy_result(*m, out);
    return SEAM_OK;
  });
}

seam_status seam_infer(seam_session* s, const seam_batch* batch, float* logits, size_t logits_capacity,
                       int64_t* classes) {
  return call(s, "infer", [&](se::Client& c) {
    if (!logits && !classes) throw std::invalid_argument("infer: logits and classes are both NULL; ask for one");
    const auto tb = batch_of(batch, false);
    if (!logits) {  // classes only: the cloud sends B int64, not B x C floats
      const at::Tensor k = c.infer(tb, seam::session::InferOutput::classes).to(at::kLong).contiguous();
      std::copy(k.data_ptr<std::int64_t>(), k.data_ptr<std::int64_t>() + k.numel(), classes);
      return SEAM_OK;
    }
    const at::Tensor out = c.infer(tb, seam::session::InferOutput::logits).to(at::kFloat).contiguous();
    if (static_cast<std::size_t>(out.numel()) > logits_capacity)
      throw std::invalid_argument("infer: the logits are " + c10::str(out.sizes()) + " (" + std::to_string(out.numel()) +
                                  " floats), logits_capacity is " + std::to_string(logits_capacity));
    std::copy(out.data_ptr<float>(), out.data_ptr<float>() + out.numel(), logits);
    if (classes) {
      const at::Tensor k = out.argmax(-1).contiguous();
      std::copy(k.data_ptr<std::int64_t>(), k.data_ptr<std::int64_t>() + k.numel(), classes);
    }
    return SEAM_OK;
  });
}

seam_status seam_evaluate(seam_session* s, const seam_batch* batch, double* accuracy) {
  return call(s, "evaluate", [&](se::Client& c) {
    if (!accuracy) throw std::invalid_argument("evaluate: accuracy is NULL");
    const auto tb = batch_of(batch, false);
    if (!tb.labels.defined()) throw std::invalid_argument("evaluate: labels: data is NULL");
    if (tb.labels.dim() != 1 || tb.labels.size(0) != tb.x.size(0))
      throw std::invalid_argument("evaluate: labels are " + c10::str(tb.labels.sizes()) + ", expected [" +
                                  std::to_string(tb.x.size(0)) + "]");
    const at::Tensor k = c.infer(tb, seam::session::InferOutput::classes).to(at::kLong);
    *accuracy = k.eq(tb.labels).to(at::kDouble).mean().item<double>();
    return SEAM_OK;
  });
}

seam_status seam_save(seam_session* s, uint64_t* step) {
  return call(s, "save", [&](se::Client& c) {
    c.save();
    if (step) *step = c.step();
    return SEAM_OK;
  });
}

seam_status seam_restore(seam_session* s, uint64_t step) {
  return call(s, "restore", [&](se::Client& c) {
    c.restore(step);
    return SEAM_OK;
  });
}

seam_status seam_stats_get(seam_session* s, seam_stats* out) {
  return call(s, "stats", [&](se::Client& c) {
    if (!out) throw std::invalid_argument("stats: out is NULL");
    const auto st = c.stats();
    *out = seam_stats{st.step,         st.steps_this_run, st.bytes_up,  st.bytes_down,
                      st.traffic.naive_up, st.traffic.naive_down, st.edge_ms, st.encode_ms,
                      st.link_ms,      st.cloud_ms,       st.decode_ms, st.reconnects};
    return SEAM_OK;
  });
}

uint64_t seam_step(const seam_session* s) { return s && s->client ? s->client->step() : 0; }

seam_status seam_set_progress(seam_session* s, seam_progress_fn fn, void* user) {
  if (!s) return SEAM_E_NULL_HANDLE;
  s->progress = fn;
  s->progress_user = user;
  return SEAM_OK;
}

seam_status seam_cancel(seam_session* s) {
  if (!s) return SEAM_E_NULL_HANDLE;
  if (s->client) s->client->cancel();
  return SEAM_OK;
}

const char* seam_error_message(const seam_session* s) {
  if (!s) return "null handle: no session (seam_open failed to allocate, or the handle was never opened)";
  return s->error.c_str();
}

seam_status seam_close(seam_session* s) {
  return call(s, "close", [&](se::Client& c) {
    c.close();
    return SEAM_OK;
  });
}

void seam_free(seam_session* s) {
  if (!s) return;
  try {
    if (s->client) s->client->close();
  } catch (...) {  // the handle is released either way
  }
  delete s;
}

}  // extern "C"
