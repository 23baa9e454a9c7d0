// Pinning the jailed child's DNS to the sidecar: /etc/resolv.conf (its resolved target) shows
// only `nameserver <sidecar>`, read-only, in a private mount namespace. Where jail may not
// create a mount namespace, the existing resolv.conf must already name only the sidecar.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "jail/step.h"

namespace jail {

inline constexpr const char* kResolvConf = "/etc/resolv.conf";

// The generated file: a comment and one `nameserver` line.
std::string resolv_conf_text(const std::string& dns);

// The addresses of the `nameserver` lines of a resolv.conf text (resolv.conf(5)), in order.
std::vector<std::string> nameservers(std::string_view text);

// True when `text` has at least one nameserver line and each names `dns` (compared as
// addresses: "::1" and "0::1" are equal).
bool names_only(std::string_view text, const std::string& dns);

enum class DnsPinMode { pinned, verified };

struct DnsPinned {
  DnsPinMode mode;
  std::string target;  // the file that was covered (pinned) or read (verified)
};

// In the calling child: unshare(CLONE_NEWNS), make / recursively private, bind the generated
// file read-only over realpath(resolv_conf). If unshare fails with EPERM, verifies instead and
// returns a StepError whose detail says how to fix it when the file names anything else.
std::variant<DnsPinned, StepError> pin_dns(const std::string& dns,
                                           const char* resolv_conf = kResolvConf);

}  // namespace jail
