// One JSON object per line on stdout for each query, when --log-queries is on:
// {"ts":"2026-11-22T06:30:00.123Z","client":"127.0.0.1:40000","proto":"udp","name":"github.com.",
//  "type":"A","verdict":"allow","rule":"github.com","rcode":"NOERROR","cache":"miss",
//  "upstream_ms":1.234}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dnsd {

struct QueryLogEntry {
  std::string_view client;   // "ADDR:PORT"
  std::string_view proto;    // "udp" | "tcp"
  std::string_view name;     // presentation form, or "" when the packet had no readable name
  std::string_view type;     // "A", "TYPE65534", or ""
  std::string_view verdict;  // allow | deny | formerr | notimp | badvers | refused | overload
                             // | chaos (a CHAOS report, chaos.h)
  std::string_view rule;     // the allowlist entry that matched, "" for none
  std::uint16_t rcode = 0;
  std::string_view cache;    // hit | miss | coalesced, "" when not applicable
  std::optional<double> upstream_ms;
};

// Writes one line for `e` to stdout and flushes it.
void log_query(const QueryLogEntry& e);

// "NOERROR", "NXDOMAIN", ... ("RCODE23" for others).
std::string_view rcode_name(std::uint16_t rcode);

}  // namespace dnsd
