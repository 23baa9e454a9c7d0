// libFuzzer target: jail's compiled-policy decoder (jail/compiled_policy.h), which reads a file
// from disk before anything in it is compared with the machine. Refusing junk with a reason is
// the expected outcome; a crash, an exception, an empty reason, or an accepted image that does
// not survive encode -> decode unchanged is a bug.
// Seeds (corpus/fuzz_compiled_policy): `jail --policies-dir p --compile-policy NAME` for
// default, strict and a site policy that sets every field, and one cut short; decode does not
// look at the build ID, so they stay valid inputs across builds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "jail/compiled_policy.h"

namespace {

[[noreturn]] void bug(const char* what) {
  std::fprintf(stderr, "fuzz_compiled_policy: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto first = jail::decode(std::span<const std::uint8_t>(data, size));
  if (const auto* why = std::get_if<std::string>(&first)) {
    if (why->empty()) bug("refused without a reason");
    return 0;
  }
  // Accepted: writing it out again must give an image that decodes to the same bytes (sets
  // may have merged duplicate names, so compare the second encoding with the third).
  const std::vector<std::uint8_t> again = jail::encode(std::get<jail::PolicyImage>(first));
  const auto second = jail::decode(again);
  if (!std::holds_alternative<jail::PolicyImage>(second)) bug("re-encoded image refused");
  if (jail::encode(std::get<jail::PolicyImage>(second)) != again) bug("encode/decode not stable");
  return 0;
}
