#include "dnsd/query_log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include "common/json.h"
#include "common/rfc3339.h"

namespace dnsd {

std::string_view rcode_name(std::uint16_t rcode) {
  static constexpr std::string_view kNames[] = {"NOERROR", "FORMERR",  "SERVFAIL", "NXDOMAIN",
                                                "NOTIMP",  "REFUSED",  "YXDOMAIN", "YXRRSET",
                                                "NXRRSET", "NOTAUTH",  "NOTZONE"};
  if (rcode < std::size(kNames)) return kNames[rcode];
  if (rcode == 16) return "BADVERS";
  return "RCODE";
}

namespace {

void append_string_or_null(std::string& line, std::string_view key, std::string_view v) {
  line += ",\"";
  line += key;
  line += "\":";
  if (v.empty()) {
    line += "null";
  } else {
    line += egress::json_string(v);
  }
}

}  // namespace

void log_query(const QueryLogEntry& e) {
  std::string line = "{\"ts\":\"";
  line += egress::rfc3339_ms(std::chrono::system_clock::now());
  line += '"';
  append_string_or_null(line, "client", e.client);
  append_string_or_null(line, "proto", e.proto);
  append_string_or_null(line, "name", e.name);
  append_string_or_null(line, "type", e.type);
  append_string_or_null(line, "verdict", e.verdict);
  append_string_or_null(line, "rule", e.rule);
  std::string rc(rcode_name(e.rcode));
  if (rc == "RCODE") rc += std::to_string(e.rcode);
  append_string_or_null(line, "rcode", rc);
  append_string_or_null(line, "cache", e.cache);
  line += ",\"upstream_ms\":";
  if (e.upstream_ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", *e.upstream_ms);
    line += buf;
  } else {
    line += "null";
  }
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace dnsd
