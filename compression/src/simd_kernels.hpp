#pragma once
// Which instruction-set variant of the SIMD kernels (C3, lowrank) runs. The
// best one this CPU supports is picked at start-up.
namespace seam::compression::detail {

const char* simd_isa();  // "avx512", "avx2" or "generic": what runs now
// For tests and benchmarks: run a lesser variant ("generic", "avx2") or go back
// to the best ("avx512"). False if the name is unknown or this CPU lacks it.
bool set_simd_isa(const char* name);

}  // namespace seam::compression::detail
