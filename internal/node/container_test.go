package node

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/devices"
	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// fakeImages serves one prebuilt squashfs.
type fakeImages struct {
	img    *image
	pinned int
}

func (f *fakeImages) get(ctx context.Context, ref string, cred credential, acct account, auth []byte, progress func(string)) (*image, error) {
	if ref != "test" {
		return nil, fmt.Errorf("pull %q: manifest unknown", ref)
	}
	return f.img, nil
}

func (f *fakeImages) pin(digest string) (func(), error) {
	f.pinned++
	return func() { f.pinned-- }, nil
}

// testSquashfs builds a squashfs with busybox and an os-release.
func testSquashfs(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"mksquashfs", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%q not found in PATH", bin)
		}
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "work", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, _ := exec.LookPath("busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(root, "bin/sh"))
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=phpc-unit\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	sqfs := filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", root, sqfs, "-noappend", "-quiet", "-comp", "zstd").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return sqfs
}

func testManager(t *testing.T) (*manager, *fakeImages, string) {
	t.Helper()
	requireRoot(t)
	// The test binary is the containers' init: it must run in any image.
	if self, err := os.Executable(); err == nil {
		if f, err := elf.Open(self); err == nil {
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Skip("test binary is dynamically linked; run with CGO_ENABLED=0 (make test does)")
				}
			}
		}
	}
	// As check-config wants state_dir: searchable by the job users that
	// containers' user namespaces map.
	base := t.TempDir()
	os.Chmod(base, 0o711)
	os.Chmod(filepath.Dir(base), 0o711)
	state := filepath.Join(base, "state")
	os.MkdirAll(state, 0o711)
	rt, err := pickRuntime(context.Background(), config.Config{StateDir: state, Runtime: "auto"}, probe(state))
	if err != nil {
		t.Skipf("no OCI runtime works here: %v", err)
	}
	t.Cleanup(func() {
		rt.NS.Close()
		oci.Unmount(state, true) // runtimeSetup's bind, if it made one
	})
	images := &fakeImages{img: &image{Digest: "sha256:feed", Path: testSquashfs(t), Env: []string{"FOO=image"}, WorkingDir: "/work"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Config{StateDir: state, WritableDir: filepath.Join(base, "writable"), WritableSize: 32 << 20, WritableMaxPerUser: 80 << 20}
	m := newManager(log, rt, images, newImageMounts(0, images.pin, log), t.TempDir(), cfg)
	if err := m.writes.open(); err != nil {
		t.Fatal(err)
	}
	return m, images, state
}

// rootMountLine is the root's line of a mountinfo: not always the first
// (the runtime lists a user namespace's /proc before it).
func rootMountLine(mountinfo string) string {
	return regexp.MustCompile(`(?m)^\S+ \S+ \S+ \S+ / .*$`).FindString(mountinfo)
}

// testAccount is the job user of these tests as the plugin sends it: not
// 65534, the kernel's overflow id, which an idmapped image shows for every
// id it does not map.
var testAccount = &wire.Account{Name: "tester", Home: "/", Shell: "/bin/sh", Groups: []wire.Group{{GID: 4242, Name: "testers"}}}

func TestContainerLifecycle(t *testing.T) {
	m, images, state := testManager(t)
	ctx := context.Background()
	req := &wire.ContainerRequest{Job: "7", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "test"}
	c, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.initPid))
	if !strings.Contains(string(status), "\nUid:\t4242\t4242\t4242\t4242\n") {
		t.Errorf("init is not the job user:\n%s", status)
	}
	if strings.Contains(string(status), "CapEff:\t0000003") || !strings.Contains(string(status), "CapEff:\t0000000000000000") {
		t.Errorf("init has capabilities:\n%s", status)
	}
	osr, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/os-release", c.initPid))
	if err != nil || string(osr) != "ID=phpc-unit\n" {
		t.Errorf("image's os-release: %q, %v", osr, err)
	}
	passwd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/passwd", c.initPid))
	if !strings.Contains(string(passwd), "tester:x:4242:4242:") {
		t.Errorf("passwd lacks the job user:\n%s", passwd)
	}
	if c.workdir != "/work" || len(c.env) != 1 || c.env[0] != "FOO=image" {
		t.Errorf("workdir %q env %q", c.workdir, c.env)
	}
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.initPid))
	// Read-only, and a setuid file in the image counts for nothing.
	if root := rootMountLine(string(mi)); !strings.Contains(root, " / / ro,nosuid,nodev,") {
		t.Errorf("root is not read-only, nosuid and nodev: %s", root)
	}
	if images.pinned != 1 {
		t.Errorf("image pinned %d times, want 1", images.pinned)
	}
	// The init only waits, and dies at the lowest priority.
	if n := niceOf(t, c.initPid); n != oci.BackgroundNice {
		t.Errorf("init's nice %d, want %d", n, oci.BackgroundNice)
	}

	m.removeInBackground(ctx, c)
	if images.pinned != 0 {
		t.Errorf("image still pinned after remove")
	}
	if mounts := mountsBelow(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
	if _, err := os.Stat(c.bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
	// The runtime's own state goes too (by the daemon's hand under crun).
	if _, err := os.Stat(filepath.Join(state, "runtime", c.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime state left: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.initPid)); err == nil {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.initPid))
		if !strings.Contains(string(st), ") Z ") {
			t.Errorf("init %d still running", c.initPid)
		}
	}
}

func TestContainerFailureLeavesNothing(t *testing.T) {
	m, images, state := testManager(t)
	ctx := context.Background()
	for name, req := range map[string]*wire.ContainerRequest{
		"unknown image": {Job: "8", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "nope"},
		"missing mount": {Job: "8", Step: "1", UID: 4242, GID: 4242, Account: testAccount, Image: "test", Mounts: []wire.UserMount{{Src: "/does/not/exist", Dst: "/x"}}},
		"root-only dir": {Job: "8", Step: "2", UID: 4242, GID: 4242, Account: testAccount, Image: "test", Mounts: []wire.UserMount{{Src: "/root/.", Dst: "/x"}}},
	} {
		if _, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {}); err == nil {
			t.Errorf("%s: create succeeded", name)
		} else if name != "unknown image" && !strings.Contains(err.Error(), "--container-mounts: ") {
			t.Errorf("%s: error %q does not name the option", name, err)
		}
	}
	if images.pinned != 0 {
		t.Errorf("image pinned %d times after failures", images.pinned)
	}
	if mounts := mountsBelow(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "containers")); len(entries) > 0 {
		t.Errorf("bundles left: %d", len(entries))
	}
}

// hooks.d hooks run through the runtime, timed: a createRuntime hook sees
// the container's state, a createContainer hook writes into a root that is
// read-only once it is done, and a poststop hook runs at removal.
func TestContainerHooks(t *testing.T) {
	m, _, state := testManager(t)
	var logb strings.Builder
	m.log = slog.New(slog.NewTextHandler(&syncWriter{w: &logb}, nil))
	dir, out := t.TempDir(), t.TempDir()
	// Hooks run with the runtime in the container's user namespace, which
	// maps only the job user: what they read and write must let others in.
	exe, _ := os.Executable() // the hooks' shim (hooks_run.go), as the daemon is
	for _, d := range []string{dir, out, filepath.Dir(dir), filepath.Dir(out), filepath.Dir(exe), filepath.Dir(filepath.Dir(exe))} {
		os.Chmod(d, 0o777)
	}
	write := func(name, body string) {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755)
	}
	write("state.sh", "#!/bin/sh\ncat >"+out+"/state.json\n")
	// The root's path is the bundle's rootfs (a hook's working directory
	// is the runtime's choice: runc's is the root, crun's is not).
	write("root.sh", "#!/bin/sh\nb=$(sed -n 's/.*\"bundle\": *\"\\([^\"]*\\)\".*/\\1/p')\necho from-hook >\"$b/rootfs/etc/hook-was-here\"\n")
	write("stop.sh", "#!/bin/sh\ntouch "+out+"/stopped\n")
	write("01-state.json", `{"version":"1.0.0","hook":{"path":"`+dir+`/state.sh"},"when":{"annotations":{"^org\\.podman-hpc\\.hook\\.state$":"true"}},"stages":["prestart"]}`)
	write("02-root.json", `{"version":"1.0.0","hook":{"path":"`+dir+`/root.sh"},"when":{"always":true},"stages":["createContainer"]}`)
	write("03-stop.json", `{"hook":"`+dir+`/stop.sh","stage":["poststop"],"annotations":["^true$"]}`)
	m.hooks = &hookRunner{dirs: []string{dir}}

	ctx := context.Background()
	c, _, err := m.forStep(ctx, &wire.ContainerRequest{Job: "9", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "test", Hooks: "state"}, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.ReadFile(filepath.Join(out, "state.json")); err != nil || !strings.Contains(string(st), `"id":"phpc-9-0"`) {
		t.Errorf("createRuntime hook's state: %s, %v", st, err)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/hook-was-here", c.initPid)); err != nil || string(b) != "from-hook\n" {
		t.Errorf("createContainer hook's file: %q, %v", b, err)
	}
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.initPid))
	if root := rootMountLine(string(mi)); !strings.Contains(root, " / / ro,nosuid,nodev") {
		t.Errorf("root is not read-only, nosuid, nodev after the hook: %s", root)
	}
	m.remove(ctx, c)
	if _, err := os.Stat(filepath.Join(out, "stopped")); err != nil {
		t.Errorf("poststop hook did not run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "runtime", c.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime state left: %v", err)
	}
	// A createContainer hook runs inside the container's user namespace,
	// which cannot append to the root-only bundle's hooks.log: its timing
	// is not logged (a known gap, README's hooks section); its file above
	// shows it ran.
	for _, want := range []string{"hook=01-state.json stage=createRuntime exit=0", "hook=03-stop.json stage=poststop exit=0"} {
		if !strings.Contains(logb.String(), `msg="hook ran" job=9 step=0 container=phpc-9-0 `+want+" duration=") {
			t.Errorf("log lacks %q:\n%s", want, logb.String())
		}
	}
}

// A failing hook fails the container with the runtime's words, and leaves nothing.
func TestContainerHookFails(t *testing.T) {
	m, images, state := testManager(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fail.sh"), []byte("#!/bin/sh\necho hook says no >&2\nexit 4\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "fail.json"), []byte(`{"version":"1.0.0","hook":{"path":"`+dir+`/fail.sh"},"when":{"always":true},"stages":["createRuntime"]}`), 0o644)
	m.hooks = &hookRunner{dirs: []string{dir}}
	_, _, err := m.forStep(context.Background(), &wire.ContainerRequest{Job: "9", Step: "1", UID: 4242, GID: 4242, Account: testAccount, Image: "test"}, stepcgroup.Target{}, func(string) {})
	if err == nil || !strings.Contains(err.Error(), "start container") {
		t.Fatalf("err = %v", err)
	}
	if images.pinned != 0 {
		t.Errorf("image pinned %d times after failures", images.pinned)
	}
	if mounts := mountsBelow(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
}

// mountsBelow lists the mounts below dir, not dir itself (which
// runtimeSetup may have bound on itself).
func mountsBelow(dir string) []string {
	mounts, _ := oci.MountsUnder(dir)
	out := mounts[:0]
	for _, mp := range mounts {
		if mp != dir {
			out = append(out, mp)
		}
	}
	return out
}

// syncWriter serialises writes from the daemon's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// devModule adds a device node, a mount and a variable, as gpu or ib would.
type devModule struct{}

func (devModule) Name() string { return "dev" }
func (devModule) Apply(ctx context.Context, r hooks.Request) (hooks.Result, error) {
	d, err := devices.Device("/", "/dev/null")
	if err != nil {
		return hooks.Result{}, err
	}
	d.Path = "/dev/phpc-test0"
	return hooks.Result{Devices: []specs.LinuxDevice{d}, DeviceRules: []specs.LinuxDeviceCgroup{devices.CgroupRule(d)},
		Mounts: []specs.Mount{oci.BindMount("/etc/os-release", "/.podman-hpc/dev/os-release", "ro")},
		Env:    []string{"DEV_MODULE=1"}}, nil
}

// A module's device node, mount and variables reach the container.
func TestContainerModule(t *testing.T) {
	m, _, _ := testManager(t)
	m.hooks = &hookRunner{modules: []hooks.Module{devModule{}}}
	ctx := context.Background()
	c, _, err := m.forStep(ctx, &wire.ContainerRequest{Job: "9", Step: "2", UID: 4242, GID: 4242, Account: testAccount, Image: "test"}, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.remove(ctx, c)
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root/dev/phpc-test0", c.initPid), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("device node: %+v, %v", st, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/.podman-hpc/dev/os-release", c.initPid)); err != nil {
		t.Errorf("module mount: %v", err)
	}
	if want := []string{"FOO=image", "DEV_MODULE=1"}; !reflect.DeepEqual(c.env, want) {
		t.Errorf("tasks' env %q, want %q", c.env, want)
	}
}

// niceOf reads a process's niceness from /proc/PID/stat.
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's ")": state is the first, nice the 17th.
	fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatalf("nice in %q: %v", st, err)
	}
	return n
}
