#pragma once
// Which instruction-set variant of the SIMD kernels (C3, lowrank) runs. The
// best one this CPU supports is picked at start-up.
namespace seam::compression::detail {

const char* simd_isa();  // "avx512", "avx2" or "generic": what runs now
// For tests and benchmarks: run a lesser variant ("generic", "avx2") or go back
// to the best ("avx512"). False if the name is unknown or this CPU lacks it.
bool set_simd_isa(const char* name);

// set_simd_isa for a scope: the variant in force before comes back on exit,
// however the scope is left (a failed test assertion included).
class ScopedSimdIsa {
 public:
  explicit ScopedSimdIsa(const char* name) : previous_(simd_isa()), ok_(set_simd_isa(name)) {}
  ~ScopedSimdIsa() { set_simd_isa(previous_); }
  ScopedSimdIsa(const ScopedSimdIsa&) = delete;
  ScopedSimdIsa& operator=(const ScopedSimdIsa&) = delete;
  bool ok() const { return ok_; }  // false: this CPU lacks the variant; nothing changed

 private:
  const char* previous_;  // one of simd_isa()'s string literals
  bool ok_;
};

}  // namespace seam::compression::detail
