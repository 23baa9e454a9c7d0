// Loading YAML text for configuration files, with errors as egress::ConfigError at
// FILE:LINE:COL (shared by dnsd's allowlist and config, and later jail's policies).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

namespace egress {

// The one YAML document in `text`, or ConfigError at the syntax error (a second non-empty
// document is an error too).
YAML::Node load_yaml(std::string_view text, const std::string& source);

// "a list", "a map", "a string" or "empty", for "expected ..., not a list" messages.
const char* node_kind(const YAML::Node& n);

// `s` in double quotes for messages: '"' and '\\' escaped, control bytes as \xNN, cut at 80
// octets (without splitting a UTF-8 sequence) and marked "...".
std::string quoted(std::string_view s);

}  // namespace egress
