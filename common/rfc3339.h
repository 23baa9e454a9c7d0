// RFC 3339 timestamps in UTC, as egress's logs and reports write them (RFC 3339 §5.6, "Z").
#pragma once

#include <chrono>
#include <string>

namespace egress {

// To the millisecond: "2026-12-01T13:03:18.123Z" (dnsd's query log, jail's JSON lines).
std::string rfc3339_ms(std::chrono::system_clock::time_point t);

// To the second: "2026-11-22T07:00:00Z" (dnsd's CHAOS policy report).
std::string rfc3339_s(std::chrono::system_clock::time_point t);

}  // namespace egress
