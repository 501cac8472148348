/*
 * harden.c - a task's privileges, dropped for good, and its seccomp filter
 * (see harden.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "harden.h"

#if defined(__x86_64__)
#define PHPC_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PHPC_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "podman-hpc's seccomp filter knows the system calls of x86_64 and aarch64 only"
#endif

int phpc_set_caps(uint64_t effective, uint64_t permitted)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {
		{ .effective = (uint32_t)effective, .permitted = (uint32_t)permitted },
		{ .effective = (uint32_t)(effective >> 32), .permitted = (uint32_t)(permitted >> 32) },
	};

	return (int)syscall(SYS_capset, &hdr, data);
}

int phpc_drop_privileges(void)
{
	int cap;

	/* PR_CAPBSET_READ fails (EINVAL) past the kernel's last capability. */
	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -1;
	/* Kernels before 4.3 have no ambient set: nothing to clear. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	if (phpc_set_caps(0, 0) < 0 || prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

int phpc_keep_userns_privileges(void)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* A refused call and the errno it returns. */
struct denial {
	int nr;
	int err;
};

/* Only a privileged process could use the first ones; no HPC program needs
 * any of them. The last ones are what Docker's, Podman's and crun's default
 * filters refuse too: io_uring (much of the kernel's recent attack surface;
 * ENOSYS, so that a library falls back to read and write), userfaultfd and
 * the kernel keyrings. ptrace, perf_event_open (the node's
 * perf_event_paranoid governs it, as on bare metal: profilers such as perf,
 * Nsight and VTune need it), unshare and mount stay: debuggers, profilers
 * and rootless tools inside use them. pkg/oci/seccomp.go gives the
 * container's own processes the same filter (a test compares the two). */
static const struct denial denied[] = {
	{ SYS_kexec_load, EPERM },
#ifdef SYS_kexec_file_load
	{ SYS_kexec_file_load, EPERM },
#endif
	{ SYS_init_module, EPERM },
	{ SYS_finit_module, EPERM },
	{ SYS_delete_module, EPERM },
#ifdef SYS_create_module
	{ SYS_create_module, EPERM },
#endif
#ifdef SYS_query_module
	{ SYS_query_module, EPERM },
#endif
#ifdef SYS_get_kernel_syms
	{ SYS_get_kernel_syms, EPERM },
#endif
	{ SYS_open_by_handle_at, EPERM },
	{ SYS_reboot, EPERM },
	{ SYS_swapon, EPERM },
	{ SYS_swapoff, EPERM },
	{ SYS_acct, EPERM },
	{ SYS_settimeofday, EPERM },
	{ SYS_clock_settime, EPERM },
	{ SYS_vhangup, EPERM },
	{ SYS_lookup_dcookie, EPERM },
	{ SYS_nfsservctl, EPERM },
#ifdef SYS_iopl
	{ SYS_iopl, EPERM },
#endif
#ifdef SYS_ioperm
	{ SYS_ioperm, EPERM },
#endif
#ifdef SYS_uselib
	{ SYS_uselib, EPERM },
#endif
#ifdef SYS__sysctl
	{ SYS__sysctl, EPERM },
#endif
	/* The numbers are the same on x86_64 and aarch64. */
	{ 425 /* io_uring_setup */, ENOSYS },
	{ 426 /* io_uring_enter */, ENOSYS },
	{ 427 /* io_uring_register */, ENOSYS },
	{ SYS_userfaultfd, EPERM },
	{ SYS_keyctl, EPERM },
	{ SYS_add_key, EPERM },
	{ SYS_request_key, EPERM },
};

/* Under --container-remap-root the user namespace maps one uid and one gid:
 * a package manager that changes to its own user or gives a file to one
 * fails without this (enroot's filter does the same). */
static const int faked[] = {
	SYS_setuid,
	SYS_setgid,
	SYS_setreuid,
	SYS_setregid,
	SYS_setresuid,
	SYS_setresgid,
	SYS_setgroups,
	SYS_setfsuid,
	SYS_setfsgid,
#ifdef SYS_chown
	SYS_chown,
#endif
#ifdef SYS_lchown
	SYS_lchown,
#endif
	SYS_fchown,
	SYS_fchownat,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void emit(struct sock_filter *prog, size_t *n, struct sock_filter insn)
{
	prog[(*n)++] = insn;
}

/* "If the number is nr, return ret", as two instructions. */
static void emit_if(struct sock_filter *prog, size_t *n, int nr, uint32_t ret)
{
	emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
	emit(prog, n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret));
}

size_t phpc_seccomp_build(int remap_root, struct sock_filter *prog, size_t max)
{
	size_t n = 0, i, need = 4 + 2 + 2 * N(denied) + 1;

	if (remap_root)
		need += 2 * N(faked);
	if (max < need)
		return 0;
	emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	emit(prog, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PHPC_AUDIT_ARCH, 1, 0));
	/* Another architecture's numbers mean other calls: none is allowed. */
	emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#ifdef __x86_64__
	/* x32 calls come with the x86_64 arch and this bit in the number. */
	emit(prog, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1));
	emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
	for (i = 0; i < N(denied); i++)
		emit_if(prog, &n, denied[i].nr, SECCOMP_RET_ERRNO | ((uint32_t)denied[i].err & SECCOMP_RET_DATA));
	/* SECCOMP_RET_ERRNO with 0: the call returns 0 and does nothing. */
	for (i = 0; remap_root && i < N(faked); i++)
		emit_if(prog, &n, faked[i], SECCOMP_RET_ERRNO | 0);
	emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	return n;
}

int phpc_seccomp_install(int remap_root)
{
	struct sock_filter prog[PHPC_SECCOMP_MAX];
	struct sock_fprog fprog = { .filter = prog };

	fprog.len = (unsigned short)phpc_seccomp_build(remap_root, prog, PHPC_SECCOMP_MAX);
	if (fprog.len == 0) {
		errno = E2BIG;
		return -1;
	}
	/* An unprivileged process may install a filter only with no_new_privs. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
}
