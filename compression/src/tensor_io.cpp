#include "seam/compression/tensor_io.hpp"

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "seam/compression/errors.hpp"

namespace seam::compression {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHowToSave =
    "save one with torch.save(t, path) (the default zip format) or numpy.save(path, a)";

std::vector<char> read_all(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw CodecError("tensor file '" + path + "' does not exist");
  if (fs::is_directory(st)) throw CodecError("tensor file '" + path + "' is a directory, not a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CodecError("cannot open tensor file '" + path + "': " + std::strerror(errno));
  std::vector<char> b;
  if (fs::is_regular_file(st)) b.reserve(static_cast<std::size_t>(fs::file_size(path, ec)));
  b.assign(std::istreambuf_iterator<char>(f), {});
  if (f.bad()) throw CodecError("cannot read tensor file '" + path + "'");
  return b;
}

// One rule for both formats: floating tensors only. float16 and bfloat16 keep
// their dtype (codecs see what the file holds); float64 narrows to float32.
at::Tensor accept_dtype(const std::string& path, at::Tensor t) {
  const auto st = t.scalar_type();
  if (st == at::kFloat || st == at::kHalf || st == at::kBFloat16) return t.contiguous();
  if (st == at::kDouble) return t.to(at::kFloat).contiguous();
  throw CodecError(path + ": dtype " + c10::toString(st) +
                   " is not supported; give a floating tensor (float16, bfloat16, float32 or float64)");
}

// NumPy .npy: magic, version, header length, a Python-dict header, raw data.
// Every size is checked against the file before anything is allocated.
at::Tensor load_npy(const std::string& path, const std::vector<char>& b) {
  auto fail = [&](const std::string& m) -> at::Tensor { throw CodecError(path + ": not a readable .npy file: " + m); };
  if (b.size() < 10) return fail("truncated header");
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
  if (hlen > b.size() - off) return fail("truncated header");
  const std::string h(b.data() + off, hlen);
  auto field = [&](const std::string& key) {
    auto p = h.find("'" + key + "'");
    if (p == std::string::npos) fail("header lacks '" + key + "'");
    auto colon = h.find(':', p);
    if (colon == std::string::npos) fail("header field '" + key + "' has no value");
    return colon + 1;
  };
  const auto dq = h.find('\'', field("descr"));
  const auto dq_end = dq == std::string::npos ? dq : h.find('\'', dq + 1);
  if (dq_end == std::string::npos) return fail("bad 'descr'");
  const std::string descr = h.substr(dq + 1, dq_end - dq - 1);
  const auto fo = h.find_first_not_of(' ', field("fortran_order"));
  if (fo == std::string::npos) return fail("bad 'fortran_order'");
  if (h.compare(fo, 4, "True") == 0) return fail("Fortran order is not supported");
  c10::ScalarType st;
  if (descr == "<f4") st = at::kFloat;
  else if (descr == "<f2") st = at::kHalf;
  else if (descr == "<f8") st = at::kDouble;
  else
    return fail("dtype '" + descr +
                "' is not supported; give a floating tensor (float16, float32 or float64, little-endian)");
  const auto sp = h.find('(', field("shape"));
  const auto se = sp == std::string::npos ? sp : h.find(')', sp);
  if (se == std::string::npos) return fail("bad 'shape'");
  std::vector<std::int64_t> shape;
  const std::string dims = h.substr(sp + 1, se - sp - 1);
  std::uint64_t numel = 1;
  const std::uint64_t limit = std::numeric_limits<std::int64_t>::max() / 8;
  for (std::size_t pos = 0; pos < dims.size();) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    std::size_t end = pos;
    std::uint64_t d = 0;
    for (; end < dims.size() && std::isdigit(static_cast<unsigned char>(dims[end])); ++end) {
      d = d * 10 + static_cast<std::uint64_t>(dims[end] - '0');
      if (d > limit) return fail("dimension too large");
    }
    if (end == pos) return fail("bad shape '(" + dims + ")'");
    if (shape.size() == 32) return fail("more than 32 dimensions");
    if (d && numel > limit / d) return fail("shape (" + dims + ") is too large");
    numel *= d;
    shape.push_back(static_cast<std::int64_t>(d));
    pos = end;
  }
  const std::size_t data = off + hlen;
  const std::uint64_t need = numel * c10::elementSize(st);
  if (b.size() - data != need)
    return fail("shape (" + dims + ") of " + descr + " needs " + std::to_string(need) + " data bytes, the file has " +
                std::to_string(b.size() - data));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  if (need) std::memcpy(t.data_ptr(), b.data() + data, need);
  return t;
}

at::Tensor load_torch_save(const std::string& path, const std::vector<char>& b) {
  at::IValue iv;
  try {
    iv = torch::pickle_load(b);
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    // The zip reader fails first on a damaged archive; the unpickler on any object but a tensor.
    if (why.find("central directory") != std::string::npos || why.find("PytorchStreamReader") != std::string::npos)
      throw CodecError(path + ": a truncated or damaged zip file (" + why + "); " + kHowToSave);
    throw CodecError(path + ": a torch.save file that does not hold a single tensor (a dict, state_dict or " +
                     "module cannot be read here; LibTorch says: " + why + "); " + kHowToSave);
  }
  if (!iv.isTensor())
    throw CodecError(path + ": torch.save file holds a " + iv.tagKind() + ", not a single tensor; " + kHowToSave);
  return iv.toTensor();
}

}  // namespace

at::Tensor load_tensor_file(const std::string& path) {
  const auto bytes = read_all(path);
  // The content decides the format, never the file name.
  if (bytes.size() >= 6 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0)
    return accept_dtype(path, load_npy(path, bytes));
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), "PK\x03\x04", 4) == 0)
    return accept_dtype(path, load_torch_save(path, bytes));
  if (bytes.empty()) throw CodecError(path + ": the file is empty; " + kHowToSave);
  if (static_cast<unsigned char>(bytes[0]) == 0x80)
    throw CodecError(path + ": a legacy (pre-zip) torch.save or a bare pickle file, which Seam cannot read; " +
                     kHowToSave);
  throw CodecError(path + ": neither a .npy file (magic \\x93NUMPY) nor a torch.save zip file (magic PK); " +
                   kHowToSave);
}

}  // namespace seam::compression
