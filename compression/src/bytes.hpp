#pragma once
// Little-endian byte writer and a bounds-checked reader. Every read from
// encoded bytes goes through ByteReader, which throws DecodeError instead of
// reading past the end.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "seam/compression/errors.hpp"

namespace seam::compression::detail {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::uint8_t>& out) : out_(out) {}
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // host is little-endian (checked in codec.cpp)
    out_.insert(out_.end(), b, b + sizeof(T));
  }
  void put_bytes(const void* p, std::size_t n) {
    auto* c = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), c, c + n);
  }
  void put_str8(const std::string& s) {
    put<std::uint8_t>(static_cast<std::uint8_t>(s.size()));
    put_bytes(s.data(), s.size());
  }
  void put_str16(const std::string& s) {
    put<std::uint16_t>(static_cast<std::uint16_t>(s.size()));
    put_bytes(s.data(), s.size());
  }
  void put_shape(const std::vector<std::int64_t>& shape) {
    put<std::uint8_t>(static_cast<std::uint8_t>(shape.size()));
    for (auto d : shape) put<std::int64_t>(d);
  }
  std::size_t size() const { return out_.size(); }

 private:
  std::vector<std::uint8_t>& out_;
};

inline constexpr int kMaxDims = 8;
inline constexpr std::int64_t kMaxElements = std::int64_t{1} << 32;

class ByteReader {
 public:
  ByteReader(const std::uint8_t* p, std::size_t n, const char* what) : p_(p), n_(n), what_(what) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const std::uint8_t* take(std::size_t n) {
    need(n);
    const std::uint8_t* r = p_ + pos_;
    pos_ += n;
    return r;
  }
  std::string get_str8() {
    auto n = get<std::uint8_t>();
    auto* s = take(n);
    return std::string(reinterpret_cast<const char*>(s), n);
  }
  std::string get_str16() {
    auto n = get<std::uint16_t>();
    auto* s = take(n);
    return std::string(reinterpret_cast<const char*>(s), n);
  }
  // Shapes are validated here: dims in range, element count bounded, no overflow.
  std::vector<std::int64_t> get_shape() {
    auto nd = get<std::uint8_t>();
    if (nd > kMaxDims) fail("tensor has " + std::to_string(nd) + " dims (max " + std::to_string(kMaxDims) + ")");
    std::vector<std::int64_t> shape(nd);
    std::int64_t numel = 1;
    for (auto& d : shape) {
      d = get<std::int64_t>();
      if (d < 0 || d > kMaxElements) fail("dimension " + std::to_string(d) + " out of range");
      numel *= d;
      if (numel > kMaxElements) fail("tensor element count exceeds limit");
    }
    return shape;
  }
  std::size_t remaining() const { return n_ - pos_; }
  void expect_end() {
    if (pos_ != n_) fail(std::to_string(n_ - pos_) + " trailing bytes");
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw DecodeError(std::string(what_) + ": " + msg + " (at byte " + std::to_string(pos_) + " of " +
                      std::to_string(n_) + ")");
  }

 private:
  void need(std::size_t k) {
    if (k > n_ - pos_) fail("truncated: need " + std::to_string(k) + " bytes, have " + std::to_string(n_ - pos_));
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const char* what_;
};

inline std::int64_t shape_numel(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

}  // namespace seam::compression::detail
