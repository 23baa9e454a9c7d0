// SHA-256 (FIPS 180-4) of a byte string, for identifying a file's exact content in reports
// (dnsd's `dig CH TXT policy.egress`), comparable with `sha256sum FILE`.
//
// Why here: none of the project's dependencies exposes SHA-256 (Boost 1.81 has SHA-1 only, in
// boost/uuid/detail; c-ares, libidn2, yaml-cpp, spdlog, libnftnl have none), and OpenSSL's
// libcrypto is not one of them; a 64-bit FNV digest would not let an admin compare the value with
// sha256sum's. Not for secrets: no constant-time concerns apply to hashing a policy file.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace egress {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view data);
  // The digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> finish();

 private:
  void block(const std::uint8_t* p);

  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;  // octets hashed so far
};

// 64 lowercase hex digits, as sha256sum prints them.
std::string sha256_hex(std::string_view data);

}  // namespace egress
