/*
 * harden.h - what a task keeps once it has joined its container: no
 * capability in any set (or, as root of a user namespace of its own, only
 * those it holds there), no new privileges, and a seccomp filter.
 * Slurm-free, so that spank/cgotest can test it.
 */
#ifndef PHPC_HARDEN_H
#define PHPC_HARDEN_H

#include <stddef.h>
#include <stdint.h>

#include <linux/filter.h>

/* Room for the longest filter phpc_seccomp_build makes. */
#define PHPC_SECCOMP_MAX 128

/* Sets the effective and permitted capability sets (inheritable: none).
 * Returns 0, or -1 with errno. */
int phpc_set_caps(uint64_t effective, uint64_t permitted);

/* Empties the capability bounding set (which needs CAP_SETPCAP in the
 * effective set, of the user namespace the caller is in), the ambient,
 * inheritable, permitted and effective sets, clears keep-caps, and sets
 * no_new_privs: no program the task executes can gain a privilege, even
 * as uid 0 of a user namespace or through a setuid or file-capability
 * binary. Returns 0, or -1 with errno. */
int phpc_drop_privileges(void);

/* For a task that has just joined, as its root, the user namespace the
 * daemon made for the tasks (internal/node/nest.go): keeps the capabilities
 * setns(2) gave it there (every one, in the permitted, effective and
 * bounding sets; none inheritable or ambient), which reach only what that
 * user namespace owns; clears keep-caps and sets no_new_privs. Returns 0,
 * or -1 with errno. */
int phpc_keep_userns_privileges(void);

/* Writes the tasks' seccomp filter (classic BPF) into prog, at most max
 * instructions, and returns their number (0 when max is too small). The
 * filter kills a process that makes a system call of another architecture
 * (i386 or x32 on x86_64, arm32 on aarch64); makes system calls that only a
 * privileged process could use (kexec_load, init_module, reboot, swapon,
 * acct, open_by_handle_at, ...) fail with EPERM; and with remap_root makes
 * the setuid/setgid and chown families succeed without effect, so that
 * package managers work as root of a user namespace that maps one uid. */
size_t phpc_seccomp_build(int remap_root, struct sock_filter *prog, size_t max);

/* Sets no_new_privs and installs the filter on the calling thread (the
 * programs it executes inherit it). Returns 0, or -1 with errno. */
int phpc_seccomp_install(int remap_root);

#endif
