// Kernel constants the jail uses that a build host's headers may lack (Debian 12 ships the
// 6.1 UAPI headers). Each fallback names the kernel version that introduced it.
#pragma once

#include <linux/seccomp.h>
#include <sched.h>

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER  // 5.0
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  // 5.19
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#ifndef CLONE_NEWCGROUP  // 4.6
#define CLONE_NEWCGROUP 0x02000000
#endif

#ifndef CLONE_NEWTIME  // 5.6 (clone3 and unshare only: in clone() it overlaps the exit signal)
#define CLONE_NEWTIME 0x00000080
#endif

#ifndef NETLINK_ROUTE
#define NETLINK_ROUTE 0
#endif
