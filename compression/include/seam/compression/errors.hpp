#pragma once
#include <stdexcept>
#include <string>

namespace seam::compression {

// Bad spec, bad parameter, unsupported input (e.g. NaN): the caller's mistake.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Encoded bytes that do not decode: corrupt, truncated, or out of sync.
class DecodeError : public CodecError {
 public:
  using CodecError::CodecError;
};

}  // namespace seam::compression
