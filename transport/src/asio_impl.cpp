// The one translation unit that compiles standalone Asio (ASIO_SEPARATE_COMPILATION),
// so no other TU pays for Asio's implementation.
#include <asio/impl/src.hpp>
#include <asio/ssl/impl/src.hpp>
