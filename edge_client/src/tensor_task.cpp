#include "seam/edge_client/tensor_task.hpp"

#include <torch/torch.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace seam::edge {

namespace t = seam::training;

namespace {

class TensorTask final : public t::Task {
 public:
  TensorTask(std::string path, at::Tensor x, at::Tensor y, at::Tensor xt, at::Tensor yt)
      : path_(std::move(path)), x_(std::move(x)), y_(std::move(y)), xt_(std::move(xt)), yt_(std::move(yt)) {
    classes_ = y_.max().item<std::int64_t>() + 1;
    if (yt_.defined()) classes_ = std::max(classes_, yt_.max().item<std::int64_t>() + 1);
  }
  std::string name() const override { return "tensors:" + path_; }
  bool is_text() const override { return x_.scalar_type() == at::kLong; }
  std::int64_t num_classes() const override { return classes_; }
  std::size_t size(t::Split s) const override {
    const at::Tensor& x = s == t::Split::train ? x_ : xt_;
    return x.defined() ? static_cast<std::size_t>(x.size(0)) : 0;
  }
  t::TaskBatch batch(t::Split s, const std::vector<std::int64_t>& indices) const override {
    const bool train = s == t::Split::train;
    const at::Tensor& x = train ? x_ : xt_;
    const at::Tensor& y = train ? y_ : yt_;
    if (!x.defined()) throw std::invalid_argument("'" + path_ + "' has no test split (x_test, y_test)");
    auto ix = torch::tensor(indices, torch::kLong);
    t::TaskBatch b;
    b.x = x.index_select(0, ix);
    b.labels = y.index_select(0, ix);
    b.ids = indices;
    if (is_text()) b.mask = b.x.ne(0).to(torch::kLong);
    return b;
  }

 private:
  std::string path_;
  at::Tensor x_, y_, xt_, yt_;
  std::int64_t classes_ = 0;
};

at::Tensor get(const c10::impl::GenericDict& d, const std::string& path, const std::string& key, bool required) {
  for (const auto& kv : d)
    if (kv.key().isString() && kv.key().toStringRef() == key) {
      if (!kv.value().isTensor()) throw std::invalid_argument("'" + path + "': '" + key + "' is not a tensor");
      return kv.value().toTensor().contiguous();
    }
  if (required) throw std::invalid_argument("'" + path + "': no '" + key + "' tensor");
  return {};
}

void check_pair(const std::string& path, const at::Tensor& x, const at::Tensor& y, const std::string& xs,
                const std::string& ys) {
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kLong)
    throw std::invalid_argument("'" + path + "': '" + xs + "' must be float32 (images) or int64 (token ids)");
  if (y.scalar_type() != at::kLong || y.dim() != 1)
    throw std::invalid_argument("'" + path + "': '" + ys + "' must be int64 [N]");
  if (x.dim() < 2 || x.size(0) != y.size(0) || x.size(0) < 1)
    throw std::invalid_argument("'" + path + "': '" + xs + "' is " + c10::str(x.sizes()) + " and '" + ys + "' " +
                                c10::str(y.sizes()) + ": one label per row, at least one row");
  if (y.min().item<std::int64_t>() < 0) throw std::invalid_argument("'" + path + "': '" + ys + "' has a negative class");
}

}  // namespace

std::unique_ptr<t::Task> make_tensor_task(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::invalid_argument("tensor file '" + path + "' cannot be read");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw std::invalid_argument("tensor file '" + path + "' is not a torch.save'd dict: " + e.what_without_backtrace());
  }
  if (!v.isGenericDict()) throw std::invalid_argument("tensor file '" + path + "' does not hold a dict");
  const auto d = v.toGenericDict();
  auto x = get(d, path, "x", true), y = get(d, path, "y", true);
  auto xt = get(d, path, "x_test", false), yt = get(d, path, "y_test", false);
  check_pair(path, x, y, "x", "y");
  if (xt.defined() != yt.defined()) throw std::invalid_argument("'" + path + "': give both x_test and y_test, or neither");
  if (xt.defined()) check_pair(path, xt, yt, "x_test", "y_test");
  return std::make_unique<TensorTask>(path, x, y, xt, yt);
}

}  // namespace seam::edge
