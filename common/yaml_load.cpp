#include "common/yaml_load.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/config_error.h"

namespace egress {

namespace {

// Values are echoed in messages; a pasted blob should not become a kilobyte-long log line.
constexpr std::size_t kMaxQuoted = 80;

// The first event of each document, and whether the document holds more than an empty node.
class DocumentScan : public YAML::EventHandler {
 public:
  YAML::Mark mark = YAML::Mark::null_mark();
  bool has_content = false;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { note(m, false); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { note(m, true); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(m, true);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(m, true);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(m, true);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& m, bool content) {
    if (mark.is_null()) mark = m;
    has_content = has_content || content;
  }
};

// "','" for the byte at a mark (columns count bytes; line 1 does not count a BOM).
std::string char_at(std::string_view text, const YAML::Mark& m) {
  std::size_t pos = 0;
  for (int line = 0; line < m.line && pos != std::string_view::npos; ++line) {
    pos = text.find('\n', pos);
    if (pos != std::string_view::npos) ++pos;
  }
  if (pos == 0 && text.starts_with("\xEF\xBB\xBF")) pos = 3;
  if (pos == std::string_view::npos || m.column < 0) return "character";
  pos += static_cast<std::size_t>(m.column);
  if (pos >= text.size() || text[pos] < '!' || text[pos] > '~') return "character";
  return std::string("'") + text[pos] + "'";
}

}  // namespace

// One YAML document, or ConfigError at the syntax error. yaml-cpp 0.7 leaves a token that
// cannot start a node (a top-level ',') unconsumed and reports an empty document for it, again
// and again: LoadAll never returns and Load ignores the rest of the file. So the documents' events
// are walked first, and a document that starts where the previous one did is a syntax error.
YAML::Node load_yaml(std::string_view text, const std::string& source) {
  const std::string copy(text);
  try {
    std::istringstream in(copy);
    YAML::Parser parser(in);
    YAML::Mark previous = YAML::Mark::null_mark();
    for (int index = 0;; ++index) {
      DocumentScan doc;
      if (!parser.HandleNextDocument(doc)) break;
      const bool advanced = previous.is_null() || doc.mark.line > previous.line ||
                            (doc.mark.line == previous.line && doc.mark.column > previous.column);
      if (!advanced)
        fail_at(source, doc.mark, "invalid YAML: unexpected " + char_at(text, doc.mark));
      if (index > 0 && doc.has_content) {
        fail_at(source, doc.mark, "more than one YAML document");
      }
      previous = doc.mark;
    }
    return YAML::Load(copy);
  } catch (const YAML::Exception& e) {
    std::string msg = "invalid YAML: " + e.msg;
    // A plain "- *.example.com" is a YAML alias, the likeliest cause of this message here.
    if (e.msg == YAML::ErrorMsg::UNKNOWN_ANCHOR)
      msg += " (quote entries that start with '*': \"*.example.com\")";
    fail_at(source, e.mark, msg);
  }
}

const char* node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      return "a string";
    default:
      return "empty";
  }
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  std::size_t n = std::min(s.size(), kMaxQuoted);
  // Do not cut a UTF-8 sequence in half.
  while (n < s.size() && n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  return out + "\"";
}

}  // namespace egress
