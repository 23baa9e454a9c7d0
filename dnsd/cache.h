// Answer cache: prepared upstream answers keyed by (name, type, class, DO, CD), bounded by entries
// and bytes, least recently used evicted first. TTLs decrease on the way out (render_answer's age).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/dns_wire.h"

namespace dnsd {

using Clock = std::chrono::steady_clock;

// The key: the lowercase wire name, type, class and the DO/CD bits (answers differ with them).
std::string cache_key(const egress::dns::Query& q);

class AnswerCache {
 public:
  AnswerCache(std::size_t max_entries, std::size_t max_bytes, std::uint32_t max_ttl);

  struct Hit {
    std::shared_ptr<const egress::dns::PreparedAnswer> answer;
    std::uint32_t age = 0;  // whole seconds since insertion
  };
  // An unexpired entry, now the most recently used; expired entries are erased on the way.
  std::optional<Hit> lookup(const std::string& key, Clock::time_point now);

  // Keeps the answer for min(answer->min_ttl, max_ttl) seconds; a lifetime of 0 keeps nothing.
  // `hostname` is remembered so that a reload can drop the names it no longer allows.
  void insert(const std::string& key, std::string hostname,
              std::shared_ptr<const egress::dns::PreparedAnswer> answer, Clock::time_point now);

  // Drops every entry whose hostname `pred` selects; returns how many.
  std::size_t erase_if(const std::function<bool(std::string_view hostname)>& pred);

  std::size_t size() const { return map_.size(); }
  std::size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string key;
    std::string hostname;
    std::shared_ptr<const egress::dns::PreparedAnswer> answer;
    Clock::time_point inserted;
    std::uint32_t lifetime = 0;
    std::size_t cost = 0;
  };
  using List = std::list<Entry>;

  void erase(List::iterator it);

  std::size_t max_entries_;
  std::size_t max_bytes_;
  std::uint32_t max_ttl_;
  std::size_t bytes_ = 0;
  List lru_;  // front = most recently used
  std::unordered_map<std::string_view, List::iterator> map_;  // views into Entry::key
};

}  // namespace dnsd
