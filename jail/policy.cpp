#include "jail/policy.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <utility>

#include "common/config_error.h"
#include "common/yaml_load.h"
#include "jail/syscalls.h"

namespace jail {

namespace {

namespace fs = std::filesystem;
using egress::fail_at;

constexpr std::initializer_list<const char*> kTopKeys = {"extends", "network", "syscalls", "env",
                                                         "on_violation"};
constexpr std::initializer_list<const char*> kNetworkKeys = {"families", "dns", "connect",
                                                             "deny_networks", "unix_abstract"};
constexpr std::initializer_list<const char*> kSyscallKeys = {"deny", "allow", "errno"};
constexpr std::initializer_list<const char*> kEnvKeys = {"drop"};

struct ErrnoName {
  const char* name;
  int value;
};
// Errnos a denial may return: ones programs treat as "not permitted" or "not available".
constexpr ErrnoName kErrnos[] = {{"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOSYS", ENOSYS}};

// "a, b or c"
template <typename Names>
std::string one_of(const Names& names) {
  std::string out;
  std::size_t i = 0;
  const std::size_t n = std::size(names);
  for (const auto& name : names) {
    if (i > 0) out += (i + 1 == n) ? " or " : ", ";
    out += std::string_view(name);
    ++i;
  }
  return out;
}

// One file's contents, validated but not merged.
struct Layer {
  std::string file;
  std::optional<YAML::Node> extends;  // the scalar node
  std::optional<std::vector<std::string>> families;
  std::optional<std::string> dns;
  std::optional<ConnectMode> connect;
  std::vector<egress::Cidr> deny_networks;
  std::optional<bool> unix_abstract_allowed;
  std::optional<std::vector<std::string>> deny;
  std::optional<std::vector<std::string>> allow;
  YAML::Node syscalls;  // for errors about the mode
  std::optional<int> deny_errno;
  std::vector<std::string> env_drop;
  std::optional<OnViolation> on_violation;
};

class LayerParser {
 public:
  explicit LayerParser(std::string file) : file_(std::move(file)) {}

  Layer parse(const YAML::Node& root) {
    Layer layer;
    layer.file = file_;
    if (!root.IsDefined() || root.IsNull()) return layer;  // an empty policy changes nothing
    expect_map(root, "the policy");
    check_keys(root, kTopKeys, "");
    if (root["extends"]) {
      scalar(root["extends"], "extends");
      layer.extends = root["extends"];
    }
    if (const YAML::Node net = root["network"]) parse_network(net, layer);
    if (const YAML::Node sys = root["syscalls"]) parse_syscalls(sys, layer);
    if (const YAML::Node env = root["env"]) {
      expect_map(env, "env");
      check_keys(env, kEnvKeys, "env");
      if (env["drop"]) {
        for (const auto& [name, node] : strings(env["drop"], "env.drop")) {
          if (name.empty() || name.find('=') != std::string::npos)
            fail_at(file_, node, "env.drop: " + egress::quoted(name) + " is not a variable name");
          layer.env_drop.push_back(name);
        }
      }
    }
    if (root["on_violation"]) {
      layer.on_violation = choice(root["on_violation"], "on_violation", {"errno", "kill"}) == "kill"
                               ? OnViolation::kill
                               : OnViolation::errno_return;
    }
    return layer;
  }

 private:
  void parse_network(const YAML::Node& net, Layer& layer) {
    expect_map(net, "network");
    check_keys(net, kNetworkKeys, "network");
    if (net["families"]) {
      std::vector<std::string> families;
      for (const auto& [name, node] : strings(net["families"], "network.families")) {
        if (!find_socket_family(name)) {
          std::vector<std::string_view> known;
          for (const auto& f : socket_families()) known.push_back(f.name);
          fail_at(file_, node,
                  "network.families: unknown socket family " + egress::quoted(name) +
                      " (expected " + one_of(known) + ")");
        }
        families.push_back(name);
      }
      std::sort(families.begin(), families.end());
      families.erase(std::unique(families.begin(), families.end()), families.end());
      layer.families = std::move(families);
    }
    if (net["dns"]) {
      const std::string dns = scalar(net["dns"], "network.dns");
      unsigned char buf[16];
      if (inet_pton(AF_INET, dns.c_str(), buf) != 1 && inet_pton(AF_INET6, dns.c_str(), buf) != 1)
        fail_at(file_, net["dns"],
                "network.dns: expected an IP address, not " + egress::quoted(dns));
      layer.dns = dns;
    }
    if (net["connect"]) {
      layer.connect = choice(net["connect"], "network.connect", {"supervise", "off"}) == "off"
                          ? ConnectMode::off
                          : ConnectMode::supervise;
    }
    if (net["deny_networks"]) {
      for (const auto& [text, node] : strings(net["deny_networks"], "network.deny_networks")) {
        const egress::CidrParse parsed = egress::parse_cidr(text);
        if (!parsed.cidr) fail_at(file_, node, "network.deny_networks: " + parsed.error);
        layer.deny_networks.push_back(*parsed.cidr);
      }
    }
    if (net["unix_abstract"]) {
      layer.unix_abstract_allowed =
          choice(net["unix_abstract"], "network.unix_abstract", {"allow", "deny"}) == "allow";
    }
  }

  void parse_syscalls(const YAML::Node& sys, Layer& layer) {
    expect_map(sys, "syscalls");
    check_keys(sys, kSyscallKeys, "syscalls");
    layer.syscalls = sys;
    std::vector<std::string> denied;
    for (const char* list : {"deny", "allow"}) {
      if (!sys[list]) continue;
      std::vector<std::string> names;
      for (const auto& [name, node] : strings(sys[list], std::string("syscalls.") + list)) {
        if (!is_known_syscall(name))
          fail_at(file_, node,
                  std::string("syscalls.") + list + ": unknown syscall " + egress::quoted(name) +
                      " (not a syscall on x86_64 or aarch64)");
        if (std::string_view(list) == "deny") {
          denied.push_back(name);
        } else if (std::find(denied.begin(), denied.end(), name) != denied.end()) {
          fail_at(file_, node, "syscalls: " + egress::quoted(name) + " is in both deny and allow");
        }
        names.push_back(name);
      }
      (std::string_view(list) == "deny" ? layer.deny : layer.allow) = std::move(names);
    }
    if (sys["errno"]) {
      std::vector<const char*> names;
      for (const auto& e : kErrnos) names.push_back(e.name);
      const std::string name = choice(sys["errno"], "syscalls.errno", names);
      for (const auto& e : kErrnos)
        if (name == e.name) layer.deny_errno = e.value;
    }
  }

  void expect_map(const YAML::Node& n, const std::string& what) {
    if (!n.IsMap()) fail_at(file_, n, what + ": expected a map, not " + egress::node_kind(n));
  }

  template <typename Keys>
  void check_keys(const YAML::Node& map, const Keys& keys, const std::string& where) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      const std::string name = key.IsScalar() ? key.Scalar() : std::string();
      const bool known =
          std::any_of(std::begin(keys), std::end(keys), [&](const char* k) { return name == k; });
      if (!known) {
        fail_at(file_, key,
                "unknown key " + egress::quoted(name) + (where.empty() ? "" : " in " + where) +
                    " (expected " + one_of(keys) + ")");
      }
    }
  }

  std::string scalar(const YAML::Node& n, const std::string& what) {
    if (!n.IsScalar()) fail_at(file_, n, what + ": expected a string, not " + egress::node_kind(n));
    return n.Scalar();
  }

  std::string choice(const YAML::Node& n, const std::string& what,
                     std::initializer_list<const char*> names) {
    return choice<std::initializer_list<const char*>>(n, what, names);
  }

  template <typename Names>
  std::string choice(const YAML::Node& n, const std::string& what, const Names& names) {
    const std::string value = scalar(n, what);
    for (const auto& name : names)
      if (value == name) return value;
    fail_at(file_, n, what + ": expected " + one_of(names) + ", not " + egress::quoted(value));
  }

  std::vector<std::pair<std::string, YAML::Node>> strings(const YAML::Node& n,
                                                          const std::string& what) {
    if (!n.IsSequence()) fail_at(file_, n, what + ": expected a list, not " + egress::node_kind(n));
    std::vector<std::pair<std::string, YAML::Node>> out;
    for (const YAML::Node& item : n) out.emplace_back(scalar(item, what), item);
    return out;
  }

  std::string file_;
};

void add_all(std::set<std::string>& to, const std::vector<std::string>& names) {
  to.insert(names.begin(), names.end());
}

void remove_all(std::set<std::string>& from, const std::vector<std::string>& names) {
  for (const auto& n : names) from.erase(n);
}

void apply(Policy& p, const Layer& layer, bool is_root) {
  if (layer.families) p.network.families = *layer.families;
  if (layer.dns) p.network.dns = *layer.dns;
  if (layer.connect) p.network.connect = *layer.connect;
  for (const auto& c : layer.deny_networks) {
    const bool dup =
        std::any_of(p.network.deny_networks.begin(), p.network.deny_networks.end(),
                    [&](const egress::Cidr& d) { return d.to_string() == c.to_string(); });
    if (!dup) p.network.deny_networks.push_back(c);
  }
  if (layer.unix_abstract_allowed) p.network.unix_abstract_allowed = *layer.unix_abstract_allowed;
  if (is_root) {
    if (layer.deny && layer.allow)
      fail_at(layer.file, layer.syscalls,
              "syscalls: a policy without extends takes deny or allow, not both");
    p.mode = layer.allow ? SyscallMode::allowlist : SyscallMode::denylist;
  }
  const auto* adds = p.mode == SyscallMode::denylist ? &layer.deny : &layer.allow;
  const auto* removes = p.mode == SyscallMode::denylist ? &layer.allow : &layer.deny;
  if (*removes) remove_all(p.syscalls, **removes);
  if (*adds) add_all(p.syscalls, **adds);
  if (layer.deny_errno) p.deny_errno = *layer.deny_errno;
  p.env_drop.insert(layer.env_drop.begin(), layer.env_drop.end());
  if (layer.on_violation) p.on_violation = *layer.on_violation;
}

bool is_name(const std::string& ref) {
  return !ref.empty() && ref.find('/') == std::string::npos && !ref.ends_with(".yaml") &&
         !ref.ends_with(".yml");
}

std::string resolve(const std::string& ref, const std::string& policies_dir,
                    const std::string& from_file) {
  // Plain string operations where they give what std::filesystem would: building fs::path
  // objects costs tens of microseconds of a precompiled jail start (first-touched code).
  if (is_name(ref)) {
    const std::string file = ref + ".yaml";
    if (policies_dir.empty()) return file;
    return policies_dir.back() == '/' ? policies_dir + file : policies_dir + "/" + file;
  }
  if (ref.empty() || ref.front() == '/' || from_file.empty()) return ref;
  return (fs::path(from_file).parent_path() / ref).string();
}

std::string identity(const std::string& path) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(path, ec);
  return ec ? path : canon.string();
}

Policy load_chain(const std::string& path, const std::string& policies_dir,
                  std::vector<std::string>& stack, std::vector<std::string>& shown,
                  std::vector<std::string>* texts) {
  const std::string id = identity(path);
  std::string text = egress::read_file(path);
  const Layer layer = LayerParser(path).parse(egress::load_yaml(text, path));
  stack.push_back(id);
  shown.push_back(path);
  Policy p;
  if (layer.extends) {
    const std::string ref = layer.extends->Scalar();
    const std::string parent = resolve(ref, policies_dir, path);
    if (std::find(stack.begin(), stack.end(), identity(parent)) != stack.end()) {
      std::string chain;
      for (const auto& s : shown) chain += s + " -> ";
      fail_at(path, *layer.extends, "extends: cycle " + chain + parent);
    }
    if (static_cast<int>(stack.size()) >= kMaxExtendsDepth)
      fail_at(path, *layer.extends,
              "extends: chain deeper than " + std::to_string(kMaxExtendsDepth) + " files");
    std::error_code ec;
    if (!fs::exists(parent, ec))
      fail_at(path, *layer.extends,
              "extends: " + egress::quoted(ref) + " not found (looked for " + parent + ")");
    p = load_chain(parent, policies_dir, stack, shown, texts);
  }
  apply(p, layer, !layer.extends);
  p.files.push_back(path);
  if (texts) texts->push_back(std::move(text));
  stack.pop_back();
  shown.pop_back();
  return p;
}

std::string errno_name(int value) {
  for (const auto& e : kErrnos)
    if (e.value == value) return e.name;
  return std::to_string(value);
}

}  // namespace

bool is_policy_errno(int value) {
  return std::any_of(std::begin(kErrnos), std::end(kErrnos),
                     [value](const ErrnoName& e) { return e.value == value; });
}

std::string policy_path(const std::string& ref, const std::string& policies_dir) {
  return resolve(ref, policies_dir, "");
}

Policy load_policy(const std::string& ref, const std::string& policies_dir,
                   std::vector<std::string>* texts) {
  std::vector<std::string> stack;
  std::vector<std::string> shown;
  if (texts) texts->clear();
  return load_chain(policy_path(ref, policies_dir), policies_dir, stack, shown, texts);
}

std::string dump_policy(const Policy& policy) {
  YAML::Emitter out;
  std::string from;
  for (const auto& f : policy.files) from += (from.empty() ? "" : " <- ") + f;
  out << YAML::Comment("effective policy: " + from);
  out << YAML::BeginMap;
  out << YAML::Key << "network" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "families" << YAML::Value << YAML::Flow << policy.network.families;
  if (!policy.network.dns.empty()) out << YAML::Key << "dns" << YAML::Value << policy.network.dns;
  out << YAML::Key << "connect" << YAML::Value
      << (policy.network.connect == ConnectMode::supervise ? "supervise" : "off");
  std::vector<std::string> nets;
  for (const auto& c : policy.network.deny_networks) nets.push_back(c.to_string());
  out << YAML::Key << "deny_networks" << YAML::Value << YAML::Flow << nets;
  out << YAML::Key << "unix_abstract" << YAML::Value
      << (policy.network.unix_abstract_allowed ? "allow" : "deny");
  out << YAML::EndMap;
  out << YAML::Key << "syscalls" << YAML::Value << YAML::BeginMap;
  const std::vector<std::string> names(policy.syscalls.begin(), policy.syscalls.end());
  out << YAML::Key << (policy.mode == SyscallMode::denylist ? "deny" : "allow") << YAML::Value
      << YAML::Flow << names;
  out << YAML::Key << "errno" << YAML::Value << errno_name(policy.deny_errno);
  out << YAML::EndMap;
  const std::vector<std::string> drop(policy.env_drop.begin(), policy.env_drop.end());
  out << YAML::Key << "env" << YAML::Value << YAML::BeginMap << YAML::Key << "drop" << YAML::Value
      << YAML::Flow << drop << YAML::EndMap;
  out << YAML::Key << "on_violation" << YAML::Value
      << (policy.on_violation == OnViolation::kill ? "kill" : "errno");
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace jail
