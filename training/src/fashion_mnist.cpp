#include "seam/training/fashion_mnist.hpp"

#include <ATen/ATen.h>
#include <zlib.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace seam::training {
namespace {

std::vector<std::uint8_t> gunzip_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path + " (install dataset-fashion-mnist)");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(f, gzclose);
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  if (n < 0) throw std::runtime_error("corrupt gzip data in " + path);
  return out;
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

}  // namespace

ImageSet load_fashion_mnist(const std::string& split, const std::string& dir) {
  std::string prefix;
  if (split == "train") prefix = "train";
  else if (split == "test") prefix = "t10k";
  else throw std::runtime_error("fashion-mnist split must be 'train' or 'test', got '" + split + "'");
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  auto img = gunzip_file(ipath);
  auto lab = gunzip_file(lpath);
  if (img.size() < 16 || be32(img.data()) != 0x803) throw std::runtime_error(ipath + ": not an idx3 image file");
  if (lab.size() < 8 || be32(lab.data()) != 0x801) throw std::runtime_error(lpath + ": not an idx1 label file");
  const std::int64_t n = be32(img.data() + 4), rows = be32(img.data() + 8), cols = be32(img.data() + 12);
  if (rows != 28 || cols != 28 || img.size() != std::size_t(16 + n * rows * cols))
    throw std::runtime_error(ipath + ": unexpected size or geometry");
  if (be32(lab.data() + 4) != n || lab.size() != std::size_t(8 + n))
    throw std::runtime_error(lpath + ": label count differs from image count");
  ImageSet s;
  at::Tensor raw = at::empty({n, 1, rows, cols}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(raw.data_ptr(), img.data() + 16, std::size_t(n * rows * cols));
  s.images = raw.to(at::kFloat).div_(255.0);
  at::Tensor l = at::empty({n}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(l.data_ptr(), lab.data() + 8, std::size_t(n));
  s.labels = l.to(at::kLong);
  if (s.labels.max().item<std::int64_t>() > 9) throw std::runtime_error(lpath + ": label out of range");
  s.ids = at::arange(n, at::TensorOptions().dtype(at::kLong));
  return s;
}

}  // namespace seam::training
