#include "common/rfc3339.h"

#include <cstdio>
#include <ctime>

namespace egress {

namespace {

// "YYYY-MM-DDTHH:MM:SS", ".mmm" when `with_ms`, then "Z". Times before 1970 round
// down (floor), so the milliseconds are never negative.
std::string format(std::chrono::system_clock::time_point t, bool with_ms) {
  using namespace std::chrono;
  const auto secs_tp = floor<seconds>(t);
  const auto ms = duration_cast<milliseconds>(t - secs_tp).count();
  const std::time_t secs = system_clock::to_time_t(secs_tp);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int fields, so -Wformat-truncation has nothing to say
  if (with_ms) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  }
  return buf;
}

}  // namespace

std::string rfc3339_ms(std::chrono::system_clock::time_point t) { return format(t, true); }

std::string rfc3339_s(std::chrono::system_clock::time_point t) { return format(t, false); }

}  // namespace egress
