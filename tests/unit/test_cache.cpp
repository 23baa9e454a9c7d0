// The answer cache: lifetime from the answer's TTL, LRU bounds by entries and bytes, reload
// eviction by name.
#include <doctest/doctest.h>

#include <memory>

#include "dnsd/cache.h"

namespace dns = egress::dns;
using dnsd::AnswerCache;
using dnsd::Clock;

namespace {

std::shared_ptr<const dns::PreparedAnswer> answer(std::uint32_t ttl, std::size_t wire_size = 64) {
  auto a = std::make_shared<dns::PreparedAnswer>();
  a->wire.assign(wire_size, 0);
  a->min_ttl = ttl;
  return a;
}

}  // namespace

TEST_CASE("cache: an entry lives for its TTL and reports its age") {
  AnswerCache cache(100, 1 << 20, 86400);
  const auto t0 = Clock::now();
  cache.insert("k", "github.com", answer(30), t0);
  auto hit = cache.lookup("k", t0 + std::chrono::seconds(29));
  REQUIRE(hit.has_value());
  CHECK(hit->age == 29);
  CHECK_FALSE(cache.lookup("k", t0 + std::chrono::seconds(30)).has_value());
  CHECK(cache.size() == 0);  // the expired entry was erased on the way
}

TEST_CASE("cache: TTL 0 is not cached and max_ttl caps the lifetime") {
  AnswerCache cache(100, 1 << 20, 60);
  const auto t0 = Clock::now();
  cache.insert("zero", "a.example", answer(0), t0);
  CHECK(cache.size() == 0);
  cache.insert("long", "b.example", answer(86400), t0);
  CHECK(cache.lookup("long", t0 + std::chrono::seconds(59)).has_value());
  CHECK_FALSE(cache.lookup("long", t0 + std::chrono::seconds(60)).has_value());
}

TEST_CASE("cache: the least recently used entry goes first when the entry cap is reached") {
  AnswerCache cache(2, 1 << 20, 86400);
  const auto t0 = Clock::now();
  cache.insert("a", "a.example", answer(300), t0);
  cache.insert("b", "b.example", answer(300), t0);
  CHECK(cache.lookup("a", t0).has_value());  // "b" is now the least recently used
  cache.insert("c", "c.example", answer(300), t0);
  CHECK(cache.size() == 2);
  CHECK(cache.lookup("a", t0).has_value());
  CHECK_FALSE(cache.lookup("b", t0).has_value());
  CHECK(cache.lookup("c", t0).has_value());
}

TEST_CASE("cache: the byte cap holds, and an entry larger than the cap is not kept") {
  AnswerCache cache(1000, 4096, 86400);
  const auto t0 = Clock::now();
  for (int i = 0; i < 50; ++i) {
    cache.insert("key" + std::to_string(i), "n.example", answer(300, 512), t0);
    CHECK(cache.bytes() <= 4096);
  }
  CHECK(cache.size() < 50);
  CHECK(cache.lookup("key49", t0).has_value());  // the newest survived
  cache.insert("huge", "h.example", answer(300, 8192), t0);
  CHECK_FALSE(cache.lookup("huge", t0).has_value());
}

TEST_CASE("cache: replacing a key keeps one entry and its new lifetime") {
  AnswerCache cache(10, 1 << 20, 86400);
  const auto t0 = Clock::now();
  cache.insert("k", "a.example", answer(10), t0);
  cache.insert("k", "a.example", answer(100), t0);
  CHECK(cache.size() == 1);
  CHECK(cache.lookup("k", t0 + std::chrono::seconds(50)).has_value());
}

TEST_CASE("cache: erase_if drops the names a predicate selects") {
  AnswerCache cache(10, 1 << 20, 86400);
  const auto t0 = Clock::now();
  cache.insert("1", "keep.example", answer(300), t0);
  cache.insert("2", "drop.example", answer(300), t0);
  cache.insert("3", "drop.example", answer(300), t0);
  CHECK(cache.erase_if([](std::string_view h) { return h == "drop.example"; }) == 2);
  CHECK(cache.size() == 1);
  CHECK(cache.lookup("1", t0).has_value());
}

TEST_CASE("cache: the key separates type, class and the DO/CD bits, not letter case") {
  auto query = [](std::string_view name, std::uint16_t type, bool do_bit) {
    dns::Query q;
    q.qname = *dns::Name::from_text(name);
    q.qtype = type;
    q.qclass = dns::qclass::IN;
    q.edns.present = do_bit;
    q.edns.do_bit = do_bit;
    return q;
  };
  CHECK(dnsd::cache_key(query("GitHub.COM", dns::type::A, false)) ==
        dnsd::cache_key(query("github.com", dns::type::A, false)));
  CHECK(dnsd::cache_key(query("github.com", dns::type::A, false)) !=
        dnsd::cache_key(query("github.com", dns::type::AAAA, false)));
  CHECK(dnsd::cache_key(query("github.com", dns::type::A, false)) !=
        dnsd::cache_key(query("github.com", dns::type::A, true)));
}
