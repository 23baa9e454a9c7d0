// common/json: the string literals of dnsd's query log and jail's JSON lines.
#include <doctest/doctest.h>

#include <string>

#include "common/json.h"

TEST_CASE("json_string: escapes what JSON needs, keeps valid UTF-8, escapes the rest") {
  CHECK(egress::json_string("plain /usr/bin/dig") == "\"plain /usr/bin/dig\"");
  CHECK(egress::json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(egress::json_string(std::string("\n\t\x01\x7f\0", 5)) ==
        "\"\\u000a\\u0009\\u0001\\u007f\\u0000\"");
  CHECK(egress::json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92\"");  // valid UTF-8 passes
  CHECK(egress::json_string("\xff") == "\"\\u00ff\"");
  CHECK(egress::json_string("\xc0\xaf") == "\"\\u00c0\\u00af\"");          // overlong '/'
  CHECK(egress::json_string("\xed\xa0\x80") == "\"\\u00ed\\u00a0\\u0080\"");  // a surrogate
  CHECK(egress::json_string("\xe2\x82") == "\"\\u00e2\\u0082\"");          // truncated
  CHECK(egress::json_string("\xf4\x90\x80\x80") == "\"\\u00f4\\u0090\\u0080\\u0080\"");  // > U+10FFFF
  CHECK(egress::json_string("\xc3") == "\"\\u00c3\"");
}
