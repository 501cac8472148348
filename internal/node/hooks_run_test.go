package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// envModule adds what a module can: a mount, a device, variables and a hook.
type envModule struct{}

func (envModule) Name() string { return "fake" }
func (envModule) Apply(ctx context.Context, r hooks.Request) (hooks.Result, error) {
	if r.Env["SLURM_STEP_GPUS"] != "0" || r.ImageRoot != "/image" {
		return hooks.Result{}, errors.New("fake: request " + r.ImageRoot)
	}
	null := specs.LinuxDevice{Path: "/dev/fake0", Type: "c", Major: 1, Minor: 3}
	return hooks.Result{
		Mounts:  []specs.Mount{oci.BindMount("/etc/hostname", "/.podman-hpc/fake/hostname", "ro")},
		Devices: []specs.LinuxDevice{null}, Env: []string{"LD_LIBRARY_PATH=/fake/lib", "FAKE=1"},
		Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}, Notes: []string{"fake: a note"},
	}, nil
}

func testHooksDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"01-marker.json": `{"version":"1.0.0","hook":{"path":"/bin/true","args":["true","marker"]},"when":{"annotations":{"^org\\.podman-hpc\\.hook\\.marker$":"^true$"}},"stages":["prestart"]}`,
		"02-sh.json":     `{"version":"1.0.0","hook":{"path":"/bin/true"},"when":{"commands":["/sh$"]},"stages":["createContainer"]}`,
		"03-user.json":   `{"version":"1.0.0","hook":{"path":"/bin/true"},"when":{"annotations":{"^org\\.podman-hpc\\.user$":"^nobody$","^org\\.podman-hpc\\.job$":"^5$"}},"stages":["poststart"]}`,
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	return dir
}

func TestPrepareHooks(t *testing.T) {
	t.Parallel()
	h := &hookRunner{dirs: []string{testHooksDir(t)}, modules: []hooks.Module{envModule{}}}
	bundle := t.TempDir()
	c := &container{id: "phpc-5-0", bundle: bundle, rootfs: filepath.Join(bundle, "rootfs"),
		req: &wire.ContainerRequest{Job: "5", Step: "0", UID: 65534, Image: "img", Hooks: "marker", Command: "/bin/sh",
			Env: map[string]string{"SLURM_STEP_GPUS": "0"}},
		img: &image{Env: []string{"PATH=/usr/bin", "LD_LIBRARY_PATH=/image/lib"}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := h.prepare(context.Background(), c, account{Name: "nobody"}, "/image", log)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/usr/bin", "LD_LIBRARY_PATH=/fake/lib:/image/lib", "FAKE=1"}; !reflect.DeepEqual(p.env, want) {
		t.Errorf("env %q", p.env)
	}
	if !p.writesRoot || !reflect.DeepEqual(p.notes, []string{"fake: a note"}) {
		t.Errorf("writesRoot %v notes %q", p.writesRoot, p.notes)
	}
	s, err := oci.NewSpec(p.opt)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"org.podman-hpc.job": "5", "org.podman-hpc.step": "0", "org.podman-hpc.user": "nobody",
		"org.podman-hpc.uid": "65534", "org.podman-hpc.image": "img", "org.podman-hpc.hooks": "fake,marker", "org.podman-hpc.hook.marker": "true"} {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if !reflect.DeepEqual(s.Process.Env, p.env) || len(s.Linux.Devices) != 1 || s.Mounts[len(s.Mounts)-1].Destination != "/.podman-hpc/fake/hostname" {
		t.Errorf("spec env %q devices %+v", s.Process.Env, s.Linux.Devices)
	}
	self, _ := os.Executable()
	timed := func(hk specs.Hook, name string) bool {
		return hk.Path == self && strings.Contains(strings.Join(hk.Args, " "), "oci-hook --log "+filepath.Join(bundle, "hooks.log")+" --name "+name+" ")
	}
	hs := s.Hooks
	if len(hs.CreateRuntime) != 1 || !timed(hs.CreateRuntime[0], "01-marker.json") || hs.CreateRuntime[0].Args[len(hs.CreateRuntime[0].Args)-1] != "marker" {
		t.Errorf("createRuntime %+v", hs.CreateRuntime)
	}
	if len(hs.CreateContainer) != 1 || !timed(hs.CreateContainer[0], "02-sh.json") {
		t.Errorf("createContainer %+v", hs.CreateContainer)
	}
	if len(hs.Poststart) != 1 || len(hs.Poststop) != 1 || !timed(hs.Poststop[0], "fake module") {
		t.Errorf("poststart %+v poststop %+v", hs.Poststart, hs.Poststop)
	}

	// A writable root leaves hooks nothing to wait for; a job that drops
	// the module and names no hook gets only what matches without them.
	c.req.Writable, c.req.Hooks, c.req.Command = true, "none", "/bin/true"
	p, err = h.prepare(context.Background(), c, account{Name: "nobody"}, "/image", log)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = oci.NewSpec(p.opt)
	if p.writesRoot || len(s.Hooks.CreateRuntime)+len(s.Hooks.CreateContainer)+len(s.Hooks.Poststop) != 0 || len(s.Hooks.Poststart) != 1 {
		t.Errorf("writesRoot %v hooks %+v", p.writesRoot, s.Hooks)
	}
	if s.Annotations["org.podman-hpc.hooks"] != "" || !reflect.DeepEqual(p.env, c.img.Env) {
		t.Errorf("annotations %v env %q", s.Annotations, p.env)
	}
}

func TestPrepareHooksErrors(t *testing.T) {
	t.Parallel()
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "bad.json"), []byte("{"), 0o644)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		h     *hookRunner
		hooks string
		want  string
	}{
		{&hookRunner{dirs: []string{testHooksDir(t)}}, "bogus", `--container-hooks: unknown hook "bogus" (this node offers: marker, sh, user)`},
		{&hookRunner{dirs: []string{bad}}, "", "bad.json"},
		{&hookRunner{modules: []hooks.Module{envModule{}}}, "", "fake: request /elsewhere"},
	} {
		c := &container{bundle: t.TempDir(), req: &wire.ContainerRequest{Job: "1", Step: "0", Hooks: tc.hooks}, img: &image{}}
		_, err := tc.h.prepare(context.Background(), c, account{}, "/elsewhere", log)
		var he *HookError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want a HookError with %q", err, tc.want)
		}
	}
}
