// ElementTable: timeouts from TTLs, when the kernel is needed, the TTL cap, revocation.
#include <doctest/doctest.h>

#include <chrono>

#include "dnsd/element_table.h"

namespace dns = egress::dns;
using dnsd::ElementTable;
using dnsd::Lifetimes;
using namespace std::chrono_literals;

namespace {

dns::Address v4(std::uint8_t last, std::uint32_t ttl) {
  dns::Address a;
  a.family = 4;
  a.bytes = {192, 0, 2, last};
  a.ttl = ttl;
  return a;
}

const Lifetimes kLife{60s, 3600s, 30s};

}  // namespace

TEST_CASE("element_table: timeout = clamp(TTL, min, max) + grace") {
  CHECK(dnsd::element_timeout(5, kLife) == 90s);      // below min
  CHECK(dnsd::element_timeout(300, kLife) == 330s);   // inside
  CHECK(dnsd::element_timeout(86400, kLife) == 3630s);  // above max
}

TEST_CASE("element_table: a new address is added with its full timeout; the cap is the clamp") {
  ElementTable t(kLife);
  const auto now = dnsd::Clock::now();
  const dns::Address a[] = {v4(1, 300), v4(2, 86400)};
  const auto p = t.plan(a, now);
  REQUIRE(p.add.size() == 2);
  CHECK(p.add[0].timeout == 330s);
  CHECK(p.add[0].expires == 330s);
  CHECK(p.add[1].timeout == 3630s);
  CHECK(p.already_there.empty());
  CHECK(p.ttl_cap == 300);  // min(330, 3630) - grace
}

TEST_CASE("element_table: no kernel work while more than half the timeout is left") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address a[] = {v4(1, 300)};
  const auto p = t.plan(a, t0);
  t.applied(p, "github.com", a, t0);
  const auto later = t.plan(a, t0 + 100s);  // 230 s left of 330
  CHECK(later.empty());
  CHECK(later.ttl_cap == 200);  // 230 - 30
  const auto renew = t.plan(a, t0 + 170s);  // 160 s left < 165
  REQUIRE(renew.add.size() == 1);
  CHECK(renew.already_there.size() == 1);
  CHECK(renew.ttl_cap == 300);
}

TEST_CASE("element_table: an expired element is added again, not renewed") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address a[] = {v4(1, 60)};
  t.applied(t.plan(a, t0), "a.example", a, t0);
  const auto p = t.plan(a, t0 + 91s);
  CHECK(p.add.size() == 1);
  CHECK(p.already_there.empty());
}

TEST_CASE("element_table: the same address twice in one answer is added once") {
  ElementTable t(kLife);
  const dns::Address a[] = {v4(1, 60), v4(1, 600)};
  const auto p = t.plan(a, dnsd::Clock::now());
  CHECK(p.add.size() == 1);
  CHECK(p.ttl_cap == 60);
}

TEST_CASE("element_table: revocation deletes only addresses no allowed name holds") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address shared[] = {v4(1, 300)};
  const dns::Address only_b[] = {v4(2, 300)};
  t.applied(t.plan(shared, t0), "a.example", shared, t0);
  t.applied(t.plan(shared, t0), "b.example", shared, t0);
  t.applied(t.plan(only_b, t0), "b.example", only_b, t0);
  const auto gone = t.revoke([](std::string_view n) { return n != "b.example"; }, t0 + 1s);
  REQUIRE(gone.size() == 1);
  CHECK(gone[0] == dnsd::to_nft(v4(2, 0)));
  CHECK(t.size() == 1);  // 192.0.2.1 stays: a.example holds it
  const auto all = t.revoke([](std::string_view) { return false; }, t0 + 1s);
  CHECK(all.size() == 1);
  CHECK(t.size() == 0);
}

TEST_CASE("element_table: restored elements are never revoked, and expire") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dnsd::SetElement e{dnsd::to_nft(v4(9, 0)), 330s, 100s};
  t.restore(std::span(&e, 1), t0);
  CHECK(t.revoke([](std::string_view) { return false; }, t0).empty());
  CHECK(t.size() == 1);
  const dns::Address a[] = {v4(9, 300)};
  CHECK(t.plan(a, t0).add.size() == 1);  // 100 s left < 165: renew
  CHECK(t.expire(t0 + 101s) == 1);
  CHECK(t.size() == 0);
}

TEST_CASE("element_table: an element about to lapse is forgotten, not deleted") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address a[] = {v4(1, 60)};
  t.applied(t.plan(a, t0), "a.example", a, t0);  // expires at t0 + 90 s
  CHECK(t.revoke([](std::string_view) { return false; }, t0 + 89500ms).empty());
  CHECK(t.size() == 0);
}

TEST_CASE("element_table: a name that finds its addresses installed already holds them too") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address shared[] = {v4(1, 300)};
  t.applied(t.plan(shared, t0), "a.example", shared, t0);
  REQUIRE(t.plan(shared, t0 + 1s).empty());  // b.example's answer needs no kernel work...
  t.hold("b.example", shared);                // ...but b.example holds the address now
  CHECK(t.revoke([](std::string_view n) { return n != "a.example"; }, t0 + 2s).empty());
  CHECK(t.size() == 1);
}

TEST_CASE("element_table: an address the new policy rejects goes whoever holds it") {
  ElementTable t(kLife);
  const auto t0 = dnsd::Clock::now();
  const dns::Address a[] = {v4(1, 300)};
  t.applied(t.plan(a, t0), "a.example", a, t0);
  const auto gone = t.revoke([](std::string_view) { return true; }, t0 + 1s,
                             [](const dnsd::NftAddress&) { return false; });
  CHECK(gone.size() == 1);
  CHECK(t.size() == 0);
}
