// dnsd: the allowlist DNS forwarder. Wiring only: the query path is in resolver.cpp.
#include <csignal>
#include <cstdio>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/config_error.h"
#include "dnsd/allowlist.h"
#include "dnsd/cli.h"
#include "dnsd/config.h"
#include "dnsd/installer.h"
#include "dnsd/nft_installer.h"
#include "dnsd/nft_table.h"
#include "dnsd/reload.h"
#include "dnsd/resolver.h"
#include "dnsd/tcp_listener.h"
#include "dnsd/udp_listener.h"
#include "dnsd/upstream.h"

namespace {

using dnsd::Config;

int check_config(const dnsd::Invocation& inv) {
  if (!inv.config_file && !inv.allowlist_flag) {
    std::fprintf(stderr, "dnsd: --check-config needs --config FILE and/or --allowlist FILE\n");
    return dnsd::kExitUsage;
  }
  dnsd::validate(inv.config, inv.config_file.value_or("command line"));
  if (inv.config_file) std::printf("%s: ok\n", inv.config_file->c_str());
  if (inv.allowlist_flag) {
    const auto list = dnsd::Allowlist::load(inv.config.allowlist);
    std::printf("%s: ok (%zu domains, %zu networks)\n", inv.config.allowlist.c_str(),
                list->entries().size(), list->networks().size());
  }
  return 0;
}

// --install-only: the enforce-mode table an init container leaves for the session.
int install_only(const Config& config) {
  if (config.nft_mode != dnsd::NftMode::Enforce) {
    std::fprintf(stderr, "dnsd: --install-only needs --nft-mode enforce (sets mode uses an "
                         "admin's table; off has none)\n");
    return dnsd::kExitUsage;
  }
  const auto allowlist = dnsd::Allowlist::load(config.allowlist);
  const dnsd::TableSpec spec = dnsd::table_spec(config);
  dnsd::BootstrapResult r;
  try {
    r = dnsd::install_enforce_table(spec, allowlist->networks());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dnsd: --install-only: %s (dnsd needs CAP_NET_ADMIN)\n", e.what());
    return dnsd::kExitConfig;
  }
  std::string created;
  if (r.created_table) created += " table";
  for (const auto& s : r.created_sets) created += " set:" + s;
  if (r.created_chain) created += " chain:" + spec.chain;
  if (r.replaced_rules) created += " rules(replaced)";
  std::printf("dnsd: table inet %s installed (%s); networks: %zu\n", spec.table.c_str(),
              created.empty() ? "all in place already" : ("created" + created).c_str(),
              allowlist->networks().size());
  return 0;
}

// --check-ready: read-only; 0 when what dnsd enforces with is in the kernel.
int check_ready(const Config& config) {
  const dnsd::TableSpec spec = dnsd::table_spec(config);
  try {
    switch (config.nft_mode) {
      case dnsd::NftMode::Off:
        std::printf("dnsd: ready: nft mode off, no table to check\n");
        return 0;
      case dnsd::NftMode::Sets:
        dnsd::check_sets(spec);
        break;
      case dnsd::NftMode::Enforce:
        if (const auto problems = dnsd::check_enforce(spec); !problems.empty()) {
          std::string all;
          for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
          std::fprintf(stderr, "dnsd: not ready: %s\n", all.c_str());
          return 1;
        }
        break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dnsd: not ready: %s\n", e.what());
    return 1;
  }
  std::printf("dnsd: ready: table inet %s (%s, %s) in place\n", spec.table.c_str(),
              spec.allow4.c_str(), spec.allow6.c_str());
  return 0;
}

void setup_logging(const Config& c) {
  auto logger = spdlog::stderr_color_st("dnsd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(c.log_level));
}

std::string join(const std::vector<dnsd::Endpoint>& eps) {
  std::string s;
  for (const auto& e : eps) s += (s.empty() ? "" : ", ") + e.to_string();
  return s;
}

// Re-reads the allowlist; swaps it in when its content changed. An invalid file leaves the
// policy in force untouched, and the same error is logged once, not at every directory event.
class Reloader {
 public:
  Reloader(dnsd::Resolver& resolver, std::string path)
      : resolver_(resolver), path_(std::move(path)) {}

  void reload(bool forced) {
    try {
      auto next = dnsd::Allowlist::load(path_);
      if (!forced && next->digest() == resolver_.allowlist()->digest()) return;
      resolver_.set_allowlist(next);
      last_error_.clear();
      spdlog::info("allowlist reloaded: {} ({} domains, {} networks)", path_,
                   next->entries().size(), next->networks().size());
    } catch (const egress::ConfigError& e) {
      if (!forced && last_error_ == e.what()) return;
      last_error_ = e.what();
      spdlog::error("allowlist reload rejected: {}; keeping the previous policy", e.what());
    }
  }

 private:
  dnsd::Resolver& resolver_;
  std::string path_;
  std::string last_error_;
};

int serve(const Config& config) {
  // A closed log pipe or TCP peer must give EPIPE, not kill the resolver of a whole session.
  std::signal(SIGPIPE, SIG_IGN);
  setup_logging(config);
  const auto allowlist = dnsd::Allowlist::load(config.allowlist);
  const bool nft = config.nft_mode != dnsd::NftMode::Off;

  boost::asio::io_context io(1);  // one thread runs everything
  // c-ares doubles the timeout each round: D/3 then 2D/3 fills the deadline with two tries.
  const auto try_timeout = std::max(config.upstream_timeout / 3, std::chrono::milliseconds(1));
  dnsd::Upstream upstream(io, config.upstreams, try_timeout, 2,
                          nft ? std::optional(config.nft_mark) : std::nullopt);
  const auto servers = upstream.servers();
  if (servers.empty()) {
    throw egress::ConfigError("upstream",
                              "no upstream resolver: none configured and /etc/resolv.conf names none");
  }
  for (const auto& s : servers) {
    for (const auto& l : config.listen) {
      if (s == l) {
        throw egress::ConfigError("upstream", "upstream " + s.to_string() +
                                                  " is one of dnsd's own listen addresses: "
                                                  "queries would loop");
      }
    }
  }

  // The table exists before the first query is answered (fail closed from the start).
  std::unique_ptr<dnsd::Installer> installer;
  if (nft) {
    try {
      installer = std::make_unique<dnsd::NftInstaller>(io, config, allowlist->networks());
    } catch (const std::exception& e) {
      throw egress::ConfigError("nft", std::string(e.what()) +
                                           " (dnsd needs CAP_NET_ADMIN; --nft-mode off filters "
                                           "DNS only)");
    }
  } else {
    installer = std::make_unique<dnsd::NoInstaller>();
  }
  dnsd::Resolver resolver(io, config, allowlist, upstream, *installer);
  std::vector<std::unique_ptr<dnsd::UdpListener>> udp;
  std::vector<std::unique_ptr<dnsd::TcpListener>> tcp;
  for (const auto& at : config.listen) {
    try {
      udp.push_back(std::make_unique<dnsd::UdpListener>(io, at, resolver));
      tcp.push_back(std::make_unique<dnsd::TcpListener>(io, at, resolver, config));
    } catch (const boost::system::system_error& e) {
      throw egress::ConfigError("listen", "cannot listen on " + at.to_string() + ": " +
                                              e.code().message());
    }
  }
  for (auto& l : udp) l->start();
  for (auto& l : tcp) l->start();

  Reloader reloader(resolver, config.allowlist);
  dnsd::FileWatcher watcher(io, config.allowlist, [&reloader] { reloader.reload(false); });
  watcher.start();

  boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
          spdlog::info("SIGHUP: reloading {}", config.allowlist);
          reloader.reload(true);
          signals.async_wait(on_signal);
          return;
        }
        spdlog::info("signal {}: stopping", sig);
        io.stop();
      };
  signals.async_wait(on_signal);

  spdlog::info("allowlist loaded: {} ({} domains, {} networks)", config.allowlist,
               allowlist->entries().size(), allowlist->networks().size());
  spdlog::info("dnsd ready: listening on {} (udp, tcp); upstream {}", join(config.listen),
               join(servers));
  io.run();

  const auto& st = resolver.stats();
  spdlog::info("stopped: {} queries, {} allowed, {} denied, {} cache hits, {} renewals, {} "
               "upstream, {} servfail, {} malformed, {} dropped",
               st.queries, st.allowed, st.denied, st.cache_hits, st.renewals, st.upstream_sent,
               st.servfail, st.malformed, st.dropped);
  if (const auto* n = dynamic_cast<const dnsd::NftInstaller*>(installer.get())) {
    const auto& is = n->stats();
    spdlog::info("nftables: {} batches, {} elements added, {} renewed, {} skipped, {} errors, {} "
                 "revoked, {} recoveries",
                 is.batches, is.elements_added, is.renewals, is.skipped, is.errors, is.revoked,
                 is.recoveries);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int exit_code = 0;
    const auto inv = dnsd::parse_command_line(argc, argv, exit_code);
    if (!inv) return exit_code;
    if (inv->check_config) return check_config(*inv);
    dnsd::validate(inv->config, inv->config_file.value_or("command line"));
    if (inv->install_only) return install_only(inv->config);
    if (inv->check_ready) return check_ready(inv->config);
    return serve(inv->config);
  } catch (const egress::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return dnsd::kExitConfig;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dnsd: %s\n", e.what());
    return dnsd::kExitConfig;
  }
}
