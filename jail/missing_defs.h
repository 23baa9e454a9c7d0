// Kernel constants the jail uses that a build host's headers may lack (Debian 12 ships the
// 6.1 UAPI headers). Each fallback names the kernel version that introduced it.
#pragma once

#include <linux/seccomp.h>
#include <fcntl.h>
#include <sched.h>

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER  // 5.0
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  // 5.19
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS  // 6.6
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP  // 6.6, the one flag of SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
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

// Landlock (landlock(7)). Debian 12's <linux/landlock.h> (6.1) has the filesystem rights only;
// jail/landlock.cpp declares the 6.12 ruleset attribute itself.
#ifndef LANDLOCK_CREATE_RULESET_VERSION  // 5.13
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP  // 6.7 (ABI 4)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif

#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET  // 6.12 (ABI 6)
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif

#ifndef LANDLOCK_SCOPE_SIGNAL  // 6.12 (ABI 6)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

#ifndef PIDFD_THREAD  // 6.9: pidfd_open() of a thread rather than a thread-group leader
#define PIDFD_THREAD O_EXCL
#endif
