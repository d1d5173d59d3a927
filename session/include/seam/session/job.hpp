#pragma once
// Jobs and their identity. A job is prepared once: its initial halves,
// derived weights included (SFT factors), are written to files with a
// manifest of SHA-256 hashes, and both sides load those files, so nothing
// derived is computed on two machines. The job's fields (model config, split,
// seed and so the C3 keys, codec specs, optimizer, a hash of the initial edge
// weights) are a canonical key=value text; its fingerprint is the text's hash.
// The edge computes both from its own files, without the cloud half.
#include <cstdint>
#include <string>

#include "seam/training/model.hpp"
#include "seam/training/split_step.hpp"

namespace seam::session {

struct JobSpec {
  training::ModelConfig model;
  training::HalfSettings half;  // task, codec specs, codec seed, optimizer
  std::string pretrained;       // optional pre-training checkpoint, loaded before the split
};

// Refuses, with std::invalid_argument saying why, a job whose parts cannot
// work together: an unknown codec spec; delta on activations after C3 (C3
// rows are groups of R samples that change every epoch, delta needs one
// stable id per row); a task that does not fit the model; SFT on a CNN and the
// other model-config refusals.
void check_job(const JobSpec& j);

// Builds the halves (with `pretrained` and derived weights) and writes into
// `dir`: job.conf, edge_init.pt, cloud_init.pt and manifest (SHA-256 of each
// file and of the edge weights). Atomic: a temp folder renamed into place.
void prepare_job(const JobSpec& j, const std::string& dir);

struct PreparedJob {
  JobSpec spec;
  std::string dir;
  std::string edge_weights_sha256;  // of the initial edge tensors (names, shapes, bytes)
  std::string fields;               // canonical key=value lines
  std::string fingerprint;          // SHA-256 of `fields`, hex
  bool has_cloud = false;           // the folder holds the cloud half (a server's copy)
};

// Reads a prepared job; verifies every file against the manifest
// (std::runtime_error naming the file otherwise). An edge's copy
// (fetch_job) has no cloud_init.pt: has_cloud is then false and
// load_cloud_half refuses.
PreparedJob load_job(const std::string& dir);

// The halves with their prepared initial weights (no SVD, no pretrained load).
// The edge's is built alone: no cloud block is ever constructed on a device.
training::ModelHalf load_edge_half(const PreparedJob& j);
training::ModelHalf load_cloud_half(const PreparedJob& j);

// The job's identity for halves built in memory (one-process runs and tests).
PreparedJob in_memory_job(const JobSpec& j, const training::ModelHalf& edge);

std::string job_fields(const JobSpec& j, const std::string& edge_weights_sha256);
std::string sha256_hex(const std::string& bytes);
// SHA-256 over every tensor's name, shape, dtype and bytes, in order.
std::string weights_sha256(const training::ModelHalf& h);
// "" when equal; otherwise names the first field that differs and both values.
std::string compare_fields(const std::string& mine, const std::string& theirs);

// JobSpec <-> key=value text (the model config's keys, plus task, up_codec,
// down_codec, codec_seed, optim.*, pretrained). Unknown keys and bad numbers
// are refused with the key's name.
std::string job_to_string(const JobSpec& j);
JobSpec job_from_string(const std::string& text);

}  // namespace seam::session
