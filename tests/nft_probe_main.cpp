// nft_selftest: drives dnsd's nftables layer (dnsd/nft_netlink.h, dnsd/nft_table.h) from the
// command line, for tests/integration/test_nft_netlink.py, which runs it as root inside a network
// namespace of its own and checks the kernel's state with `nft -j`. Prints one JSON line.
//
//   nft_selftest [--table T] [--mark M (default 0xe95)] [--ports P,P] [--deadline-ms MS] COMMAND
//   [ARGS]
//     bootstrap | check-sets | list | probe
//     add ADDR,TIMEOUT_MS,EXPIRES_MS ...   (data path: NftSocket, one batch)
//     renew ADDR,TIMEOUT_MS,EXPIRES_MS ... (delete + add in one batch: the pre-6.12 renewal)
//     delete ADDR ...                      (data path)
//     networks CIDR ...                    (data path: flush and refill nets4/nets6)
//     pipeline N                           (N one-element batches in flight at once)
// Exit status: 0 success, 1 failure (the JSON says why), 2 usage.
#include <arpa/inet.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "common/cidr.h"
#include "common/json.h"
#include "dnsd/nft_netlink.h"
#include "dnsd/nft_table.h"

namespace {

using dnsd::NftAddress;
using dnsd::SetElement;
using std::chrono::milliseconds;

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "nft_selftest: " << why << "\n";
  std::exit(2);
}

std::optional<NftAddress> parse_address(const std::string& text) {
  NftAddress a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.family = 6;
    return a;
  }
  return std::nullopt;
}

std::string address_text(const NftAddress& a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
  return buf;
}

SetElement parse_element(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  for (std::string p; std::getline(ss, p, ',');) parts.push_back(p);
  if (parts.size() != 3) usage("element \"" + text + "\": want ADDR,TIMEOUT_MS,EXPIRES_MS");
  const std::optional<NftAddress> a = parse_address(parts[0]);
  if (!a) usage("not an address: " + parts[0]);
  return SetElement{*a, milliseconds(std::stoll(parts[1])), milliseconds(std::stoll(parts[2]))};
}

// Sends batches on the data-path socket and runs the loop until every handler ran.
int run_batches(std::vector<dnsd::NftBatch> batches, milliseconds deadline) {
  boost::asio::io_context io;
  dnsd::NftSocket sock(io);
  std::size_t ok = 0, calls = 0;
  std::map<int, std::size_t> errors;  // errno -> count
  std::string first_error;
  const std::size_t n = batches.size();
  for (dnsd::NftBatch& b : batches) {
    sock.send(std::move(b), deadline, [&](std::error_code ec) {
      ++calls;
      if (!ec) {
        ++ok;
        return;
      }
      ++errors[ec.value()];
      if (first_error.empty()) first_error = ec.message();
    });
  }
  const std::size_t in_flight = sock.in_flight();
  io.run();
  std::cout << "{\"batches\": " << n << ", \"handler_calls\": " << calls << ", \"ok\": " << ok
            << ", \"in_flight_after_sends\": " << in_flight << ", \"errors\": {";
  bool first = true;
  for (const auto& [e, count] : errors) {
    std::cout << (first ? "" : ", ") << "\"" << e << "\": " << count;
    first = false;
  }
  std::cout << "}";
  if (!first_error.empty()) std::cout << ", \"message\": " << egress::json_string(first_error);
  std::cout << "}\n";
  return ok == n && calls == n ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  dnsd::TableSpec spec;
  spec.mark = 0xe95;  // any non-zero mark; the tests pass their own
  milliseconds deadline{50};
  std::vector<std::string> args(argv + 1, argv + argc);
  std::size_t i = 0;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; i += 2) {
    if (i + 1 >= args.size()) usage(args[i] + " needs a value");
    const std::string& v = args[i + 1];
    if (args[i] == "--table") {
      spec.table = v;
    } else if (args[i] == "--mark") {
      spec.mark = static_cast<std::uint32_t>(std::stoul(v, nullptr, 0));
    } else if (args[i] == "--ports") {
      spec.dns_ports.clear();
      std::stringstream ss(v);
      for (std::string p; std::getline(ss, p, ',');) {
        spec.dns_ports.push_back(static_cast<std::uint16_t>(std::stoul(p)));
      }
    } else if (args[i] == "--deadline-ms") {
      deadline = milliseconds(std::stoll(v));
    } else {
      usage("unknown option " + args[i]);
    }
  }
  if (i >= args.size()) usage("no command");
  const std::string cmd = args[i++];
  const std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  try {
    if (cmd == "bootstrap") {
      const dnsd::BootstrapResult r = dnsd::bootstrap_enforce(spec);
      std::cout << "{\"created_table\": " << (r.created_table ? "true" : "false")
                << ", \"created_sets\": [";
      for (std::size_t k = 0; k < r.created_sets.size(); ++k) {
        std::cout << (k ? ", " : "") << egress::json_string(r.created_sets[k]);
      }
      std::cout << "], \"created_chain\": " << (r.created_chain ? "true" : "false")
                << ", \"replaced_rules\": " << (r.replaced_rules ? "true" : "false") << "}\n";
      return 0;
    }
    if (cmd == "check-sets") {
      dnsd::check_sets(spec);
      std::cout << "{\"ok\": true}\n";
      return 0;
    }
    if (cmd == "probe") {
      std::cout << "{\"renews\": " << (dnsd::probe_renewal(spec) ? "true" : "false") << "}\n";
      return 0;
    }
    if (cmd == "list") {
      std::cout << "{\"elements\": [";
      bool first = true;
      for (const SetElement& e : dnsd::list_elements(spec)) {
        std::cout << (first ? "" : ", ") << "{\"addr\": " << egress::json_string(address_text(e.address))
                  << ", \"timeout_ms\": " << e.timeout.count()
                  << ", \"expires_ms\": " << e.expires.count() << "}";
        first = false;
      }
      std::cout << "]}\n";
      return 0;
    }
    if (cmd == "add" || cmd == "renew") {
      std::vector<SetElement> elems;
      for (const std::string& a : rest) elems.push_back(parse_element(a));
      dnsd::NftBatch b;
      if (cmd == "renew") {
        std::vector<NftAddress> addrs;
        for (const SetElement& e : elems) addrs.push_back(e.address);
        if (!dnsd::append_delete_elements(b, spec, addrs)) usage("invalid address");
      }
      if (!dnsd::append_add_elements(b, spec, elems)) {
        std::cout << "{\"invalid\": true}\n";
        return 1;
      }
      std::vector<dnsd::NftBatch> v;
      v.push_back(std::move(b));
      return run_batches(std::move(v), deadline);
    }
    if (cmd == "delete") {
      std::vector<NftAddress> addrs;
      for (const std::string& a : rest) {
        const std::optional<NftAddress> p = parse_address(a);
        if (!p) usage("not an address: " + a);
        addrs.push_back(*p);
      }
      dnsd::NftBatch b;
      if (!dnsd::append_delete_elements(b, spec, addrs)) usage("invalid address");
      std::vector<dnsd::NftBatch> v;
      v.push_back(std::move(b));
      return run_batches(std::move(v), deadline);
    }
    if (cmd == "networks") {
      std::vector<egress::Cidr> nets;
      for (const std::string& a : rest) {
        const egress::CidrParse p = egress::parse_cidr(a);
        if (!p.cidr) usage(a + ": " + p.error);
        nets.push_back(*p.cidr);
      }
      dnsd::NftBatch b;
      dnsd::append_replace_networks(b, spec, nets);
      std::vector<dnsd::NftBatch> v;
      v.push_back(std::move(b));
      return run_batches(std::move(v), deadline);
    }
    if (cmd == "pipeline") {
      if (rest.size() != 1) usage("pipeline N");
      const unsigned long n = std::stoul(rest[0]);
      if (n == 0 || n > 60000) usage("pipeline: 1..60000 batches");
      std::vector<dnsd::NftBatch> batches;
      for (unsigned long k = 0; k < n; ++k) {
        // 198.18.0.0/15 (RFC 2544, benchmarking) and 2001:db8::/32 (RFC 3849): documentation
        // ranges, installed in a namespace with no route anywhere.
        std::vector<SetElement> e(1);
        e[0].address.family = 4;
        e[0].address.bytes = {198, 18, static_cast<std::uint8_t>(k >> 8),
                              static_cast<std::uint8_t>(k & 0xff)};
        e[0].timeout = e[0].expires = milliseconds(600000);
        if (k % 2 == 1) {
          SetElement v6;
          v6.address.family = 6;
          v6.address.bytes = {0x20, 0x01, 0x0d, 0xb8, 0xff};
          v6.address.bytes[14] = static_cast<std::uint8_t>(k >> 8);
          v6.address.bytes[15] = static_cast<std::uint8_t>(k & 0xff);
          v6.timeout = v6.expires = milliseconds(600000);
          e.push_back(v6);
        }
        dnsd::NftBatch b;
        if (!dnsd::append_add_elements(b, spec, e)) return 1;
        batches.push_back(std::move(b));
      }
      return run_batches(std::move(batches), deadline);
    }
    usage("unknown command " + cmd);
  } catch (const std::exception& e) {
    std::cout << "{\"exception\": " << egress::json_string(e.what()) << "}\n";
    return 1;
  }
}
