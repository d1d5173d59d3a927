#pragma once
// The links an edge session talks through. Both carry the exact frames of the
// step protocol (protocol.hpp), so bytes counted are bytes on the wire.
#include <memory>

#include "seam/session/session.hpp"
#include "seam/transport/channel.hpp"

namespace seam::session {

// To a CloudSession in the same process: every message is encoded into the
// frame the network would carry and decoded back through the transport's gate.
class InProcessLink final : public SessionLink {
 public:
  explicit InProcessLink(CloudSession& cloud) : cloud_(cloud) {}
  training::StepReply exchange(const training::StepRequest& r) override;
  training::LinkStats stats() const override { return stats_; }
  transport::Welcome hello(const transport::Hello& h) override;
  transport::CheckpointAck checkpoint(std::uint64_t step) override;
  at::Tensor infer(const InferRequest& r) override;
  transport::Message fetch(const transport::Fetch& f) override;

 private:
  transport::Message round_trip(const transport::Message& m);
  CloudSession& cloud_;
  StepSpec spec_;
  training::LinkStats stats_;
};

// To a cloud over the transport's TLS client. Reconnects and retries are the
// client's (same request id); the Hello it re-sends on a reconnect carries the
// session's current step.
class TlsLink final : public SessionLink {
 public:
  explicit TlsLink(transport::ClientOptions o);
  ~TlsLink() override;
  training::StepReply exchange(const training::StepRequest& r) override;
  training::LinkStats stats() const override;
  transport::Welcome hello(const transport::Hello& h) override;
  transport::CheckpointAck checkpoint(std::uint64_t step) override;
  at::Tensor infer(const InferRequest& r) override;
  transport::Message fetch(const transport::Fetch& f) override;
  transport::Client& client();

 private:
  transport::Message request(transport::Message m);
  std::unique_ptr<transport::Client> client_;
  std::optional<transport::Hello> hello_;
  StepSpec spec_;
  training::LinkStats stats_;
};

}  // namespace seam::session
