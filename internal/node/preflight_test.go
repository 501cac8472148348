package node

import (
	"context"
	"debug/elf"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

func TestReportErr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		checks []Check
		ready  bool
		want   []string // in Err
		not    []string // not in Err
	}{
		{"all passed", []Check{{ID: "a", What: "A"}, {ID: "b", What: "B"}}, true, nil, nil},
		{"an optional one failed", []Check{{ID: "a", What: "A"}, {ID: "n", What: "N", Optional: true, Err: errors.New("no ip")}}, true, nil, nil},
		{"one failed, one skipped for it", []Check{
			{ID: "a", What: "POSIX ACLs", Err: errors.New("operation not supported"), Fix: "use tmpfs"},
			{ID: "b", What: "overlay", Skipped: "needs POSIX ACLs"},
		}, false, []string{"this node cannot run containers: POSIX ACLs: operation not supported; fix: use tmpfs"}, []string{"overlay"}},
		{"two failed", []Check{
			{ID: "a", What: "A", Err: errors.New("x"), Fix: "fa"},
			{ID: "b", What: "B", Err: errors.New("y"), Fix: "fb"},
		}, false, []string{"A: x; fix: fa; B: y; fix: fb"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Checks: tc.checks}
			if r.Ready() != tc.ready {
				t.Fatalf("Ready() = %v, want %v", r.Ready(), tc.ready)
			}
			err := r.Err()
			if (err == nil) != tc.ready {
				t.Fatalf("Err() = %v with Ready() %v", err, tc.ready)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Err() = %q, want it to contain %q", err, w)
				}
			}
			for _, w := range tc.not {
				if err != nil && strings.Contains(err.Error(), w) {
					t.Errorf("Err() = %q names %q, a consequence", err, w)
				}
			}
		})
	}
}

// preflightDirs are a state_dir and cache_dir as the daemon wants them:
// state_dir searchable by the users that containers map.
func preflightDirs(t *testing.T) (state, cache string) {
	t.Helper()
	requireRoot(t)
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
	base := t.TempDir()
	os.Chmod(base, 0o711)
	os.Chmod(filepath.Dir(base), 0o711)
	state = filepath.Join(base, "state")
	os.MkdirAll(state, 0o711)
	t.Cleanup(func() { oci.Unmount(state, true) }) // runtimeSetup's bind, if it made one
	return state, filepath.Join(base, "cache")
}

func runPreflight(t *testing.T, cfg config.Config) *Report {
	t.Helper()
	if cfg.WritableDir == "" {
		cfg.WritableDir = filepath.Join(filepath.Dir(cfg.StateDir), "writable")
	}
	r := Preflight(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if r.rt != nil {
		t.Cleanup(r.rt.NS.Close)
	}
	for _, c := range r.Checks {
		t.Logf("%-16s ok=%v skipped=%q err=%v took=%v %s", c.ID, c.OK(), c.Skipped, c.Err, c.Took, c.Detail)
	}
	return r
}

func checkOf(t *testing.T, r *Report, id string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no check %q", id)
	return Check{}
}

// nothingLeft: the checks removed their scratch directories and mounts.
func nothingLeft(t *testing.T, state, cache string) {
	t.Helper()
	if e, _ := os.ReadDir(filepath.Join(state, "containers")); len(e) > 0 {
		t.Errorf("left in state_dir/containers: %v", e)
	}
	if e, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(e) > 0 {
		t.Errorf("left in cache_dir/tmp: %v", e)
	}
	if m, _ := oci.MountsUnder(filepath.Join(state, "containers")); len(m) > 0 {
		t.Errorf("left mounted: %v", m)
	}
}

// On a node that can run containers every check passes, the runtime that
// passed is kept, and nothing is left behind.
func TestPreflightPasses(t *testing.T) {
	state, cache := preflightDirs(t)
	r := runPreflight(t, config.Config{StateDir: state, CacheDir: cache, Runtime: "auto", Compression: "zstd:3"})
	if !r.Ready() {
		t.Skipf("this host cannot run containers: %v", r.Err())
	}
	if r.rt == nil || checkOf(t, r, "runtime").Detail == "" {
		t.Errorf("ready, but no runtime kept: %+v", checkOf(t, r, "runtime"))
	}
	for _, id := range []string{"userns", "state_dir", "state_dir_acl", "state_dir_xattr", "writable_dir", "cache_dir", "mksquashfs", "squashfs_mount", "idmapped_mount", "overlay", "user_helper", "runtime"} {
		if c := checkOf(t, r, id); !c.OK() {
			t.Errorf("%s: %+v", id, c)
		}
	}
	nothingLeft(t, state, cache)
	if e, _ := os.ReadDir(filepath.Join(filepath.Dir(state), "writable")); len(e) > 0 {
		t.Errorf("left in writable_dir: %v", e)
	}
}

// A writable_dir that is not root's alone (a user's directory, or a
// symlink) fails its check: root would make and mount files there.
func TestPreflightWritableDirNotRoots(t *testing.T) {
	state, cache := preflightDirs(t)
	users := filepath.Join(filepath.Dir(state), "users")
	os.Mkdir(users, 0o700)
	os.Chown(users, 4242, 4242)
	link := filepath.Join(filepath.Dir(state), "link")
	os.Symlink(state, link)
	for _, dir := range []string{users, link} {
		r := runPreflight(t, config.Config{StateDir: state, CacheDir: cache, Runtime: "auto", WritableDir: dir})
		c := checkOf(t, r, "writable_dir")
		if c.Err == nil || !strings.Contains(c.Err.Error(), "not a directory of root's") || r.Ready() {
			t.Errorf("%s: %+v", dir, c)
		}
	}
	if e, _ := os.ReadDir(users); len(e) > 0 {
		t.Errorf("made in the user's directory: %v", e)
	}
}

// A state_dir without POSIX ACLs (ramfs) passed the old probe, an empty
// root, and failed every job: the check names it and its fix, what needs it
// is skipped, and the runtime is still tried on an empty root.
func TestPreflightStateDirWithoutACLs(t *testing.T) {
	state, cache := preflightDirs(t)
	if err := unix.Mount("ramfs", state, "ramfs", 0, "mode=0711"); err != nil {
		t.Skipf("mount ramfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	r := runPreflight(t, config.Config{StateDir: state, CacheDir: cache, Runtime: "auto"})
	if r.Ready() {
		t.Fatal("ready with a state_dir without ACLs")
	}
	acl := checkOf(t, r, "state_dir_acl")
	if acl.Err == nil || !strings.Contains(acl.Fix, "POSIX ACLs") {
		t.Errorf("state_dir_acl: %+v", acl)
	}
	if c := checkOf(t, r, "idmapped_mount"); !strings.HasPrefix(c.Skipped, "needs POSIX ACLs") {
		t.Errorf("idmapped_mount not skipped for the ACLs: %+v", c)
	}
	if c := checkOf(t, r, "overlay"); c.Skipped == "" {
		t.Errorf("overlay not skipped: %+v", c)
	}
	if c := checkOf(t, r, "squashfs_mount"); !c.OK() {
		t.Errorf("squashfs_mount, on cache_dir, failed: %+v", c)
	}
	if c := checkOf(t, r, "runtime"); !strings.Contains(c.What, "empty root") {
		t.Errorf("runtime not tried on an empty root: %+v", c)
	}
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "POSIX ACLs on state_dir "+state) || !strings.Contains(err.Error(), "fix: put state_dir on a file system with POSIX ACLs") {
		t.Errorf("Err() = %v", err)
	}
	nothingLeft(t, state, cache)
}

// A runtime that fails fails its check, with its own words.
func TestPreflightBrokenRuntime(t *testing.T) {
	state, cache := preflightDirs(t)
	// A binary (the runtime runs from a sealed copy, never a script).
	fake := filepath.Join(t.TempDir(), "broken-runtime")
	data, err := os.ReadFile("/bin/false")
	if err != nil {
		t.Skip(err)
	}
	os.WriteFile(fake, data, 0o755)
	r := runPreflight(t, config.Config{StateDir: state, CacheDir: cache, Runtime: fake})
	c := checkOf(t, r, "runtime")
	if c.Err == nil || !strings.Contains(c.Err.Error(), fake+" run: exit status 1") {
		t.Errorf("runtime: %+v", c)
	}
	if r.Ready() || r.rt != nil {
		t.Errorf("ready with a broken runtime")
	}
	nothingLeft(t, state, cache)
}

// A compression mksquashfs has no level for fails at mksquashfs, and the
// mount that needs its squashfs is skipped.
func TestPreflightBadCompression(t *testing.T) {
	state, cache := preflightDirs(t)
	r := runPreflight(t, config.Config{StateDir: state, CacheDir: cache, Runtime: "auto", Compression: "gzip:99"})
	if c := checkOf(t, r, "mksquashfs"); c.Err == nil || !strings.Contains(c.What, "gzip:99") {
		t.Errorf("mksquashfs: %+v", c)
	}
	if c := checkOf(t, r, "squashfs_mount"); c.Skipped == "" {
		t.Errorf("squashfs_mount not skipped: %+v", c)
	}
	if r.Ready() {
		t.Error("ready without a squashfs")
	}
	nothingLeft(t, state, cache)
}
