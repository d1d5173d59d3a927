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
      "np.save('" + (dir / "i.npy").string() + "', np.arange(4, dtype=np.int32))\n";
  std::ofstream(dir / "make.py") << py;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "make.py").string()).c_str()), 0);
  auto expect = (torch::arange(48, torch::kFloat) - 24).reshape({2, 3, 8}) / 8;
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "t.pt").string()), expect));
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "t.npy").string()), expect));
  EXPECT_TRUE(torch::equal(sc::load_tensor_file((dir / "h.npy").string()), expect));
  EXPECT_THROW(sc::load_tensor_file((dir / "i.npy").string()), sc::CodecError);  // int32 refused
  EXPECT_THROW(sc::load_tensor_file((dir / "missing.pt").string()), sc::CodecError);
  std::ofstream(dir / "junk.pt") << "not a zip";
  EXPECT_THROW(sc::load_tensor_file((dir / "junk.pt").string()), sc::CodecError);
  std::ofstream(dir / "junk.npy") << "\x93NUMPY\x01";
  EXPECT_THROW(sc::load_tensor_file((dir / "junk.npy").string()), sc::CodecError);
  fs::remove_all(dir);
}
