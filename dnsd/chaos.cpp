#include "dnsd/chaos.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <ctime>
#include "common/rfc3339.h"

namespace dnsd::chaos {

namespace dns = egress::dns;

namespace {

using Label = std::span<const std::uint8_t>;

bool label_is(Label l, std::string_view word) {
  if (l.size() != word.size()) return false;
  for (std::size_t i = 0; i < l.size(); ++i) {
    std::uint8_t c = l[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<std::uint8_t>(c - 'A' + 'a');
    if (c != static_cast<std::uint8_t>(word[i])) return false;
  }
  return true;
}

// The labels of an uncompressed wire name, root excluded.
std::vector<Label> labels_of(const dns::Name& name) {
  std::vector<Label> out;
  const auto wire = name.wire();
  for (std::size_t pos = 0; pos < wire.size() && wire[pos] != 0;) {
    const std::size_t len = wire[pos];
    if (len > wire.size() - pos - 1) break;  // cannot happen for a Name; stay inside the span
    out.push_back(wire.subspan(pos + 1, len));
    pos += 1 + len;
  }
  return out;
}

std::string address_text(const NftAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
  return buf;
}

const char* nft_mode_name(NftMode m) {
  switch (m) {
    case NftMode::Enforce:
      return "enforce";
    case NftMode::Sets:
      return "sets";
    case NftMode::Off:
      return "off";
  }
  return "?";
}

std::string plural(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// The networks: entry holding `host` when it is an IPv4 literal ("192.0.2.10"); "" otherwise.
std::string covering_network(const std::string& host, const Allowlist& allowlist) {
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1) return "";
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&a);
  for (const egress::Cidr& c : allowlist.networks()) {
    if (c.contains(4, std::span(bytes, 4))) return c.to_string();
  }
  return "";
}

// "*.NAME" is listed while NAME is not: the wildcard covers the names below only.
std::string wildcard_hint(const std::string& host, const Allowlist& allowlist) {
  if (host.size() + 2 > 253) return "";
  const AllowEntry* below = allowlist.match("x." + host);
  return below != nullptr && below->wildcard && below->name == host ? below->pattern : "";
}

}  // namespace

Question classify(const dns::Name& qname) {
  Question q;
  const std::vector<Label> labels = labels_of(qname);
  const std::size_t n = labels.size();
  if (n == 2 && label_is(labels[0], "policy") && label_is(labels[1], "egress")) {
    q.topic = Topic::Policy;
    return q;
  }
  if (n < 3 || !label_is(labels[n - 2], "why") || !label_is(labels[n - 1], "egress")) return q;
  dns::Name asked;
  for (std::size_t i = 0; i + 2 < n; ++i) {
    if (!asked.append_label(labels[i])) return q;  // cannot happen: a shorter name than qname
  }
  if (!asked.finish()) return q;
  q.topic = Topic::Why;
  q.hostname = asked.hostname();
  if (q.hostname) {
    q.display = *q.hostname;
  } else {
    q.display = asked.to_text();
    if (q.display.size() > 1 && q.display.ends_with('.')) q.display.pop_back();
  }
  return q;
}

std::vector<std::string> why_report(const WhyFacts& f) {
  std::vector<std::string> out;
  if (f.rule != nullptr) {
    out.push_back(f.name + ": allowed");
    out.push_back("rule: " + f.rule->pattern +
                  (f.rule->wildcard ? " (wildcard) at " : " (exact) at ") + f.source + ":" +
                  std::to_string(f.rule->line) + ":" + std::to_string(f.rule->column));
    if (f.nft_mode == NftMode::Off) {
      out.push_back("addresses: none installed (nft mode off: DNS filtering only)");
      return out;
    }
    if (f.addresses.empty()) {
      out.push_back("addresses: none installed now (not resolved since dnsd started, or expired)");
      return out;
    }
    const std::size_t listed = std::min(f.addresses.size(), kMaxListedAddresses);
    for (std::size_t i = 0; i < listed; ++i) {
      out.push_back("address: " + f.addresses[i].address + " expires in " +
                    std::to_string(f.addresses[i].remaining.count()) + " s");
    }
    if (listed < f.addresses.size()) {
      out.push_back("addresses: " + std::to_string(f.addresses.size() - listed) +
                    " more not listed");
    }
    return out;
  }
  out.push_back(f.name + ": denied");
  if (!f.hostname) {
    out.push_back(
        "reason: not a hostname (labels of letters, digits, '-' and '_' only): no "
        "allowlist entry can name it");
  } else {
    out.push_back("reason: no entry of " + f.source + " matches it");
  }
  if (!f.wildcard_hint.empty()) {
    out.push_back("note: " + f.wildcard_hint + " is listed; it matches the names below " + f.name +
                  ", not " + f.name + " itself");
  }
  if (!f.network.empty()) {
    out.push_back("note: " + f.name + " is inside networks: entry " + f.network +
                  ", reachable without DNS");
  }
  out.push_back(f.deny == DenyMode::Refused ? "clients get: REFUSED"
                                            : "clients get: NXDOMAIN with EDE 15 (Blocked)");
  return out;
}

std::vector<std::string> policy_report(const PolicyFacts& f) {
  std::string nft = std::string("nft: ") + nft_mode_name(f.nft_mode);
  if (f.nft_mode != NftMode::Off) nft += ", table inet " + f.table;
  return {
      "source: " + f.source,
      "sha256: " + f.sha256,
      "loaded: " + egress::rfc3339_s(f.loaded_at),
      "exact names: " + std::to_string(f.exact),
      "wildcards: " + std::to_string(f.wildcards),
      "networks: " + std::to_string(f.networks4 + f.networks6) + " (" +
          plural(f.networks4, "IPv4", "IPv4") + ", " + plural(f.networks6, "IPv6", "IPv6") + ")",
      std::string("deny: ") + (f.deny == DenyMode::Refused ? "refused" : "nxdomain"),
      nft,
  };
}

std::vector<std::uint8_t> reply(const dns::Query& q, std::span<const std::uint8_t> packet,
                                std::size_t limit, const Allowlist& allowlist,
                                const Installer& installer, const Config& config,
                                Clock::time_point now) {
  const Question asked = classify(q.qname);
  if (asked.topic == Topic::Unknown) {
    return dns::make_synthetic(
        q, packet,
        {.rcode = dns::rcode::Refused,
         .ede_code = dns::ede::Prohibited,
         .ede_text = "egress: the CHAOS names served are NAME.why.egress and policy.egress"});
  }
  if (q.qtype != dns::type::TXT) return dns::make_txt_reply(q, packet, {}, limit);  // NODATA

  std::vector<std::string> strings;
  if (asked.topic == Topic::Policy) {
    PolicyFacts f;
    f.source = allowlist.source();
    f.sha256 = allowlist.sha256();
    f.loaded_at = allowlist.loaded_at();
    for (const AllowEntry& e : allowlist.entries()) ++(e.wildcard ? f.wildcards : f.exact);
    for (const egress::Cidr& c : allowlist.networks())
      ++(c.family == 4 ? f.networks4 : f.networks6);
    f.deny = config.deny;
    f.nft_mode = config.nft_mode;
    f.table = config.nft_table;
    strings = policy_report(f);
  } else {
    WhyFacts f;
    f.name = asked.display;
    f.hostname = asked.hostname.has_value();
    f.source = allowlist.source();
    f.deny = config.deny;
    f.nft_mode = config.nft_mode;
    if (asked.hostname) {
      f.rule = allowlist.match(*asked.hostname);
      if (f.rule != nullptr) {
        for (const ElementTable::Held& h : installer.held_by(*asked.hostname, now)) {
          f.addresses.push_back(
              InstalledAddress{address_text(h.address),
                               std::chrono::duration_cast<std::chrono::seconds>(h.expires - now)});
        }
      } else {
        f.wildcard_hint = wildcard_hint(*asked.hostname, allowlist);
        f.network = covering_network(*asked.hostname, allowlist);
      }
    }
    strings = why_report(f);
  }
  return dns::make_txt_reply(q, packet, strings, limit);
}

}  // namespace dnsd::chaos
