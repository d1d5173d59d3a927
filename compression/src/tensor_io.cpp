#include "seam/compression/tensor_io.hpp"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "seam/compression/errors.hpp"

namespace seam::compression {
namespace {

std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CodecError("cannot open tensor file '" + path + "'");
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

// NumPy .npy: magic, version, header length, a Python-dict header, raw data.
at::Tensor load_npy(const std::string& path, const std::vector<char>& b) {
  auto fail = [&](const std::string& m) -> at::Tensor { throw CodecError(path + ": not a readable .npy file: " + m); };
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) return fail("bad magic");
  const int major = static_cast<unsigned char>(b[6]);
  std::size_t hlen, off;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return fail("truncated header");
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<std::size_t>(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    off = 12;
  } else {
    return fail("unsupported version " + std::to_string(major));
  }
  if (off + hlen > b.size()) return fail("truncated header");
  std::string h(b.data() + off, hlen);
  auto field = [&](const std::string& key) {
    auto p = h.find("'" + key + "'");
    if (p == std::string::npos) fail("header lacks '" + key + "'");
    return p + key.size() + 2;
  };
  auto dp = h.find('\'', h.find(':', field("descr")));
  auto descr = h.substr(dp + 1, h.find('\'', dp + 1) - dp - 1);
  if (h.find("True", field("fortran_order")) < h.find(',', field("fortran_order"))) return fail("Fortran order");
  c10::ScalarType st;
  if (descr == "<f4") st = at::kFloat;
  else if (descr == "<f2") st = at::kHalf;
  else if (descr == "<f8") st = at::kDouble;
  else return fail("dtype '" + descr + "' unsupported (float16/32/64, little-endian)");
  auto sp = h.find('(', field("shape"));
  auto se = h.find(')', sp);
  std::vector<std::int64_t> shape;
  std::string dims = h.substr(sp + 1, se - sp - 1);
  std::size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    std::size_t end = pos;
    while (end < dims.size() && std::isdigit(static_cast<unsigned char>(dims[end]))) ++end;
    if (end == pos) return fail("bad shape");
    shape.push_back(std::stoll(dims.substr(pos, end - pos)));
    pos = end;
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  const std::size_t data = off + hlen;
  if (b.size() - data != t.nbytes()) return fail("data size does not match shape");
  std::memcpy(t.data_ptr(), b.data() + data, t.nbytes());
  return t;
}

}  // namespace

at::Tensor load_tensor_file(const std::string& path) {
  auto bytes = read_all(path);
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) return load_npy(path, bytes).to(at::kFloat);
  try {
    auto iv = torch::pickle_load(bytes);
    if (!iv.isTensor()) throw CodecError(path + ": torch.save file does not hold a single tensor");
    return iv.toTensor().to(at::kFloat).contiguous();
  } catch (const c10::Error& e) {
    throw CodecError(path + ": cannot read as a torch.save tensor: " + e.what_without_backtrace());
  }
}

}  // namespace seam::compression
