#include "common/config_error.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace egress {

namespace {

// Config files are written by admins, but a path can still name /dev/zero or a log file by
// mistake: refuse anything larger than any sensible allowlist instead of reading it whole.
constexpr std::size_t kMaxConfigBytes = 16 * 1024 * 1024;

// Messages end up on one log line and in terminals: control bytes (yaml-cpp echoes the
// offending character, a NUL would cut what() short) are written as \xNN.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string with_position(const std::string& file, int line, int column,
                          const std::string& message) {
  if (line <= 0) return file + ": " + message;
  std::string out = file + ":" + std::to_string(line);
  if (column > 0) out += ":" + std::to_string(column);
  return out + ": " + message;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string message)
    : std::runtime_error(with_position(printable(file), line, column, printable(message))),
      file_(std::move(file)),
      line_(line > 0 ? line : 0),
      column_(line > 0 && column > 0 ? column : 0),
      message_(printable(message)) {}

ConfigError::ConfigError(std::string file, std::string message)
    : ConfigError(std::move(file), 0, 0, std::move(message)) {}

void fail_at(const std::string& file, const YAML::Mark& mark, const std::string& msg) {
  if (mark.is_null() || mark.line < 0 || mark.column < 0) throw ConfigError(file, msg);
  throw ConfigError(file, mark.line + 1, mark.column + 1, msg);
}

void fail_at(const std::string& file, const YAML::Node& node, const std::string& msg) {
  // Mark() throws YAML::InvalidNode on a zombie node (the result of indexing a missing key);
  // a config error must never turn into a yaml-cpp exception.
  fail_at(file, node.IsDefined() ? node.Mark() : YAML::Mark::null_mark(), msg);
}

std::string read_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int err = errno;
    throw ConfigError(path, std::string("cannot read: ") + std::strerror(err));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    if (n > 0) {
      if (n > kMaxConfigBytes - text.size()) {
        throw ConfigError(path, "cannot read: larger than " +
                                    std::to_string(kMaxConfigBytes / (1024 * 1024)) + " MiB");
      }
      text.append(buf, n);
    }
    if (n < sizeof buf) {
      if (std::ferror(f.get())) {
        const int err = errno;
        throw ConfigError(path, std::string("cannot read: ") + std::strerror(err));
      }
      break;
    }
  }
  return text;
}

}  // namespace egress
