#include "dnsd/reload.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace dnsd {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// Writers finish in a few steps (truncate, write, close; or write temp, rename): wait for the
// burst to end before reading the file.
constexpr auto kDebounce = std::chrono::milliseconds(100);

// Close-after-write, and any name appearing in or leaving the directory (renames, symlink
// swaps, deletes). IN_MODIFY is left out: it fires mid-write, on a half-written file.
constexpr std::uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF;

int make_inotify() {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  return fd;
}

std::string parent_of(const fs::path& p) {
  const fs::path parent = p.parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

FileWatcher::FileWatcher(asio::io_context& io, std::string path, std::function<void()> on_change)
    : path_(std::move(path)),
      on_change_(std::move(on_change)),
      inotify_(io, make_inotify()),
      debounce_(io) {}

void FileWatcher::start() {
  rewatch();
  asio::co_spawn(inotify_.get_executor(), run(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // out of io_context::run(): main() reports it
  });
}

void FileWatcher::rewatch() {
  std::set<std::string> wanted{parent_of(path_)};
  std::error_code ec;
  const fs::path target = fs::canonical(path_, ec);
  if (!ec) wanted.insert(parent_of(target));

  // inotify_add_watch on a directory watched already returns its descriptor again, and a new
  // one after the kernel dropped the old watch (the directory was replaced).
  std::map<int, std::string> next;
  for (const std::string& dir : wanted) {
    const int wd = inotify_add_watch(inotify_.native_handle(), dir.c_str(), kMask);
    if (wd < 0) {
      spdlog::warn("cannot watch {} for allowlist changes: {} (SIGHUP still reloads)", dir,
                   std::strerror(errno));
      continue;
    }
    next[wd] = dir;
  }
  for (const auto& [wd, dir] : watches_) {
    if (!next.contains(wd)) inotify_rm_watch(inotify_.native_handle(), wd);
  }
  watches_ = std::move(next);
}

asio::awaitable<void> FileWatcher::run() {
  // Aligned for struct inotify_event; several events per read.
  alignas(inotify_event) std::array<char, 8192> buf;
  for (;;) {
    auto [ec, n] = co_await inotify_.async_read_some(asio::buffer(buf),
                                                     asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::error("inotify read: {}; automatic reload stops (SIGHUP still reloads)",
                    ec.message());
      co_return;
    }
    // Which file changed does not matter: the callback compares the content it reads.
    debounce_.expires_after(kDebounce);
    debounce_.async_wait([this](const boost::system::error_code& wait_ec) {
      if (wait_ec) return;
      rewatch();
      on_change_();
    });
  }
}

}  // namespace dnsd
