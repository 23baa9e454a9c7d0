// The rebinding guard: which resolved addresses dnsd refuses to install.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <string>

#include "dnsd/address_guard.h"

namespace dns = egress::dns;

namespace {

dns::Address addr(const std::string& text, std::uint16_t record = 0) {
  dns::Address a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    a.family = 4;
  } else {
    REQUIRE(inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1);
    a.family = 6;
  }
  a.record = record;
  return a;
}

}  // namespace

TEST_CASE("address_guard: a table of addresses and whether they are guarded") {
  struct Row {
    const char* address;
    bool guarded;
  };
  const Row rows[] = {
      {"192.0.2.10", false},       {"203.0.113.7", false},   {"8.8.8.8", false},
      {"10.1.2.3", true},          {"172.16.0.1", true},     {"172.32.0.1", false},
      {"192.168.1.1", true},       {"127.0.0.1", true},      {"169.254.169.254", true},
      {"0.0.0.0", true},           {"100.64.0.1", true},     {"224.0.0.251", true},
      {"255.255.255.255", true},   {"192.0.0.8", true},      {"2001:db8::1", false},
      {"::1", true},               {"::", true},             {"fe80::1", true},
      {"fd00::1", true},           {"ff02::1", true},        {"::ffff:192.0.2.1", true},
      {"::10.0.0.1", true},        {"64:ff9b::a9fe:a9fe", true},  // NAT64 of the metadata IP
      {"64:ff9b::c000:20a", false},                               // NAT64 of 192.0.2.10
      {"2002:0a00:0001::1", true},                                // 6to4 of 10.0.0.1
      {"64:ff9b:1::1", true},
  };
  for (const Row& r : rows) {
    CAPTURE(r.address);
    CHECK(!dnsd::guarded_range(addr(r.address)).empty() == r.guarded);
  }
}

TEST_CASE("address_guard: networks: make a guarded address installable") {
  const egress::Cidr net = *egress::parse_cidr("10.0.0.0/8").cidr;
  CHECK(dnsd::installable(addr("10.0.0.1"), std::span(&net, 1)));
  CHECK_FALSE(dnsd::installable(addr("192.168.0.1"), std::span(&net, 1)));
  CHECK(dnsd::installable(addr("192.0.2.1"), {}));
}

TEST_CASE("address_guard: records to drop: guarded ones, those past the cap, capped records") {
  dns::PreparedAnswer a;
  a.addresses = {addr("192.0.2.1", 0), addr("10.0.0.1", 1), addr("192.0.2.2", 2),
                 addr("192.0.2.3", 3), addr("192.0.2.4", 4)};
  a.capped_records = {7};
  const auto drop = dnsd::records_to_drop(a, {}, 2);
  CHECK(drop == std::vector<std::uint16_t>{1, 3, 4, 7});
}
