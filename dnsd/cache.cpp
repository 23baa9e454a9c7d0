#include "dnsd/cache.h"

#include <algorithm>

namespace dnsd {

namespace dns = egress::dns;

std::string cache_key(const dns::Query& q) {
  const dns::Name lower = q.qname.lowercased();
  const auto wire = lower.wire();
  std::string key(wire.begin(), wire.end());
  key.push_back(static_cast<char>(q.qtype >> 8));
  key.push_back(static_cast<char>(q.qtype & 0xFF));
  key.push_back(static_cast<char>(q.qclass >> 8));
  key.push_back(static_cast<char>(q.qclass & 0xFF));
  // DO changes whether DNSSEC records come back; CD whether a validating upstream filters.
  key.push_back(static_cast<char>((q.edns.do_bit ? 1 : 0) | (q.header.has(dns::flag::CD) ? 2 : 0)));
  return key;
}

AnswerCache::AnswerCache(std::size_t max_entries, std::size_t max_bytes, std::uint32_t max_ttl)
    : max_entries_(max_entries), max_bytes_(max_bytes), max_ttl_(max_ttl) {}

std::optional<AnswerCache::Hit> AnswerCache::lookup(const std::string& key,
                                                    Clock::time_point now) {
  const auto found = map_.find(key);
  if (found == map_.end()) return std::nullopt;
  const List::iterator it = found->second;
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - it->inserted).count();
  if (age < 0 || age >= it->lifetime) {
    erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it);
  return Hit{it->answer, static_cast<std::uint32_t>(age)};
}

void AnswerCache::insert(const std::string& key, std::string hostname,
                         std::shared_ptr<const dns::PreparedAnswer> answer,
                         Clock::time_point now) {
  const std::uint32_t lifetime = std::min(answer->min_ttl, max_ttl_);
  if (const auto found = map_.find(key); found != map_.end()) erase(found->second);
  if (lifetime == 0) return;

  // What an entry really holds, roughly: the node, the key twice (list + map view), the
  // answer's buffers and the map slot.
  const std::size_t cost = sizeof(Entry) + 2 * key.size() + hostname.size() +
                           sizeof(dns::PreparedAnswer) + answer->wire.size() +
                           answer->ttl_offsets.size() * sizeof(std::uint32_t) +
                           answer->addresses.size() * sizeof(dns::Address) + 64;
  if (cost > max_bytes_) return;
  while (!lru_.empty() && (map_.size() >= max_entries_ || bytes_ + cost > max_bytes_)) {
    erase(std::prev(lru_.end()));
  }
  lru_.push_front(Entry{key, std::move(hostname), std::move(answer), now, lifetime, cost});
  map_.emplace(lru_.front().key, lru_.begin());
  bytes_ += cost;
}

std::size_t AnswerCache::erase_if(const std::function<bool(std::string_view)>& pred) {
  std::size_t n = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    const auto next = std::next(it);
    if (pred(it->hostname)) {
      erase(it);
      ++n;
    }
    it = next;
  }
  return n;
}

void AnswerCache::erase(List::iterator it) {
  bytes_ -= it->cost;
  map_.erase(it->key);
  lru_.erase(it);
}

}  // namespace dnsd
