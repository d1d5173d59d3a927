#pragma once
// Mapping between LibTorch scalar types and wire dtypes.
#include <c10/core/ScalarType.h>

#include "seam/transport/wire_types.hpp"

namespace seam::compression {

// Throws CodecError for a scalar type that has no wire form (complex, bool, ...).
transport::WireDType to_wire(c10::ScalarType t);
c10::ScalarType from_wire(transport::WireDType t);

}  // namespace seam::compression
