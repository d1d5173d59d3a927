// The tensor loader against files written by a peer: Debian's python3-torch and numpy.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "seam/compression/errors.hpp"
#include "seam/compression/tensor_io.hpp"

namespace sc = seam::compression;
namespace fs = std::filesystem;

TEST(TensorIo, ReadsTorchSaveAndNpyWrittenByPython) {
  fs::path dir = fs::temp_directory_path() / ("seam_tio_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Values are exact in every dtype used: k/8 for k in [-24, 24).
  std::string py =
      "import torch, numpy as np\n"
      "t = (torch.arange(48, dtype=torch.float32) - 24).reshape(2, 3, 8) / 8\n"
      "torch.save(t, '" + (dir / "t.pt").string() + "')\n"
      "np.save('" + (dir / "t.npy").string() + "', t.numpy())\n"
      "np.save('" + (dir / "h.npy").string() + "', t.numpy().astype(np.float16))\n"
      "np.save('" + (dir / "i.npy").string() + "', np.arange(4, dtype=np.int32))\n"
      "torch.save(torch.arange(4), '" + (dir / "i64.pt").string() + "')\n"
      "torch.save(t.half(), '" + (dir / "h.pt").string() + "')\n"
      "torch.save({'w': t}, '" + (dir / "dict.pt").string() + "')\n"
      "torch.save(t, '" + (dir / "legacy.pt").string() + "', _use_new_zipfile_serialization=False)\n"
      "np.save('" + (dir / "npy_named.pt").string() + "', t.numpy()); import os\n"
      "os.rename('" + (dir / "npy_named.pt.npy").string() + "', '" + (dir / "npy_named.pt").string() + "')\n";
  std::ofstream(dir / "make.py") << py;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "make.py").string()).c_str()), 0);
  auto expect = (torch::arange(48, torch::kFloat) - 24).reshape({2, 3, 8}) / 8;
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "t.pt").string()), expect));
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "t.npy").string()), expect));
  // float16 keeps its dtype in both formats; the file's magic decides the format, not its name.
  auto h = sc::load_tensor_file((dir / "h.npy").string());
  EXPECT_EQ(h.scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(h.to(torch::kFloat), expect));
  EXPECT_EQ(sc::load_tensor_file((dir / "h.pt").string()).scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "npy_named.pt").string()), expect));
  // Integers are refused in both formats.
  EXPECT_THROW(sc::load_tensor_file((dir / "i.npy").string()), sc::CodecError);
  EXPECT_THROW(sc::load_tensor_file((dir / "i64.pt").string()), sc::CodecError);
  EXPECT_THROW(sc::load_tensor_file((dir / "dict.pt").string()), sc::CodecError);
  EXPECT_THROW(sc::load_tensor_file((dir / "legacy.pt").string()), sc::CodecError);
  EXPECT_THROW(sc::load_tensor_file(dir.string()), sc::CodecError);  // a directory
  EXPECT_THROW(sc::load_tensor_file((dir / "missing.pt").string()), sc::CodecError);
  std::ofstream(dir / "junk.pt") << "not a zip";
  EXPECT_THROW(sc::load_tensor_file((dir / "junk.pt").string()), sc::CodecError);
  std::ofstream(dir / "junk.npy") << "\x93NUMPY\x01";
  EXPECT_THROW(sc::load_tensor_file((dir / "junk.npy").string()), sc::CodecError);
  // A header claiming 10^10 floats over 16 bytes is refused before anything is allocated.
  std::string hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }";
  hdr.resize(118, ' ');
  hdr += '\n';
  std::ofstream(dir / "huge.npy", std::ios::binary)
      << std::string("\x93NUMPY\x01\x00", 8) << char(hdr.size() & 0xff) << char(hdr.size() >> 8) << hdr
      << std::string(16, '\0');
  try {
    sc::load_tensor_file((dir / "huge.npy").string());
    ADD_FAILURE() << "huge.npy loaded";
  } catch (const sc::CodecError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 40000000000 data bytes, the file has 16"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
