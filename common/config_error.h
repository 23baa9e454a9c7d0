// Errors in configuration files, reported as FILE:LINE:COL: message (1-based, as editors count).
#pragma once

#include <stdexcept>
#include <string>

namespace YAML {
class Node;
struct Mark;
}  // namespace YAML

namespace egress {

class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int line, int column, std::string message);
  // For errors without a position (file unreadable, a flag's value).
  ConfigError(std::string file, std::string message);

  const std::string& file() const { return file_; }
  int line() const { return line_; }      // 0 when unknown
  int column() const { return column_; }  // 0 when unknown
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  int line_ = 0;
  int column_ = 0;
  std::string message_;
};

// Throws ConfigError at the node's position (yaml-cpp marks are 0-based; these are 1-based).
[[noreturn]] void fail_at(const std::string& file, const YAML::Node& node, const std::string& msg);
[[noreturn]] void fail_at(const std::string& file, const YAML::Mark& mark, const std::string& msg);

// Reads a whole file; throws ConfigError(file, "cannot read: <strerror>") on failure.
std::string read_file(const std::string& path);

}  // namespace egress
