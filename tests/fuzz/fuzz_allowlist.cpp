// libFuzzer target: config loading. The bytes go to Allowlist::parse and to parse_config (then
// validate). A ConfigError is the expected outcome for junk; any other exception escaping, a
// crash, or an accepted allowlist that does not match its own entries is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/config_error.h"
#include "dnsd/allowlist.h"
#include "dnsd/config.h"

namespace {

const std::string kSource = "fuzz.yaml";

[[noreturn]] void bug(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_allowlist: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Errors found while parsing carry a position and read "fuzz.yaml:LINE:COL: message".
void check_error(const egress::ConfigError& e) {
  const std::string text = e.what();
  if (e.file() != kSource || text.rfind(kSource + ":", 0) != 0) bug("error without file", text);
  if (e.message().empty()) bug("empty message", text);
  if (e.line() > 0) {
    const std::string prefix =
        kSource + ":" + std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": ";
    if (e.column() <= 0 || text != prefix + e.message()) bug("malformed position", text);
  }
}

void check_allowlist(const dnsd::Allowlist& list) {
  for (const dnsd::AllowEntry& e : list.entries()) {
    if (e.name.empty() || e.name.size() > 253) bug("bad entry length", e.name);
    for (char c : e.name) {
      const bool ok =
          (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
      if (!ok) bug("bad character in entry", e.name);
    }
    if (e.line < 1 || e.column < 1) bug("entry without position", e.pattern);
    const std::string probe = e.wildcard ? "x." + e.name : e.name;
    const dnsd::AllowEntry* m = list.match(probe);
    if (m == nullptr) bug("entry does not match itself", e.pattern);
    if (e.wildcard && list.match(e.name) == &e) bug("wildcard matches its own apex", e.pattern);
  }
  if (list.digest().size() != 16) bug("digest length", list.digest());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto list = dnsd::Allowlist::parse(text, kSource);
    check_allowlist(*list);
  } catch (const egress::ConfigError& e) {
    check_error(e);
  }
  try {
    const dnsd::Config c = dnsd::parse_config(text, kSource);
    try {
      dnsd::validate(c, kSource);
    } catch (const egress::ConfigError& e) {
      if (e.file() != kSource) bug("validate error without file", e.what());
    }
  } catch (const egress::ConfigError& e) {
    check_error(e);
  }
  return 0;
}
