// Watches the allowlist file for changes with inotify: writes to it, a rename over it (editors),
// and a symlink swap in its directory (a Kubernetes ConfigMap volume swaps `..data`). Events are
// debounced; the callback decides whether the content really changed.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace dnsd {

class FileWatcher {
 public:
  // Throws std::system_error when inotify is not available.
  FileWatcher(boost::asio::io_context& io, std::string path, std::function<void()> on_change);
  void start();

 private:
  boost::asio::awaitable<void> run();
  // Watches the directory of the path as given and the directory of its current resolved target
  // (which moves when a symlink is swapped), dropping watches no longer needed.
  void rewatch();

  std::string path_;
  std::function<void()> on_change_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer debounce_;
  std::map<int, std::string> watches_;  // watch descriptor -> directory
};

}  // namespace dnsd
