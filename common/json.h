// JSON string literals for the one-line JSON logs (dnsd's query log, jail's violation and
// start lines), whose fields can hold bytes a peer or a sandboxed process chose.
#pragma once

#include <string>
#include <string_view>

namespace egress {

// `text` as a JSON string literal, quotes included (RFC 8259 §7). '"' and '\' are escaped,
// well-formed UTF-8 passes unchanged (RFC 3629: no overlongs, no surrogates, nothing above
// U+10FFFF), and every other byte (control characters, DEL, bytes of malformed UTF-8) is
// written as \u00XX: the line stays valid JSON and one line, whatever the input.
std::string json_string(std::string_view text);

}  // namespace egress
