#pragma once
// The step protocol, in one place: how a training step becomes frames and
// back, and the validation of every field against what the session
// negotiated. Edge, cloud, links and tests all go through these functions;
// nobody else maps steps to frames. The wire layout is in docs/wire-protocol.md.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "seam/training/model.hpp"
#include "seam/training/split_step.hpp"
#include "seam/transport/message.hpp"

namespace seam::session {

// Application error codes carried in Error messages (transport codes are < 1000).
enum class SessionErrc : std::uint32_t {
  handler_failed = 1000,  // the step itself failed (the transport's default for a throwing handler)
  step_order = 1001,      // a step from the future, or a stale one: the text names both numbers
  bad_field = 1002,       // a field does not fit the negotiated session: the text names it
  job_mismatch = 1003,    // Hello for another job: the text names the field that differs
  no_session = 1004,      // a step or checkpoint before Hello
  checkpoint_failed = 1005,
  unknown_job = 1006,     // Hello for a job the server does not serve
  not_allowed = 1007,     // the client's certificate subject is not on the job's list (keep last: kLastSessionErrc)
};
inline constexpr SessionErrc kLastSessionErrc = SessionErrc::not_allowed;

class SessionError : public std::runtime_error {
 public:
  SessionError(SessionErrc c, const std::string& what) : std::runtime_error(what), code_(c) {}
  SessionErrc code() const { return code_; }

 private:
  SessionErrc code_;
};

// What a step may carry, fixed when the session is negotiated.
struct StepSpec {
  std::string task = "classify";  // classify: labels [B]; mlm | lm: labels [B, L]
  std::string up_codec, down_codec;  // canonical codec specs
  std::int64_t classes = 0;    // classify: labels in [0, classes)
  std::int64_t vocab = 0;      // mlm | lm: labels in [0, vocab) or -100
  std::int64_t max_len = 0;    // L <= max_len for masks and token labels (0: no bound)
  std::int64_t max_batch = 65536;
  bool send_ids = false;       // the up codec keys state by sample id (a delta stage): ids travel
};

// Whether a codec spec ("stage:k=v+stage...") has the stage `name`.
bool spec_has_stage(const std::string& spec, const std::string& name);
// Whether a codec spec keys its state by sample id (it has a delta stage).
bool codec_needs_ids(const std::string& spec);

StepSpec step_spec(const training::ModelConfig& mc, const training::HalfSettings& hs);

// Step -> Forward frame: the batch in the body, packed (sample ids only when
// spec.send_ids; labels; the mask as lengths or a bitmap), and the codec
// message as section "activations". Refuses a request that cannot travel
// (mask values other than 0/1, shapes that disagree).
transport::Message forward_message(const training::StepRequest& r, const StepSpec& spec);
// Forward frame -> step, refusing (SessionError bad_field, naming the field)
// what does not fit `spec`: batch size, ids missing or unexpected, label
// shape and range, mask length against max_len and the labels, the codec
// spec (read from the message's own bytes), missing, unknown or repeated
// sections. The transport's gate has already checked the structure.
// The activations' bytes are moved out of `m`.
training::StepRequest parse_forward(transport::Message&& m, const StepSpec& spec);

// Reply -> Backward frame: loss and metrics ("correct", "cloud_ms") in the
// body, section "gradient" (the codec message).
transport::Message backward_message(const training::StepReply& r);
// Backward frame -> reply; refuses a reply for another step or with another
// codec spec than the negotiated one.
training::StepReply parse_backward(const transport::Message& m, const StepSpec& spec, std::uint64_t step);

// Inference on a session (Infer -> InferReply). The activation travels
// encoded with a stateless codec: the session's up codec without its delta
// stage (delta keeps per-sample history that an inference batch must not
// touch), or "none" when nothing is left. The cloud reads the spec from the
// message's own bytes and refuses a stateful one.
std::string infer_codec(const std::string& up_spec);

struct InferRequest {
  std::uint64_t batch_id = 0;
  std::int64_t batch = 0;
  at::Tensor mask;  // optional [B, L]
  transport::InferOutput output = transport::InferOutput::logits;
  std::vector<std::uint8_t> activations;  // codec message
};
transport::Message infer_message(const InferRequest& r);
// Refuses (bad_field, naming the field): no or extra sections, a stateful
// codec, a mask longer than max_len. The activation's bytes are moved out.
InferRequest parse_infer(transport::Message&& m, const StepSpec& spec);
// `out`: logits (float) or classes (int64), first dimension B.
transport::Message infer_reply_message(std::uint64_t batch_id, const at::Tensor& out, transport::InferOutput kind);
// Refuses a reply for another batch, of another kind, or not B rows.
at::Tensor parse_infer_reply(const transport::Message& m, const InferRequest& asked);

transport::Message error_message(SessionErrc code, const std::string& text);
// Throws SessionError for an Error message, with its code (codes < 1000 map to handler_failed).
void throw_if_error(const transport::Message& m);

}  // namespace seam::session
