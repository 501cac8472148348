package node

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func reuseBase() *wire.ContainerRequest {
	return &wire.ContainerRequest{Job: "7", Step: "0", UID: 1000, GID: 1000, Image: "reg/img:1@sha256:ab",
		MountHome: true, Hooks: "mpi", Command: "./solve", Env: map[string]string{"HOME": "/home/u", "SLURM_STEP_GPUS": "0"},
		Mounts: []wire.UserMount{{Src: "/data", Dst: "/data"}}, Account: testAccount, Auth: []byte("{}"), PluginVersion: "1"}
}

// What may share a container and what may not: only the step's id, the
// registry credentials and the command may differ; options a fresh
// container shows differently never share.
func TestReuseKey(t *testing.T) {
	t.Parallel()
	base := reuseKey(reuseBase())
	if base == "" {
		t.Fatal("a plain step is not reusable")
	}
	for _, tc := range []struct {
		name  string
		edit  func(r *wire.ContainerRequest)
		reuse bool // the key is base's
		none  bool // never reusable
	}{
		{"another step", func(r *wire.ContainerRequest) { r.Step = "41" }, true, false},
		{"other credentials", func(r *wire.ContainerRequest) { r.Auth = []byte(`{"auths":{}}`) }, true, false},
		{"another command (hooks decide, join)", func(r *wire.ContainerRequest) { r.Command = "./post" }, true, false},
		{"another job", func(r *wire.ContainerRequest) { r.Job = "8" }, false, false},
		{"another user", func(r *wire.ContainerRequest) { r.UID = 1001 }, false, false},
		{"another image", func(r *wire.ContainerRequest) { r.Image = "reg/img:2@sha256:cd" }, false, false},
		{"other mounts", func(r *wire.ContainerRequest) { r.Mounts = append(r.Mounts, wire.UserMount{Src: "/b", Dst: "/b"}) }, false, false},
		{"a mount read-only", func(r *wire.ContainerRequest) { r.Mounts[0].Options = []string{"ro"} }, false, false},
		{"another workdir", func(r *wire.ContainerRequest) { r.Workdir = "/w" }, false, false},
		{"other GPUs", func(r *wire.ContainerRequest) { r.Env["SLURM_STEP_GPUS"] = "1" }, false, false},
		{"PMIx's directory", func(r *wire.ContainerRequest) { r.Env["PMIX_SERVER_TMPDIR"] = "/tmp/x" }, false, false},
		{"another HOME", func(r *wire.ContainerRequest) { r.Env["HOME"] = "/home/v" }, false, false},
		{"remap-root", func(r *wire.ContainerRequest) { r.RemapRoot = true }, false, true},
		{"unshare", func(r *wire.ContainerRequest) { r.Unshare = []specs.LinuxNamespaceType{specs.NetworkNamespace} }, false, false},
		{"other hooks", func(r *wire.ContainerRequest) { r.Hooks = "none" }, false, false},
		{"other groups", func(r *wire.ContainerRequest) {
			a := *r.Account
			a.Groups = append([]wire.Group{}, append(a.Groups, wire.Group{GID: 5, Name: "x"})...)
			r.Account = &a
		}, false, false},
		{"writable", func(r *wire.ContainerRequest) { r.Writable = true }, false, true},
		{"save", func(r *wire.ContainerRequest) { r.Save = "/home/u/x.sqsh" }, false, true},
		{"entrypoint", func(r *wire.ContainerRequest) { r.Entrypoint = true }, false, true},
		{"named", func(r *wire.ContainerRequest) { r.Name, r.NameMode = "n", "auto" }, false, true},
		{"batch step", func(r *wire.ContainerRequest) { r.Step, r.Script = wire.BatchStep, "/s" }, false, true},
		{"extern step", func(r *wire.ContainerRequest) { r.Step = "4294967292" }, false, true},
		{"interactive step", func(r *wire.ContainerRequest) { r.Step = "4294967290" }, false, true},
	} {
		r := reuseBase()
		tc.edit(r)
		k := reuseKey(r)
		switch {
		case tc.none && k != "":
			t.Errorf("%s: reusable", tc.name)
		case tc.reuse && k != base:
			t.Errorf("%s: does not reuse", tc.name)
		case !tc.reuse && k == base:
			t.Errorf("%s: reuses", tc.name)
		}
	}
}

// Every field of a request counts unless reuseKey drops it by name: a field
// added to the request later keeps steps apart until someone decides it
// may differ.
func TestReuseKeyEveryField(t *testing.T) {
	t.Parallel()
	mayDiffer := map[string]bool{"Step": true, "Auth": true, "Command": true}
	typ := reflect.TypeOf(wire.ContainerRequest{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		r := reuseBase()
		r.Name = "" // a named request is never reusable: set below only
		if v := reflect.ValueOf(r).Elem().Field(i); f.Name == "Step" {
			r.Step = "41" // another regular step: "0x" is none
		} else {
			setOther(t, v)
		}
		k := reuseKey(r)
		if mayDiffer[f.Name] {
			if k != reuseKey(reuseBase()) {
				t.Errorf("%s: another value keeps steps apart", f.Name)
			}
			continue
		}
		if k == reuseKey(reuseBase()) {
			t.Errorf("%s: another value shares the container; make reuseKey count it, or say why it may differ", f.Name)
		}
	}
}

// setOther gives v a value other than reuseBase's.
func setOther(t *testing.T, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Uint32:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.ValueOf("NEW"), reflect.ValueOf("1"))
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if !v.IsNil() {
			p.Elem().Set(v.Elem())
		}
		first := p.Elem().Field(0)
		setOther(t, first)
		v.Set(p)
	default:
		t.Fatalf("field of kind %s: teach setOther", v.Kind())
	}
}

// The pmi module's step directories keep MPI steps apart: only patterns
// with %s, and only where one exists.
func TestReusePMIStepDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pats := pmiStepDirs([]hooks.Module{hooks.GPU{}, hooks.PMI{Dirs: []string{dir + "/pmix.%j.%s", dir + "/job.%j"}}})
	if len(pats) != 1 || pats[0] != dir+"/pmix.%j.%s" {
		t.Fatalf("patterns %q", pats)
	}
	if d := pmiStepDirs([]hooks.Module{hooks.PMI{}}); len(d) != 2 {
		t.Errorf("the default patterns: %q", d)
	}
	req := &wire.ContainerRequest{Job: "7", Step: "3", UID: 1000}
	if stepDirPresent(pats, req) {
		t.Error("a missing directory counts")
	}
	os.Mkdir(filepath.Join(dir, "pmix.7.3"), 0o755)
	if !stepDirPresent(pats, req) {
		t.Error("the step's directory does not count")
	}
	req.Step = "4"
	if stepDirPresent(pats, req) {
		t.Error("another step's directory counts")
	}
}

func TestImmutableRef(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]bool{
		"reg/img:1@sha256:ab": true, "reg/img:1": false, "/home/u/img.sqsh": false,
		"podman://img@sha256:ab": false, "img": false,
	} {
		if immutableRef(ref) != want {
			t.Errorf("%s: %v", ref, !want)
		}
	}
}

// Steps of one job and image share one container; another job, user or
// option, and a bind whose source changed, get their own; the kept one
// goes after reuse_idle, or with its job.
func TestReuseJoinLeaveIdle(t *testing.T) {
	m, _, _ := testManager(t)
	m.kept.idle = 300 * time.Millisecond
	ctx := context.Background()
	data := t.TempDir()
	mk := func(step string) *wire.ContainerRequest {
		return &wire.ContainerRequest{Job: "7", Step: step, UID: 4242, GID: 4242, Account: testAccount, Image: "test",
			Mounts: []wire.UserMount{{Src: data, Dst: "/data"}}}
	}
	first := mk("0")
	key := reuseKey(first)
	c, owned, err := m.forStep(ctx, first, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if !owned || !m.keep(c, key, jobIdentity{}) {
		t.Fatal("not kept")
	}
	second := mk("1")
	if j := m.join(ctx, second, reuseKey(second), jobIdentity{}, func(string) {}); j != c {
		t.Fatalf("step 1 joined %v, not step 0's container", j)
	}
	for name, r := range map[string]*wire.ContainerRequest{
		"another user": func() *wire.ContainerRequest { r := mk("2"); r.UID = 4243; return r }(),
		"another job":  func() *wire.ContainerRequest { r := mk("2"); r.Job = "8"; return r }(),
		"writable":     func() *wire.ContainerRequest { r := mk("2"); r.Writable = true; return r }(),
	} {
		if k := reuseKey(r); k != "" && m.join(ctx, r, k, jobIdentity{}, func(string) {}) != nil {
			t.Errorf("%s joined", name)
		}
	}
	// Another job of the same id (its cgroups made anew) does not join.
	if m.join(ctx, mk("2"), key, jobIdentity{Dirs: []string{"/sys/fs/cgroup/x/job_7"}}, func(string) {}) != nil {
		t.Error("a later job of the same id joined")
	}
	m.leave(ctx, c, "0")
	m.leave(ctx, c, "1")
	time.Sleep(100 * time.Millisecond)
	if m.containers[c.id] != c {
		t.Fatal("gone before reuse_idle")
	}
	// A step within reuse_idle joins, and restarts the wait at its end.
	if j := m.join(ctx, mk("3"), key, jobIdentity{}, func(string) {}); j != c {
		t.Fatal("step 3 did not join")
	}
	// JOBID.STEPID names the container a step runs in, while it runs.
	attach := func(step string) *container {
		r := mk("9")
		r.Name, r.NameMode = "7."+step, "exec"
		c, err := m.forStepOf(r)
		if err != nil {
			return nil
		}
		m.detach(c)
		return c
	}
	if f, err := m.find(4242, "7.3", ""); err != nil || f != c {
		t.Errorf("export of 7.3 finds %v, %v", f, err)
	}
	if _, err := m.find(4242, "7.0", ""); err == nil {
		t.Error("export of the ended 7.0 finds a container")
	}
	if attach("3") != c || attach("0") != nil {
		t.Errorf("7.3 (running in step 0's container) and 7.0 (ended) attach to %v and %v", attach("3"), attach("0"))
	}
	m.leave(ctx, c, "3")
	// The bind's source replaced: a fresh container would bind the new one.
	os.Rename(data, data+".old")
	os.Mkdir(data, 0o755)
	if m.join(ctx, mk("4"), key, jobIdentity{}, func(string) {}) != nil {
		t.Error("joined over a replaced bind source")
	}
	// No step can join it any more: it goes at once.
	waitGone(t, m, c, time.Second)

	// Kept again, then ended with its job before reuse_idle.
	m.kept.idle = time.Hour
	c, _, err = m.forStep(ctx, mk("5"), stepcgroup.Target{}, func(string) {})
	if err != nil || !m.keep(c, key, jobIdentity{}) {
		t.Fatal(err)
	}
	m.leave(ctx, c, "5")
	m.endKept("7")
	if removed, _ := m.endJob(ctx, "7"); removed != 1 || len(m.kept.byKey) != 0 {
		t.Errorf("the job's end removed %d, kept %d", removed, len(m.kept.byKey))
	}
}

// reuse_idle after its last step, a kept container goes.
func TestReuseIdleEnds(t *testing.T) {
	m, _, _ := testManager(t)
	m.kept.idle = 200 * time.Millisecond
	ctx := context.Background()
	req := &wire.ContainerRequest{Job: "9", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "test"}
	c, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
	if err != nil || !m.keep(c, reuseKey(req), jobIdentity{}) {
		t.Fatal(err)
	}
	m.leave(ctx, c, "0")
	waitGone(t, m, c, 3*time.Second)
	if len(m.kept.byKey) != 0 {
		t.Error("still findable")
	}
}

func waitGone(t *testing.T, m *manager, c *container, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		m.mu.Lock()
		gone := m.containers[c.id] != c
		m.mu.Unlock()
		if gone {
			if _, err := os.Stat(c.bundle); err == nil {
				time.Sleep(100 * time.Millisecond) // removal under way
			}
			return
		}
	}
	t.Fatalf("container %s still there after %v", c.id, within)
}
