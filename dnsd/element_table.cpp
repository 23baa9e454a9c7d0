#include "dnsd/element_table.h"

#include <algorithm>
#include <string_view>

namespace dnsd {

namespace dns = egress::dns;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::chrono::seconds element_timeout(std::uint32_t ttl, const Lifetimes& l) {
  return std::clamp(seconds(ttl), l.min, l.max) + l.grace;
}

NftAddress to_nft(const dns::Address& a) {
  NftAddress n;
  n.family = a.family;
  n.bytes = a.bytes;
  return n;
}

std::size_t ElementTable::Hash::operator()(const NftAddress& a) const {
  const std::string_view bytes(reinterpret_cast<const char*>(a.bytes.data()),
                               a.family == 4 ? 4 : 16);
  return std::hash<std::string_view>{}(bytes) ^ a.family;
}

namespace {

std::uint32_t cap_from(Clock::duration remaining, seconds grace) {
  const auto s = duration_cast<seconds>(remaining - grace).count();
  return s <= 0 ? 0 : static_cast<std::uint32_t>(std::min<std::int64_t>(s, kNoCap - 1));
}

}  // namespace

ElementTable::Plan ElementTable::plan(std::span<const dns::Address> addresses,
                                      Clock::time_point now) const {
  Plan p;
  for (const dns::Address& a : addresses) {
    const NftAddress key = to_nft(a);
    const seconds timeout = element_timeout(a.ttl, lifetimes_);
    const auto it = elements_.find(key);
    const bool live = it != elements_.end() && it->second.expires > now;
    if (live && it->second.expires - now >= timeout / 2) {
      p.ttl_cap = std::min(p.ttl_cap, cap_from(it->second.expires - now, lifetimes_.grace));
      continue;
    }
    const bool listed = std::any_of(p.add.begin(), p.add.end(),
                                    [&](const SetElement& e) { return e.address == key; });
    if (!listed) {
      p.add.push_back(SetElement{key, duration_cast<milliseconds>(timeout),
                                 duration_cast<milliseconds>(timeout)});
      if (live) p.already_there.push_back(key);
    }
    p.ttl_cap = std::min(p.ttl_cap, cap_from(timeout, lifetimes_.grace));
  }
  return p;
}

void ElementTable::applied(const Plan& plan, std::string_view host,
                           std::span<const dns::Address> addresses, Clock::time_point now) {
  for (const SetElement& e : plan.add) elements_[e.address].expires = now + e.expires;
  hold(host, addresses);
}

void ElementTable::hold(std::string_view host, std::span<const dns::Address> addresses) {
  for (const dns::Address& a : addresses) {
    const auto it = elements_.find(to_nft(a));
    if (it == elements_.end()) continue;
    auto& names = it->second.names;
    if (names.size() < kMaxNamesPerAddress &&
        std::find(names.begin(), names.end(), host) == names.end()) {
      names.emplace_back(host);
    }
  }
}

void ElementTable::restore(std::span<const SetElement> elements, Clock::time_point now) {
  for (const SetElement& e : elements) {
    if (e.expires.count() <= 0) continue;  // no expiration: not one of ours
    elements_[e.address] = State{now + e.expires, {}};
  }
}

std::vector<NftAddress> ElementTable::revoke(
    const std::function<bool(std::string_view)>& allowed, Clock::time_point now,
    const std::function<bool(const NftAddress&)>& address_ok) {
  std::vector<NftAddress> gone;
  for (auto it = elements_.begin(); it != elements_.end();) {
    auto& names = it->second.names;
    const bool bad_address = address_ok && !address_ok(it->first);
    if (names.empty() && !bad_address) {  // owner unknown (restored): left to expire
      ++it;
      continue;
    }
    std::erase_if(names, [&](const std::string& n) { return !allowed(n); });
    if (!names.empty() && !bad_address) {
      ++it;
      continue;
    }
    // Deleting an element the kernel already expired fails the whole batch (ENOENT): only
    // elements with a margin of life left are deleted; the others lapse on their own.
    if (it->second.expires - now > seconds(1)) gone.push_back(it->first);
    it = elements_.erase(it);
  }
  return gone;
}

std::vector<ElementTable::Held> ElementTable::held_by(std::string_view host,
                                                     Clock::time_point now) const {
  std::vector<Held> out;
  for (const auto& [address, state] : elements_) {
    if (state.expires <= now) continue;
    if (std::find(state.names.begin(), state.names.end(), host) != state.names.end()) {
      out.push_back(Held{address, state.expires});
    }
  }
  std::sort(out.begin(), out.end(), [](const Held& a, const Held& b) {
    return a.address.family != b.address.family ? a.address.family < b.address.family
                                                : a.address.bytes < b.address.bytes;
  });
  return out;
}

std::size_t ElementTable::expire(Clock::time_point now) {
  return std::erase_if(elements_, [now](const auto& kv) { return kv.second.expires <= now; });
}

}  // namespace dnsd
