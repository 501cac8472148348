// Package cgotest compiles the plugin's pure C sources (spank/args.c,
// config.c, proto.c, request.c, client.c, harden.c, pytorch.c, pins.c, coexist.c, cancel.c) through cgo so that Go tests can
// drive them.
// The plugin itself is built by the Makefile with no Go in it; this package
// exists only for tests (cgo cannot be used from _test.go files).
package cgotest

/*
#cgo CFLAGS: -I${SRCDIR}/.. -Wall -Wextra -Werror -Wno-unused-parameter
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <stdlib.h>
#include <dlfcn.h>
#include "../args.c"
#include "../config.c"
#include "../proto.c"
#include "../request.c"
#include "../account.c"
#include "../version.c"
#include "../client.c"
#include "../harden.c"
#include "../pytorch.c"
#include "../pins.c"
#include "../coexist.c"
#include "../cancel.c"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>

// What a forked child saw after it installed the filter (or not).
struct probe {
	int installed, install_errno;
	long reboot_rc;
	int reboot_errno;
	int getpid_ok;
	long setuid_rc;
	int setuid_errno, uid_after;
	long fchown_rc;
	int fchown_errno, owner_after;
	char status[4096];
};

static void read_status(char *buf, size_t len)
{
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

// Forks; the child installs the filter when install is set, then tries
// reboot(2) with a bad magic (EINVAL for root, EPERM otherwise, without a
// filter), getpid, setuid(12345) and fchown(path's fd, 12345); the parent
// returns the child's wait status and what it saw.
static int probe_filter(int install, int remap, const char *path, struct probe *out)
{
	int p[2], status = -1, fd;
	pid_t pid, before = getpid();
	struct stat st;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct probe r;
		memset(&r, 0, sizeof(r));
		close(p[0]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		r.installed = !install || phpc_seccomp_install(remap) == 0;
		r.install_errno = errno;
		errno = 0;
		r.reboot_rc = syscall(SYS_reboot, 0, 0, 0, NULL);
		r.reboot_errno = errno;
		r.getpid_ok = syscall(SYS_getpid) != before;
		errno = 0;
		r.setuid_rc = syscall(SYS_setuid, 12345);
		r.setuid_errno = errno;
		r.uid_after = (int)getuid();
		errno = 0;
		r.fchown_rc = syscall(SYS_fchown, fd, 12345, 12345);
		r.fchown_errno = errno;
		r.owner_after = fstat(fd, &st) == 0 ? (int)st.st_uid : -1;
		read_status(r.status, sizeof(r.status));
		if (write(p[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	if (pid > 0) {
		size_t got = 0;
		ssize_t n;
		while (got < sizeof(*out) && (n = read(p[0], (char *)out + got, sizeof(*out) - got)) > 0)
			got += (size_t)n;
		waitpid(pid, &status, 0);
		if (got != sizeof(*out))
			status = -1;
	}
	close(p[0]);
	return status;
}

// Forks; the child installs the filter when install is set, then makes a
// getpid of another ABI: i386's through int 0x80 (which == 0) or x32's
// (which == 1). Returns the child's wait status: exit 0 when the call
// returned.
static int probe_foreign(int install, int which)
{
	int status = -1;
	pid_t pid = fork();

	if (pid == 0) {
		if (install && phpc_seccomp_install(0) < 0)
			_exit(2);
#ifdef __x86_64__
		if (which == 0) {
			long ret;
			__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
			(void)ret;
		} else {
			syscall(0x40000000 | SYS_getpid);
		}
#else
		(void)which;
#endif
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, &status, 0);
	return status;
}

// Forks; the child drops its privileges (phpc_drop_privileges), or with
// userns makes a user namespace and keeps what it holds there
// (phpc_keep_userns_privileges), and returns its /proc/self/status in buf,
// or the errno text.
static int probe_drop(int userns, char *buf, size_t len)
{
	int p[2], status = -1;
	pid_t pid;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		char st[4096];
		close(p[0]);
		if (userns && unshare(CLONE_NEWUSER) < 0)
			snprintf(st, sizeof(st), "error: unshare: %s", strerror(errno));
		else if ((userns ? phpc_keep_userns_privileges() : phpc_drop_privileges()) < 0)
			snprintf(st, sizeof(st), "error: %s", strerror(errno));
		else
			read_status(st, sizeof(st));
		if (write(p[1], st, strlen(st)) < 0)
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	if (pid > 0) {
		size_t got = 0;
		ssize_t n;
		while (got < len - 1 && (n = read(p[0], buf + got, len - 1 - got)) > 0)
			got += (size_t)n;
		buf[got] = '\0';
		waitpid(pid, &status, 0);
	}
	close(p[0]);
	return status;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// Mount is one parsed --container-mounts entry.
type Mount struct{ Src, Dst, Flags string }

// Args mirrors struct phpc_args.
type Args struct {
	Name, NameMode, Save, Unshare string
	Image, Workdir                string
	Mounts                        []Mount
	EnvNames                      []string
	Writable                      int
	MountHome                     int
	Hooks                         string
}

// Option is one option as the plugin's callback receives it.
type Option struct {
	Name, Value string
}

// ParseOptions feeds options to the C setters in order and returns the
// result, or the C error text of the first failure.
func ParseOptions(opts ...Option) (Args, error) {
	var a C.struct_phpc_args
	C.phpc_args_init(&a)
	defer C.phpc_args_free(&a)
	if err := setOptions(&a, opts); err != nil {
		return Args{}, err
	}
	return argsOf(&a), nil
}

// setOptions feeds opts to the C setters of a, in order.
func setOptions(a *C.struct_phpc_args, opts []Option) error {
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	*errbuf = 0

	for _, o := range opts {
		v := C.CString(o.Value)
		var rc C.int
		switch o.Name {
		case "image":
			rc = C.phpc_args_set_image(a, v, errbuf, 512)
		case "workdir":
			rc = C.phpc_args_set_workdir(a, v, errbuf, 512)
		case "mounts":
			rc = C.phpc_args_add_mounts(a, v, errbuf, 512)
		case "env":
			rc = C.phpc_args_add_env_names(a, v, errbuf, 512)
		case "name":
			rc = C.phpc_args_set_name(a, v, errbuf, 512)
		case "save":
			rc = C.phpc_args_set_save(a, v, errbuf, 512)
		case "unshare":
			rc = C.phpc_args_set_unshare(a, v, errbuf, 512)
		case "hooks":
			rc = C.phpc_args_set_hooks(a, v, errbuf, 512)
		case "writable", "readonly":
			name := C.CString("--container-" + o.Name)
			rc = C.phpc_args_set_flag(&a.writable, boolC(o.Name == "writable"), name, errbuf, 512)
			C.free(unsafe.Pointer(name))
		default:
			panic("unknown option " + o.Name)
		}
		C.free(unsafe.Pointer(v))
		if rc != 0 {
			return errors.New(C.GoString(errbuf))
		}
	}
	return nil
}

func argsOf(a *C.struct_phpc_args) Args {
	out := Args{Writable: int(a.writable), MountHome: int(a.mount_home)}
	if a.image != nil {
		out.Image = C.GoString(a.image)
	}
	if a.workdir != nil {
		out.Workdir = C.GoString(a.workdir)
	}
	for dst, src := range map[*string]*C.char{&out.Name: a.name, &out.NameMode: a.name_mode, &out.Save: a.save, &out.Unshare: a.unshare} {
		if src != nil {
			*dst = C.GoString(src)
		}
	}
	for _, m := range unsafe.Slice(a.mounts, a.n_mounts) {
		mt := Mount{Src: C.GoString(m.src), Dst: C.GoString(m.dst)}
		if m.flags != nil {
			mt.Flags = C.GoString(m.flags)
		}
		out.Mounts = append(out.Mounts, mt)
	}
	if a.hooks != nil {
		out.Hooks = C.GoString(a.hooks)
	}
	for _, n := range unsafe.Slice(a.env_names, a.n_env_names) {
		out.EnvNames = append(out.EnvNames, C.GoString(n))
	}
	return out
}

func boolC(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Config mirrors struct phpc_config.
type Config struct {
	Socket                                               string
	ContainerMountHome, ContainerWritable, SbatchSupport bool
	ExecuteEntrypoint, ScopeGlobal                       bool
	Timeout                                              int
	Partitions, Squeue                                   string
}

// parseConfig runs phpc_config_parse over the defaults.
func parseConfig(args []string) (C.struct_phpc_config, error) {
	var c C.struct_phpc_config
	C.phpc_config_defaults(&c)
	argv := make([]*C.char, len(args)+1)
	for i, a := range args {
		argv[i] = C.CString(a)
		defer C.free(unsafe.Pointer(argv[i]))
	}
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(argv[0]))))
	defer C.free(unsafe.Pointer(cargv))
	copy(unsafe.Slice(cargv, len(argv)), argv)
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_config_parse(&c, C.int(len(args)), cargv, errbuf, 512) != 0 {
		return c, errors.New(C.GoString(errbuf))
	}
	return c, nil
}

// ParseConfig runs the plugstack.conf argument parser over the defaults.
func ParseConfig(args ...string) (Config, error) {
	c, err := parseConfig(args)
	if err != nil {
		return Config{}, err
	}
	return Config{
		Socket:             C.GoString(&c.socket[0]),
		ContainerMountHome: c.container_mount_home != 0,
		ContainerWritable:  c.container_writable != 0,
		SbatchSupport:      c.sbatch_support != 0,
		ExecuteEntrypoint:  c.execute_entrypoint != 0,
		ScopeGlobal:        c.scope_global != 0,
		Timeout:            int(c.timeout),
		Partitions:         C.GoString(&c.partitions[0]),
		Squeue:             C.GoString(&c.squeue[0]),
	}, nil
}

// JobEnded runs phpc_job_ended: squeue asked about job, for at most limit,
// returning early when watchFD (if >= 0) is readable.
func JobEnded(squeue string, job uint32, watchFD int, limit time.Duration) bool {
	s := C.CString(squeue)
	defer C.free(unsafe.Pointer(s))
	return C.phpc_job_ended(s, C.uint32_t(job), C.int(watchFD), C.int(limit.Milliseconds())) != 0
}

// CancelInterval runs phpc_cancel_interval_ms.
func CancelInterval(nnodes uint32) time.Duration {
	return time.Duration(C.phpc_cancel_interval_ms(C.uint32_t(nnodes))) * time.Millisecond
}

// DefaultSqueue runs phpc_default_squeue: the squeue beside this process's
// binary.
func DefaultSqueue() (string, bool) {
	buf := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(buf))
	if C.phpc_default_squeue(buf, 4096) != 0 {
		return "", false
	}
	return C.GoString(buf), true
}

// PartitionEnabled runs phpc_config_partition_enabled for the config of
// args.
func PartitionEnabled(partition string, args ...string) (bool, error) {
	c, err := parseConfig(args)
	if err != nil {
		return false, err
	}
	p := C.CString(partition)
	defer C.free(unsafe.Pointer(p))
	return C.phpc_config_partition_enabled(&c, p) != 0, nil
}

// PyxisLoaded runs phpc_pyxis_loaded: the file name of a loaded pyxis.
func PyxisLoaded() (string, bool) {
	buf := (*C.char)(C.malloc(256))
	defer C.free(unsafe.Pointer(buf))
	if C.phpc_pyxis_loaded(buf, 256) == 0 {
		return "", false
	}
	return C.GoString(buf), true
}

// Dlopen loads the shared object at path into the test process.
func Dlopen(path string) error {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	if C.dlopen(p, C.RTLD_NOW|C.RTLD_LOCAL) == nil {
		return errors.New(C.GoString(C.dlerror()))
	}
	return nil
}

// Field is a key/value pair of a protocol message.
type Field struct{ Key, Value string }

// EncodeC builds a frame with the C encoder.
func EncodeC(typ uint8, fields []Field) ([]byte, error) {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, C.uint8_t(typ))
	defer C.phpc_msg_free(&m)
	for _, f := range fields {
		k, v := C.CString(f.Key), C.CString(f.Value)
		rc := C.phpc_msg_add(&m, k, v)
		C.free(unsafe.Pointer(k))
		C.free(unsafe.Pointer(v))
		if rc != 0 {
			return nil, errors.New("phpc_msg_add failed")
		}
	}
	hdr := make([]byte, C.PHPC_FRAME_HEADER)
	C.phpc_msg_header(&m, (*C.uchar)(unsafe.Pointer(&hdr[0])))
	return append(hdr, C.GoBytes(unsafe.Pointer(m.body), C.int(m.len))...), nil
}

// DecodeC parses a frame with the C decoder.
func DecodeC(frame []byte) (uint8, []Field, error) {
	if len(frame) < C.PHPC_FRAME_HEADER {
		return 0, nil, errors.New("short frame")
	}
	var typ C.uint8_t
	var n C.size_t
	if C.phpc_parse_header((*C.uchar)(unsafe.Pointer(&frame[0])), &typ, &n) != 0 {
		return 0, nil, errors.New("bad header")
	}
	body := frame[C.PHPC_FRAME_HEADER:]
	if int(n) != len(body) {
		return 0, nil, errors.New("length mismatch")
	}
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, typ)
	defer C.phpc_msg_free(&m)
	cbody := C.CBytes(body)
	defer C.free(cbody)
	if C.phpc_msg_set_body(&m, (*C.char)(cbody), n) != 0 {
		return 0, nil, errors.New("bad body")
	}
	var fields []Field
	var off C.size_t
	var k, v *C.char
	for C.phpc_msg_next(&m, &off, &k, &v) == 1 {
		fields = append(fields, Field{C.GoString(k), C.GoString(v)})
	}
	return uint8(typ), fields, nil
}

// SendC sends a frame on fd with the C client.
func SendC(fd int, typ uint8, fields []Field) error {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, C.uint8_t(typ))
	defer C.phpc_msg_free(&m)
	for _, f := range fields {
		k, v := C.CString(f.Key), C.CString(f.Value)
		C.phpc_msg_add(&m, k, v)
		C.free(unsafe.Pointer(k))
		C.free(unsafe.Pointer(v))
	}
	if rc, err := C.phpc_send(C.int(fd), &m); rc != 0 {
		return err
	}
	return nil
}

// RecvC receives a frame on fd with the C client, with any passed fds.
func RecvC(fd int, timeoutMS int) (uint8, []Field, []int, error) {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, 0)
	defer C.phpc_msg_free(&m)
	fds := make([]C.int, 8)
	var nfds C.size_t
	rc, err := C.phpc_recv(C.int(fd), &m, C.int(timeoutMS), &fds[0], 8, &nfds)
	var got []int
	for _, f := range fds[:nfds] {
		got = append(got, int(f))
	}
	if rc != 0 {
		if err == nil {
			err = syscall.EIO
		}
		return 0, nil, got, err
	}
	var fields []Field
	var off C.size_t
	var k, v *C.char
	for C.phpc_msg_next(&m, &off, &k, &v) == 1 {
		fields = append(fields, Field{C.GoString(k), C.GoString(v)})
	}
	return uint8(m._type), fields, got, nil
}

// Connect runs phpc_connect and returns its fd or its error text.
func Connect(path string) (int, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	fd := C.phpc_connect(p, errbuf, 512)
	if fd < 0 {
		return -1, errors.New(C.GoString(errbuf))
	}
	return int(fd), nil
}

// Probe is what a forked child saw after installing the tasks' seccomp
// filter (or without it).
type Probe struct {
	Installed  bool
	InstallErr syscall.Errno
	RebootRC   int64
	RebootErr  syscall.Errno
	GetpidOK   bool
	SetuidRC   int64
	SetuidErr  syscall.Errno
	UIDAfter   int
	FchownRC   int64
	FchownErr  syscall.Errno
	OwnerAfter int
	Status     string // the child's /proc/self/status
	WaitStatus syscall.WaitStatus
}

// ProbeFilter forks a child that installs the filter (with install; with
// remap for --container-remap-root) and tries reboot(2), getpid,
// setuid(12345) and fchown(path, 12345).
func ProbeFilter(install, remap bool, path string) (Probe, error) {
	var r C.struct_probe
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	st := C.probe_filter(boolC(install), boolC(remap), p, &r)
	if st < 0 {
		return Probe{}, errors.New("probe child failed")
	}
	return Probe{
		Installed: r.installed != 0, InstallErr: syscall.Errno(r.install_errno),
		RebootRC: int64(r.reboot_rc), RebootErr: syscall.Errno(r.reboot_errno),
		GetpidOK: r.getpid_ok != 0,
		SetuidRC: int64(r.setuid_rc), SetuidErr: syscall.Errno(r.setuid_errno), UIDAfter: int(r.uid_after),
		FchownRC: int64(r.fchown_rc), FchownErr: syscall.Errno(r.fchown_errno), OwnerAfter: int(r.owner_after),
		Status:     C.GoString(&r.status[0]),
		WaitStatus: syscall.WaitStatus(st),
	}, nil
}

// ProbeForeign forks a child that installs the filter (with install) and
// makes a system call of another ABI on x86_64: i386's (x32 false) or
// x32's. It returns the child's wait status (exit 0: the call returned).
func ProbeForeign(install, x32 bool) syscall.WaitStatus {
	return syscall.WaitStatus(C.probe_foreign(boolC(install), boolC(x32)))
}

// ProbeDrop forks a child that runs phpc_drop_privileges, or with userns
// unshares a user namespace and runs phpc_keep_userns_privileges, and
// returns the child's /proc/self/status afterwards (or "error: " and the
// reason).
func ProbeDrop(userns bool) (string, error) {
	buf := (*C.char)(C.malloc(8192))
	defer C.free(unsafe.Pointer(buf))
	if C.probe_drop(boolC(userns), buf, 8192) != 0 {
		return "", errors.New("probe child failed")
	}
	return C.GoString(buf), nil
}

// FilterLen is the number of BPF instructions of the tasks' filter.
func FilterLen(remap bool) int {
	prog := make([]C.struct_sock_filter, C.PHPC_SECCOMP_MAX)
	return int(C.phpc_seccomp_build(boolC(remap), &prog[0], C.PHPC_SECCOMP_MAX))
}

// FilterRules is the tasks' filter as its rules: for each system call
// number it names, the value it returns (SECCOMP_RET_ERRNO | errno).
func FilterRules(remap bool) map[uint32]uint32 {
	prog := make([]C.struct_sock_filter, C.PHPC_SECCOMP_MAX)
	n := int(C.phpc_seccomp_build(boolC(remap), &prog[0], C.PHPC_SECCOMP_MAX))
	rules := map[uint32]uint32{}
	for i := 0; i+1 < n; i++ {
		// emit_if: "jeq k, 0, 1" then "ret v".
		jeq, ret := prog[i], prog[i+1]
		if jeq.code == C.BPF_JMP|C.BPF_JEQ|C.BPF_K && jeq.jt == 0 && jeq.jf == 1 && ret.code == C.BPF_RET|C.BPF_K {
			rules[uint32(jeq.k)] = uint32(ret.k)
		}
	}
	return rules
}

// MsgTypes are the C message types, by name, to check against pkg/wire's.
func MsgTypes() map[string]uint8 {
	return map[string]uint8{
		"Hello": C.PHPC_MSG_HELLO, "Container": C.PHPC_MSG_CONTAINER, "Rm": C.PHPC_MSG_RM, "End": C.PHPC_MSG_END, "Notes": C.PHPC_MSG_NOTES,
		"OK": C.PHPC_MSG_OK, "Error": C.PHPC_MSG_ERROR, "Progress": C.PHPC_MSG_PROGRESS,
	}
}

// Request is a step as spank/request.c's struct phpc_request takes it: the
// user's options through the C setters (as ParseOptions), the on/off
// options with no setter of their own as tri-states (-1: unset), and the
// admin's plugstack.conf arguments (as ParseConfig).
type Request struct {
	Job, Step, UID, GID          uint32
	PluginVersion                string
	Options                      []Option
	MountHome, Entrypoint, Remap int
	EntrypointLog                bool
	Config                       []string
	Saves                        bool
	Command                      string // "" for none
	JobEnv                       []string
	Auth                         string // "" for none
	// Account: resolve the uid's account and the groups (GID first, then
	// SupGIDs) through this machine's NSS, as slurmstepd does.
	Account bool
	SupGIDs []uint32
}

// EncodeRequest builds the CONTAINER frame of r with phpc_request_encode.
// What the C side points to is in C memory (cgo's pointer rules).
func EncodeRequest(r Request) ([]byte, error) {
	a := (*C.struct_phpc_args)(C.calloc(1, C.sizeof_struct_phpc_args))
	defer C.free(unsafe.Pointer(a))
	C.phpc_args_init(a)
	defer C.phpc_args_free(a)
	if err := setOptions(a, r.Options); err != nil {
		return nil, err
	}
	a.mount_home, a.entrypoint, a.remap_root = C.int(r.MountHome), C.int(r.Entrypoint), C.int(r.Remap)
	a.entrypoint_log = boolC(r.EntrypointLog)

	cfg := (*C.struct_phpc_config)(C.calloc(1, C.sizeof_struct_phpc_config))
	defer C.free(unsafe.Pointer(cfg))
	C.phpc_config_defaults(cfg)
	var cargs []*C.char
	for _, s := range r.Config {
		cargs = append(cargs, C.CString(s))
	}
	defer freeAll(cargs)
	cargv := cArray(cargs)
	defer C.free(unsafe.Pointer(cargv))
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_config_parse(cfg, C.int(len(cargs)), cargv, errbuf, 512) != 0 {
		return nil, errors.New(C.GoString(errbuf))
	}

	req := (*C.struct_phpc_request)(C.calloc(1, C.sizeof_struct_phpc_request))
	defer C.free(unsafe.Pointer(req))
	req.job, req.step, req.uid, req.gid = C.uint32_t(r.Job), C.uint32_t(r.Step), C.uint32_t(r.UID), C.uint32_t(r.GID)
	req.args, req.cfg, req.saves = a, cfg, boolC(r.Saves)
	req.plugin_version = C.CString(r.PluginVersion)
	defer C.free(unsafe.Pointer(req.plugin_version))
	if r.Command != "" {
		req.command = C.CString(r.Command)
		defer C.free(unsafe.Pointer(req.command))
	}
	if r.Auth != "" {
		req.auth = C.CString(r.Auth)
		defer C.free(unsafe.Pointer(req.auth))
	}
	var env []*C.char
	for _, e := range r.JobEnv {
		env = append(env, C.CString(e))
	}
	defer freeAll(env)
	if len(env) > 0 {
		cenv := cArray(env)
		defer C.free(unsafe.Pointer(cenv))
		req.jobenv = (**C.char)(unsafe.Pointer(cenv))
	}

	if r.Account {
		acct := (*C.struct_phpc_account)(C.calloc(1, C.sizeof_struct_phpc_account))
		defer C.free(unsafe.Pointer(acct))
		var sup *C.gid_t
		if len(r.SupGIDs) > 0 {
			sup = (*C.gid_t)(C.calloc(C.size_t(len(r.SupGIDs)), C.sizeof_gid_t))
			defer C.free(unsafe.Pointer(sup))
			for i, g := range r.SupGIDs {
				unsafe.Slice(sup, len(r.SupGIDs))[i] = C.gid_t(g)
			}
		}
		if rc, err := C.phpc_account_resolve(acct, C.uid_t(r.UID), C.gid_t(r.GID), sup, C.size_t(len(r.SupGIDs))); rc != 0 {
			return nil, fmt.Errorf("phpc_account_resolve: %v", err)
		}
		defer C.phpc_account_free(acct)
		C.phpc_account_to_request(acct, req)
	}

	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, C.PHPC_MSG_CONTAINER)
	defer C.phpc_msg_free(&m)
	if rc, err := C.phpc_request_encode(&m, req); rc != 0 {
		return nil, fmt.Errorf("phpc_request_encode: %v", err)
	}
	hdr := make([]byte, C.PHPC_FRAME_HEADER)
	C.phpc_msg_header(&m, (*C.uchar)(unsafe.Pointer(&hdr[0])))
	return append(hdr, C.GoBytes(unsafe.Pointer(m.body), C.int(m.len))...), nil
}

// cArray copies ss into a NULL-terminated C array (the strings are the
// caller's); the caller frees the array.
func cArray(ss []*C.char) **C.char {
	arr := (**C.char)(C.malloc(C.size_t(len(ss)+1) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	out := unsafe.Slice(arr, len(ss)+1)
	copy(out, ss)
	out[len(ss)] = nil
	return arr
}

func freeAll(ss []*C.char) {
	for _, s := range ss {
		C.free(unsafe.Pointer(s))
	}
}

// goList reads a NULL-terminated C list of strings.
func goList(l **C.char) []string {
	var out []string
	for _, p := range unsafe.Slice(l, 64) {
		if p == nil {
			break
		}
		out = append(out, C.GoString(p))
	}
	return out
}

// MountFlags, NameModes and UnshareNamespaces are spank/request.c's lists.
func MountFlags() []string        { return goList(&C.phpc_mount_flags[0]) }
func NameModes() []string         { return goList(&C.phpc_name_modes[0]) }
func UnshareNamespaces() []string { return goList(&C.phpc_unshare_namespaces[0]) }

// The special mount sources of args.h.
const (
	PhpcTmpfsSource  = C.PHPC_TMPFS_SOURCE
	PhpcUmountSource = C.PHPC_UMOUNT_SOURCE
)

// TmpfsFlags is spank/request.c's phpc_tmpfs_flags.
func TmpfsFlags() []string { return goList(&C.phpc_tmpfs_flags[0]) }

// ResolveOptions parses opts as ParseOptions does, then makes their
// relative paths absolute in cwd (phpc_args_resolve), as slurmstepd does.
func ResolveOptions(cwd string, opts ...Option) (Args, error) {
	var a C.struct_phpc_args
	C.phpc_args_init(&a)
	defer C.phpc_args_free(&a)
	if err := setOptions(&a, opts); err != nil {
		return Args{}, err
	}
	errbuf := (*C.char)(C.calloc(1, 512))
	defer C.free(unsafe.Pointer(errbuf))
	c := C.CString(cwd)
	defer C.free(unsafe.Pointer(c))
	if C.phpc_args_resolve(&a, c, errbuf, 512) != 0 {
		return Args{}, errors.New(C.GoString(errbuf))
	}
	return argsOf(&a), nil
}

// CheckLocal parses opts, then runs srun's checks (phpc_args_check_local)
// in this process's working directory.
func CheckLocal(opts ...Option) error {
	var a C.struct_phpc_args
	C.phpc_args_init(&a)
	defer C.phpc_args_free(&a)
	if err := setOptions(&a, opts); err != nil {
		return err
	}
	errbuf := (*C.char)(C.calloc(1, 512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_args_check_local(&a, errbuf, 512) != 0 {
		return errors.New(C.GoString(errbuf))
	}
	return nil
}

// UnescapeFstab is phpc_fstab_unescape with a buffer of n bytes.
func UnescapeFstab(s string, n int) (string, error) {
	in := C.CString(s)
	defer C.free(unsafe.Pointer(in))
	out := (*C.char)(C.calloc(1, C.size_t(n)))
	defer C.free(unsafe.Pointer(out))
	if rc, err := C.phpc_fstab_unescape(in, out, C.size_t(n)); rc != 0 {
		return "", err
	}
	return C.GoString(out), nil
}

// AuthFiles is spank/request.c's phpc_auth_files, as {var, suffix} pairs.
func AuthFiles() [][2]string {
	var out [][2]string
	for _, a := range unsafe.Slice(&C.phpc_auth_files[0], 16) {
		if a._var == nil {
			break
		}
		out = append(out, [2]string{C.GoString(a._var), C.GoString(a.suffix)})
	}
	return out
}

// BatchStep is PHPC_BATCH_STEP; DefaultSocket is PHPC_DEFAULT_SOCKET.
const BatchStep = uint32(C.PHPC_BATCH_STEP)

func DefaultSocket() string { return C.PHPC_DEFAULT_SOCKET }

// SlurmVersionCheck is phpc_slurm_version_check: nil, or its message.
func SlurmVersionCheck(major, minor string, built uint32) error {
	cmaj, cmin := C.CString(major), C.CString(minor)
	defer C.free(unsafe.Pointer(cmaj))
	defer C.free(unsafe.Pointer(cmin))
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_slurm_version_check(cmaj, cmin, C.ulong(built), errbuf, 512) != 0 {
		return errors.New(C.GoString(errbuf))
	}
	return nil
}

// FirstHost is phpc_first_host: the first host of a Slurm host list.
func FirstHost(list string) (string, error) {
	cl := C.CString(list)
	defer C.free(unsafe.Pointer(cl))
	var out [256]C.char
	if rc, err := C.phpc_first_host(cl, &out[0], C.size_t(len(out))); rc != 0 {
		return "", err
	}
	return C.GoString(&out[0]), nil
}

// PyTorchPort is phpc_pytorch_port: MASTER_PORT for a job.
func PyTorchPort(job uint32) uint { return uint(C.phpc_pytorch_port(C.uint32_t(job))) }

// SlurmAPICheck is phpc_slurm_api_check: nil, or its message.
func SlurmAPICheck(api, built uint32) error {
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_slurm_api_check(C.ulong(api), C.ulong(built), errbuf, 512) != 0 {
		return errors.New(C.GoString(errbuf))
	}
	return nil
}

// PinsLookup is phpc_pins_lookup: ref's pinned form in list, or false.
func PinsLookup(list, ref string) (string, bool) {
	cl, cr := C.CString(list), C.CString(ref)
	defer C.free(unsafe.Pointer(cl))
	defer C.free(unsafe.Pointer(cr))
	out := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(out))
	if C.phpc_pins_lookup(cl, cr, out, 4096) != 0 {
		return "", false
	}
	return C.GoString(out), true
}

// PinsAdd is phpc_pins_add with an output of size n: the new list, or false.
func PinsAdd(list, ref, pinned string, n int) (string, bool) {
	cl, cr, cp := C.CString(list), C.CString(ref), C.CString(pinned)
	defer C.free(unsafe.Pointer(cl))
	defer C.free(unsafe.Pointer(cr))
	defer C.free(unsafe.Pointer(cp))
	out := (*C.char)(C.malloc(C.size_t(n)))
	defer C.free(unsafe.Pointer(out))
	if C.phpc_pins_add(cl, cr, cp, out, C.size_t(n)) != 0 {
		return "", false
	}
	return C.GoString(out), true
}

// ResolveHelper parses plugstack.conf arguments and returns the resolve
// helper's paths (podman_hpcd, daemon_config).
func ResolveHelper(args ...string) (string, string, error) {
	c, err := parseConfig(args)
	if err != nil {
		return "", "", err
	}
	return C.GoString(&c.podman_hpcd[0]), C.GoString(&c.daemon_config[0]), nil
}
