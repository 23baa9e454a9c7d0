// dnsd's nftables objects: names (TableSpec), the message builders that append to an NftBatch
// (set elements with per-element timeout and expiration, the interval sets of `networks:`, the
// enforce-mode table) and the start-up helpers that talk to the kernel synchronously.
// See "The nftables table" in ../shared/ARCHITECTURE.md for the table this builds.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "dnsd/nft_netlink.h"

namespace dnsd {

// The table dnsd fills (family inet). Names are configurable; the defaults are the design's.
struct TableSpec {
  std::string table = "egress";
  std::string allow4 = "allow4";  // type ipv4_addr; flags timeout; size set_size
  std::string allow6 = "allow6";  // type ipv6_addr; flags timeout; size set_size
  std::string nets4 = "nets4";    // type ipv4_addr; flags interval (allowlist "networks:")
  std::string nets6 = "nets6";    // type ipv6_addr; flags interval
  std::string chain = "output";   // enforce mode: hook output, policy drop
  std::uint32_t mark = 0;         // SO_MARK of dnsd's upstream sockets; the chain accepts it.
                                  // Must be set: 0 would accept every unmarked packet.
  // Destination ports rejected unless the packet goes to loopback or carries `mark`: DNS only via
  // the sidecar. Add the listen port when it is not 53.
  std::vector<std::uint16_t> dns_ports{53, 853};
  std::uint32_t set_size = 65536;
};

// Empty when usable; else why not (a name empty, longer than the kernel's 255 bytes or holding
// '%', which the kernel expands in set names; mark 0; no or too many DNS ports; size 0).
// nets4/nets6 may be empty outside enforce mode: no networks sets then.
std::string validate(const TableSpec& spec);

struct NftAddress {
  std::uint8_t family = 0;               // 4 or 6
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 in the first 4 octets
  bool operator==(const NftAddress&) const = default;
};

struct SetElement {
  NftAddress address;
  std::chrono::milliseconds timeout{0};  // > 0: the element's own timeout
  std::chrono::milliseconds expires{0};  // remaining life, 0 < expires <= timeout
};

// --- builders (data path: no syscall; they only fill the batch) ------------------------------

// Adds each element to allow4/allow6 with its own timeout and an explicit expiration
// (NFTA_SET_ELEM_TIMEOUT / NFTA_SET_ELEM_EXPIRATION, milliseconds), NLM_F_CREATE without
// NLM_F_EXCL: an existing element is not an error. Linux >= 6.12 then renews it (kernel commit
// 4201f3938914, "set element timeout update support"); older kernels keep its old expiration,
// so there the caller renews by append_delete_elements + append_add_elements in one batch (see
// probe_renewal). Appends nothing and returns false if an element is invalid (family not 4/6,
// timeout <= 0, expires <= 0 or > timeout): an element without a timeout would never expire.
[[nodiscard]] bool append_add_elements(NftBatch& batch, const TableSpec& spec,
                                       std::span<const SetElement> elements);

// Deletes the addresses from allow4/allow6. The kernel fails the whole batch with ENOENT if one
// of them is not in the set (expired, or never added): delete only what is known to be live.
// Returns false (appending nothing) for a family other than 4/6.
[[nodiscard]] bool append_delete_elements(NftBatch& batch, const TableSpec& spec,
                                          std::span<const NftAddress> addresses);

// Flushes nets4 and nets6 (those named) and fills them with `networks` (overlapping and adjacent
// networks merged, as the kernel rejects overlapping intervals). Each interval [start, end) is a
// start element and an end element flagged NFT_SET_ELEM_INTERVAL_END; an interval that reaches the
// top of the address space has no end element. Also writes what nft writes for a listing to read
// back (a leading end element at 0, the open-interval flag in the element's userdata).
void append_replace_networks(NftBatch& batch, const TableSpec& spec,
                             std::span<const egress::Cidr> networks);

// What of the enforce-mode table already exists (bootstrap_enforce reads it from the kernel).
struct ExistingTable {
  bool table = false;
  bool allow4 = false, allow6 = false, nets4 = false, nets6 = false;
  bool chain = false;
  bool chain_policy_drop = false;  // the existing chain's policy is drop
  bool rules_match = false;        // the existing chain holds exactly the design's rules
};

// Appends what turns `existing` into the design's table: table and missing sets with
// NLM_F_CREATE (never a flush: elements survive restarts); a missing chain with its rules; an
// existing chain whose rules differ is flushed (its rules only, DELRULE on the chain; never a
// set) and refilled in the same batch, so the kernel swaps the rules in one transaction.
void append_enforce_table(NftBatch& batch, const TableSpec& spec, const ExistingTable& existing);

// The design's rules as text, one per rule in libnftnl's expression notation with anonymous set
// names normalised to "__set%d", counters zeroed and the anonymous sets' elements appended: how
// bootstrap_enforce compares the kernel's chain with the design.
std::vector<std::string> expected_rule_fingerprints(const TableSpec& spec);

// --- control plane (start-up; blocking; throws std::runtime_error naming what failed) ---------

struct BootstrapResult {
  bool created_table = false;
  std::vector<std::string> created_sets;
  bool created_chain = false;
  bool replaced_rules = false;  // the chain existed with other rules (or policy)
};

// Enforce mode: makes the kernel's table the design's without touching existing set elements.
// An existing set or chain of another shape (key type, flags, hook, priority) is an error that
// names it: the kernel cannot change those in place.
BootstrapResult bootstrap_enforce(const TableSpec& spec);

// Enforce mode, read-only (a readiness check): what keeps the kernel's table from being the
// design's, as messages naming the object ("set allow6 not found", "chain output holds other
// rules than dnsd's"); empty when the table, its four sets and its chain (hook, priority, policy
// drop, exactly the design's rules) are in place. Throws std::runtime_error when the kernel
// cannot be asked (no CAP_NET_ADMIN) or the spec is invalid.
std::vector<std::string> check_enforce(const TableSpec& spec);

// Sets mode: the admin's table must exist (family inet) with allow4/allow6 of key type
// ipv4_addr/ipv6_addr and flags timeout (no interval, not a map). nets4/nets6 are checked only
// when their names are non-empty (type ipv4_addr/ipv6_addr, flags interval). One error lists
// every problem.
void check_sets(const TableSpec& spec);

// Every element of allow4 and allow6 with its timeout and remaining expiration (0 when the
// element has none), to rebuild the expiry map after a restart.
std::vector<SetElement> list_elements(const TableSpec& spec);

// Whether re-adding an existing element with an explicit expiration renews it on this kernel
// (true on Linux >= 6.12). Uses a temporary set "egress_probe" in the table (which must exist)
// and deletes it. Not safe to run concurrently on the same table.
bool probe_renewal(const TableSpec& spec);

}  // namespace dnsd
