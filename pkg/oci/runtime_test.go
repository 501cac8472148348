package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A script stands in for the runtime: it records its arguments.
func scriptRuntime(t *testing.T, body string) (*Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	argv := filepath.Join(dir, "argv")
	script := filepath.Join(dir, "runtime")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >>"+argv+"\n"+body), 0o755)
	return &Runtime{Command: script, Root: "/state/runtime", Args: []string{"--cgroup-manager=disabled"}}, argv
}

func TestRuntimeArgs(t *testing.T) {
	t.Parallel()
	rt, argv := scriptRuntime(t, "")
	ctx := context.Background()
	bundle := t.TempDir()
	if err := rt.Run(ctx, "c1", RunOpts{Bundle: bundle, PidFile: bundle + "/pid"}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(ctx, "c1", DeleteOpts{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(argv)
	want := "--root /state/runtime --cgroup-manager=disabled run --detach --bundle " + bundle + " --pid-file " + bundle + "/pid c1\n" +
		"--root /state/runtime --cgroup-manager=disabled delete c1\n"
	if string(got) != want {
		t.Errorf("argv:\n%s\nwant:\n%s", got, want)
	}
}

// Delete with Force kills the init itself before the runtime deletes, and
// an unknown container is no error.
func TestRuntimeForceDeleteKillsInit(t *testing.T) {
	t.Parallel()
	init := exec.Command("sleep", "100")
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- init.Wait() }()
	pidfd, err := unix.PidfdOpen(init.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	rt, argv := scriptRuntime(t, "echo 'container \"c1\" does not exist' >&2; exit 1\n")
	if err := rt.Delete(context.Background(), "c1", DeleteOpts{Force: true, Pidfd: pidfd}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("init ended with %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("init still runs after Delete")
	}
	if got, _ := os.ReadFile(argv); !strings.HasSuffix(string(got), "delete --force c1\n") {
		t.Errorf("argv: %s", got)
	}
}

// ReadCgroupLayout agrees with what /proc/self/mounts says is mounted.
func TestReadCgroupLayout(t *testing.T) {
	t.Parallel()
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Skip(err)
	}
	types := map[string]string{}
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			types[f[1]] = f[2]
		}
	}
	want := CgroupV1
	switch {
	case types["/sys/fs/cgroup"] == "cgroup2":
		want = CgroupV2
	case types["/sys/fs/cgroup/unified"] == "cgroup2":
		want = CgroupHybrid
	}
	got, controllers, err := ReadCgroupLayout("/sys/fs/cgroup")
	if err != nil {
		t.Skip(err)
	}
	if got != want {
		t.Errorf("layout %s, mounts say %s", got, want)
	}
	if got != CgroupHybrid && controllers != nil {
		t.Errorf("controllers %q reported outside a hybrid layout", controllers)
	}
	// A directory that is no cgroup mount at all reads as v1 with no controllers.
	if l, c, err := ReadCgroupLayout(t.TempDir()); err != nil || l != CgroupV1 || c != nil {
		t.Errorf("plain directory: %s %q %v", l, c, err)
	}
}

// A background delete runs the runtime at the lowest priority.
func TestRuntimeBackgroundDelete(t *testing.T) {
	t.Parallel()
	// The script reports its nice once the daemon has set it (or after half a second).
	rt, argv := scriptRuntime(t, `for i in $(seq 50); do n=$(cut -d')' -f2 /proc/$$/stat | cut -d' ' -f18); [ "$n" = 19 ] && break; sleep 0.01; done; echo "nice $n" >>`+"\"$(dirname \"$0\")/argv\"\n")
	if err := rt.Delete(context.Background(), "c1", DeleteOpts{Background: true}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(context.Background(), "c2", DeleteOpts{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(argv)
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 4 || lines[1] != "nice 19" || lines[3] == "nice 19" {
		t.Errorf("runtime's nice:\n%s\nwant 19 for the background delete only", got)
	}
}

// A runtime that removes its own state (crun without cgroups): a forced
// delete of a container whose init is held removes the state directory
// without running the runtime, unless the container has poststop hooks,
// which the runtime's delete must run; an unknown container, or one not
// held by a pidfd, goes to the runtime.
func TestRuntimeRemovesOwnState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config string
		pidfd        bool
		wantExec     bool
	}{
		{"no hooks", `{"ociVersion":"1.0.2","process":{"args":["/init"]}}`, true, false},
		{"other hooks", `{"hooks":{"createRuntime":[{"path":"/h"}]}}`, true, false},
		{"poststop hook", `{"hooks":{"poststop":[{"path":"/h"}]}}`, true, true},
		{"not JSON, with poststop", `{"hooks":{"poststop":[`, true, true},
		{"unknown container", "", true, true},
		{"no pidfd", `{}`, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt, argv := scriptRuntime(t, "")
			rt.Root = t.TempDir()
			rt.RemovesOwnState = true
			state := filepath.Join(rt.Root, "c1")
			if tc.config != "" {
				os.Mkdir(state, 0o700)
				os.WriteFile(filepath.Join(state, "config.json"), []byte(tc.config), 0o600)
				os.WriteFile(filepath.Join(state, "status"), []byte(`{}`), 0o600)
			}
			o := DeleteOpts{Force: true}
			if tc.pidfd {
				init := exec.Command("sleep", "100")
				if err := init.Start(); err != nil {
					t.Fatal(err)
				}
				go init.Wait()
				pidfd, err := unix.PidfdOpen(init.Process.Pid, 0)
				if err != nil {
					init.Process.Kill()
					t.Skipf("pidfd_open: %v", err)
				}
				defer unix.Close(pidfd)
				o.Pidfd = pidfd
			}
			if err := rt.Delete(context.Background(), "c1", o); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(argv)
			if ran := strings.Contains(string(got), "delete --force c1"); ran != tc.wantExec {
				t.Errorf("runtime ran: %v (argv %q), want %v", ran, got, tc.wantExec)
			}
			if _, err := os.Stat(state); !tc.wantExec && err == nil {
				t.Errorf("state %s left", state)
			}
		})
	}
	// An id that is not one directory's name is never removed by hand.
	rt := &Runtime{Command: "/bin/false", Root: t.TempDir(), RemovesOwnState: true}
	if done, _ := rt.removeState(".."); done {
		t.Error(`removeState("..") removed something`)
	}
	if done, _ := rt.removeState("a/b"); done {
		t.Error(`removeState("a/b") removed something`)
	}
}
