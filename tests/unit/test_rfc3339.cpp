// common/rfc3339: the timestamps of dnsd's query log and CHAOS report and of jail's lines.
#include <doctest/doctest.h>

#include <chrono>

#include "common/rfc3339.h"

using namespace std::chrono;
using egress::rfc3339_ms;
using egress::rfc3339_s;

TEST_CASE("rfc3339: UTC, zero-padded, to the second or the millisecond") {
  const system_clock::time_point epoch{};
  CHECK(rfc3339_s(epoch) == "1970-01-01T00:00:00Z");
  CHECK(rfc3339_ms(epoch) == "1970-01-01T00:00:00.000Z");
  // 2001-09-09T01:46:40Z is 10^9 s after the epoch.
  const system_clock::time_point t = epoch + seconds{1'000'000'000} + milliseconds{7};
  CHECK(rfc3339_s(t) == "2001-09-09T01:46:40Z");
  CHECK(rfc3339_ms(t) == "2001-09-09T01:46:40.007Z");
  // Sub-millisecond parts are cut, not rounded; rfc3339_s cuts the milliseconds.
  CHECK(rfc3339_ms(t + microseconds{999}) == "2001-09-09T01:46:40.007Z");
  CHECK(rfc3339_s(t + milliseconds{993}) == "2001-09-09T01:46:41Z");
  // A leap day.
  CHECK(rfc3339_ms(epoch + seconds{1'709'164'800} + milliseconds{999}) ==
        "2024-02-29T00:00:00.999Z");
}

TEST_CASE("rfc3339: times before 1970 round down, never a negative fraction") {
  const system_clock::time_point epoch{};
  CHECK(rfc3339_ms(epoch - milliseconds{1}) == "1969-12-31T23:59:59.999Z");
  CHECK(rfc3339_s(epoch - milliseconds{1}) == "1969-12-31T23:59:59Z");
}
