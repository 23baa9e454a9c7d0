// Which addresses of an upstream answer dnsd installs. Addresses in private, loopback,
// link-local, unspecified and multicast ranges are not (DNS rebinding: a public name must not open
// the way to the session's own network) unless the allowlist's networks: cover them; an answer's
// addresses beyond a cap are not either. Records not installed are removed from the answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/cidr.h"
#include "common/dns_wire.h"

namespace dnsd {

// The range that makes `a` guarded, e.g. "10.0.0.0/8 (private)", or "" when `a` is public.
std::string_view guarded_range(const egress::dns::Address& a);

// Whether `a` may be installed: outside every guarded range, or inside `networks`.
bool installable(const egress::dns::Address& a, std::span<const egress::Cidr> networks);

// Indices (PreparedAnswer record numbering) of the records to remove: those holding a guarded
// address outside `networks`, those past the first `max_addresses` addresses, and those the
// parser did not collect (capped_records).
std::vector<std::uint16_t> records_to_drop(const egress::dns::PreparedAnswer& answer,
                                           std::span<const egress::Cidr> networks,
                                           std::size_t max_addresses);

}  // namespace dnsd
