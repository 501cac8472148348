package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// fakeNode stands in for internal/node: it records what the server asks
// and answers as set up. No root, no runtime.
type fakeNode struct {
	mu      sync.Mutex
	calls   []string
	stepErr error
	panics  bool // Step panics
	step    *node.Step
	list    []node.Container
	rmErr   error
	saveErr error
	ended   chan string // End's step ids
	notes   []string    // Notes' answer
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	ns, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return &fakeNode{
		step: &node.Step{ID: "phpc-5-0", Digest: "sha256:feed", Workdir: "/work", Env: []string{"A=1", "B=2"},
			Namespaces: []*os.File{ns}, NamespaceNames: []string{"mnt"}},
		ended: make(chan string, 4),
	}
}

func (f *fakeNode) record(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

// called returns the calls so far.
func (f *fakeNode) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeNode) Step(ctx context.Context, req *wire.ContainerRequest, stepd stepcgroup.Proc, progress func(string)) (*node.Step, error) {
	f.record("Step job=%s step=%s uid=%d image=%s", req.Job, req.Step, req.UID, req.Image)
	if f.panics {
		panic("step")
	}
	if f.stepErr != nil {
		return nil, f.stepErr
	}
	progress("pulling " + req.Image)
	return f.step, nil
}

func (f *fakeNode) Save(ctx context.Context, s *node.Step) error {
	f.record("Save %s", s.ID)
	return f.saveErr
}

func (f *fakeNode) End(ctx context.Context, s *node.Step) {
	f.record("End %s", s.ID)
	f.ended <- s.ID
}

func (f *fakeNode) Notes(s *node.Step) []string {
	f.record("Notes %s", s.ID)
	return f.notes
}

func (f *fakeNode) Containers() []node.Container { return f.list }

func (f *fakeNode) EndJob(ctx context.Context, job string) (int, int) {
	f.record("EndJob %s", job)
	return 2, 0
}

func (f *fakeNode) RemoveGlobal(ctx context.Context, uid uint32, name string) (int, error) {
	f.record("RemoveGlobal uid=%d name=%s", uid, name)
	return 1, f.rmErr
}

func (f *fakeNode) Pull(ctx context.Context, ref string, r node.PullRequest) (*store.Image, error) {
	f.record("Pull %s uid=%d", ref, r.UID)
	return nil, fmt.Errorf("pull %s: manifest unknown", ref)
}

func (f *fakeNode) PinForJob(ctx context.Context, job, ref string, r node.PullRequest) (string, error) {
	f.record("PinForJob job=%s %s uid=%d", job, ref, r.UID)
	return ref + "@sha256:" + strings.Repeat("a", 64), nil
}

func (f *fakeNode) Images(uid uint32) []store.Image { return nil }

func (f *fakeNode) RemoveImage(ref string, uid uint32) error {
	f.record("RemoveImage %s uid=%d", ref, uid)
	return fmt.Errorf("%s: no such image of yours on this node", ref)
}

func (f *fakeNode) Prune(ctx context.Context, all bool, uid uint32) ([]store.Image, error) {
	f.record("Prune all=%v uid=%d", all, uid)
	return nil, nil
}

func (f *fakeNode) Import(ctx context.Context, ref string, pr node.PullRequest, r node.FileRequest) (*store.Image, error) {
	f.record("Import %s uid=%d home=%s out=%s force=%v", ref, pr.UID, pr.Home, r.Out, r.Force)
	return &store.Image{Digest: "sha256:feed"}, nil
}

func (f *fakeNode) Export(ctx context.Context, name, job string, r node.FileRequest) (string, error) {
	f.record("Export %s job=%s uid=%d out=%s", name, job, r.UID, r.Out)
	return "phpc-5-0", nil
}

// serveFake serves f to peers that the server sees as uid.
func serveFake(t *testing.T, f *fakeNode, uid uint32, version string) string {
	t.Helper()
	return startServerWith(t, func(s *Server) {
		asUID(uid)(s)
		s.containers, s.images, s.version = f, f, version
	})
}

// ask sends m on a new connection and returns the replies up to the final
// one (OK or Error), progress lines first.
func ask(t *testing.T, sock string, m *wire.Message) (*wire.Message, []string) {
	t.Helper()
	return askOn(t, dial(t, sock), m)
}

func askOn(t *testing.T, c *net.UnixConn, m *wire.Message) (*wire.Message, []string) {
	t.Helper()
	if err := wire.Write(c, m); err != nil {
		t.Fatal(err)
	}
	var progress []string
	for {
		r, err := wire.Read(c)
		if err != nil {
			t.Fatalf("%v request: no reply: %v", m.Type, err)
		}
		msg, _ := r.Get("message")
		if r.Type != wire.Progress {
			return r, progress
		}
		progress = append(progress, msg)
	}
}

func containerRequest(kv ...string) *wire.Message {
	return wire.New(wire.Container, append([]string{"job", "5", "step", "0", "uid", "1000", "gid", "1000", "image", "app:1"}, kv...)...)
}

func wantError(t *testing.T, what string, r *wire.Message, want string) {
	t.Helper()
	msg, _ := r.Get("message")
	if r.Type != wire.Error || msg != want {
		t.Errorf("%s: %v %q, want the error %q", what, r.Type, msg, want)
	}
}

// Only root (slurmstepd) gets a container: a user's request is refused,
// and the node is not asked.
func TestContainerRefusedToUsers(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	r, _ := ask(t, serveFake(t, f, 1000, "v1"), containerRequest())
	wantError(t, "a user's CONTAINER", r, "only slurmstepd may request a container; use srun --container-image")
	if c := f.called(); len(c) != 0 {
		t.Errorf("the node was asked %q", c)
	}
}

// A panic while a container is made closes the connection: slurmstepd,
// which waits for the answer, sees the end at once (the hangup watch's copy
// of the socket once kept it open, and the step hung).
func TestContainerPanicClosesTheConnection(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	f.panics = true
	c := dial(t, serveFake(t, f, 0, "v1"))
	if err := wire.Write(c, containerRequest()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if m, err := wire.Read(c); !errors.Is(err, io.EOF) {
		t.Fatalf("after the panic: %+v, %v; want the connection closed", m, err)
	}
}

// Root's request gets the step's container: progress, then what the tasks
// need; the container goes when the connection closes.
func TestContainerForRoot(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	c := dial(t, serveFake(t, f, 0, "v1"))
	r, progress := askOn(t, c, containerRequest("plugin_version", "v1", "workdir", "/mine"))
	if r.Type != wire.OK {
		t.Fatalf("reply %+v", r)
	}
	if !reflect.DeepEqual(progress, []string{"pulling app:1"}) {
		t.Errorf("progress %q", progress)
	}
	id, _ := r.Get("container")
	wd, _ := r.Get("workdir")
	if id != "phpc-5-0" || wd != "/work" || !reflect.DeepEqual(r.All("env"), []string{"A=1", "B=2"}) || !reflect.DeepEqual(r.All("ns"), []string{"mnt"}) {
		t.Errorf("reply %+v", r)
	}
	if got := f.called(); !reflect.DeepEqual(got, []string{"Step job=5 step=0 uid=1000 image=app:1"}) {
		t.Errorf("calls %q", got)
	}
	c.Close()
	select {
	case id := <-f.ended:
		if id != "phpc-5-0" {
			t.Errorf("ended %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step's container was not ended when its connection closed")
	}
}

// A plugin of another version is named in one line to the user.
func TestPluginVersionMismatch(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	sock := serveFake(t, f, 0, "v2")
	r, progress := ask(t, sock, containerRequest("plugin_version", "v1"))
	host, _ := os.Hostname()
	want := host + ": note: the plugin is version v1 and podman-hpcd v2; ask your admin to install one version on every node"
	if r.Type != wire.OK || len(progress) != 2 || progress[0] != want {
		t.Errorf("reply %v, progress %q; want first %q", r.Type, progress, want)
	}
	if _, progress := ask(t, sock, containerRequest("plugin_version", "v2")); len(progress) != 1 {
		t.Errorf("same version: progress %q", progress)
	}
}

// The node's errors reach srun: those about an option, a hook or the
// image's import as they are, any other as about the image; a bad request is refused before the
// node is asked.
func TestContainerErrorsReachTheClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{wire.OptionErrorf("--container-mounts", "/x: permission denied (as user bob)"), "--container-mounts: /x: permission denied (as user bob)"},
		{&node.HookError{Err: errors.New("gpu: this node has no GPU; drop it with --container-hooks=no-gpu")}, "gpu: this node has no GPU; drop it with --container-hooks=no-gpu"},
		{&node.ImportError{Image: "app:1", Err: errors.New("manifest unknown")}, "failed to import docker image: app:1: manifest unknown"},
		{errors.New("pull app:1: manifest unknown"), "--container-image=app:1: pull app:1: manifest unknown"},
		{fmt.Errorf("start container: %w", errors.New("exit 1")), "--container-image=app:1: start container: exit 1"},
	} {
		f := newFakeNode(t)
		f.stepErr = tc.err
		r, _ := ask(t, serveFake(t, f, 0, "v1"), containerRequest())
		wantError(t, tc.err.Error(), r, tc.want)
	}
	f := newFakeNode(t)
	r, _ := ask(t, serveFake(t, f, 0, "v1"), containerRequest("unshare", "pid"))
	wantError(t, "bad unshare", r, `--container-unshare: unknown namespace "pid" (want net, ipc, uts)`)
	if c := f.called(); len(c) != 0 {
		t.Errorf("the node was asked %q for a bad request", c)
	}
}

// Users may not end a job's containers; root may.
func TestRmJobNeedsRoot(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	r, _ := ask(t, serveFake(t, f, 1000, "v1"), wire.New(wire.Rm, "job", "5"))
	wantError(t, "a user's rm --job", r, "only root may remove containers; they go when their step ends")
	if c := f.called(); len(c) != 0 {
		t.Errorf("the node was asked %q", c)
	}
	f = newFakeNode(t)
	r, _ = ask(t, serveFake(t, f, 0, "v1"), wire.New(wire.Rm, "job", "5"))
	if n, _ := r.Get("removed"); r.Type != wire.OK || n != "2" || !reflect.DeepEqual(f.called(), []string{"EndJob 5"}) {
		t.Errorf("root's rm --job: %+v, calls %q", r, f.called())
	}
}

// A user sees only their own containers; root sees all, parked ones marked.
func TestPsShowsOwnContainers(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	now := time.Now()
	f.list = []node.Container{
		{ID: "phpc-5-0", Job: "5", Step: "0", UID: 1000, Image: "app:1", Created: now},
		{ID: "phpc-6-n-data", Name: "data", Job: "6", Step: "1", UID: 1001, Image: "db:2", Created: now},
		{ID: "phpc-u1000-n-keep", Name: "keep", Parked: true, Job: "4", Step: "0", UID: 1000, Image: "app:1", Created: now},
	}
	ids := func(r *wire.Message) []string {
		var out []string
		for _, row := range r.All("row") {
			out = append(out, strings.Join(strings.Split(row, "\t")[:2], " "))
		}
		return out
	}
	r, _ := ask(t, serveFake(t, f, 1000, "v1"), wire.New(wire.Ps))
	if want := []string{"phpc-5-0 -", "phpc-u1000-n-keep keep (parked: no process, filesystem kept)"}; !reflect.DeepEqual(ids(r), want) {
		t.Errorf("user 1000's ps: %q, want %q", ids(r), want)
	}
	r, _ = ask(t, serveFake(t, f, 0, "v1"), wire.New(wire.Ps))
	if got := ids(r); len(got) != 3 || got[1] != "phpc-6-n-data data" {
		t.Errorf("root's ps: %q", got)
	}
}

// rm --name removes the caller's own global container: a user's --uid is
// ignored, root's is used; the node's refusal reaches the client.
func TestRemoveGlobalOwnUID(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	r, _ := ask(t, serveFake(t, f, 1000, "v1"), wire.New(wire.Rm, "name", "keep", "uid", "1001"))
	if n, _ := r.Get("removed"); r.Type != wire.OK || n != "1" {
		t.Errorf("reply %+v", r)
	}
	f2 := newFakeNode(t)
	ask(t, serveFake(t, f2, 0, "v1"), wire.New(wire.Rm, "name", "keep", "uid", "1001"))
	if got := append(f.called(), f2.called()...); !reflect.DeepEqual(got, []string{"RemoveGlobal uid=1000 name=keep", "RemoveGlobal uid=1001 name=keep"}) {
		t.Errorf("calls %q", got)
	}
	f = newFakeNode(t)
	f.rmErr = errors.New("a running job uses it; it can go once that job has ended")
	sock := serveFake(t, f, 1000, "v1")
	r, _ = ask(t, sock, wire.New(wire.Rm, "name", "keep"))
	wantError(t, "busy", r, "rm --name keep: a running job uses it; it can go once that job has ended")
	r, _ = ask(t, sock, wire.New(wire.Rm, "name", "../etc"))
	wantError(t, "bad name", r, `rm --name "../etc": not a container name`)
}

// The image requests act for the caller's uid, and their errors reach the
// client.
func TestImageRequestsAsCaller(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	sock := serveFake(t, f, 1000, "v1")
	r, _ := ask(t, sock, wire.New(wire.Rmi, "ref", "app:1"))
	wantError(t, "rmi", r, "app:1: no such image of yours on this node")
	r, _ = ask(t, sock, wire.New(wire.Pull, "ref", "app:9"))
	wantError(t, "pull", r, "pull app:9: manifest unknown")
	if r, _ = ask(t, sock, wire.New(wire.Prune, "all", "1")); r.Type != wire.OK {
		t.Errorf("prune: %+v", r)
	}
	r, _ = ask(t, sock, wire.New(wire.Pull, "ref", "app:2", "resolve", "1", "job", "77"))
	if p, _ := r.Get("pinned"); r.Type != wire.OK || p != "app:2@sha256:"+strings.Repeat("a", 64) {
		t.Errorf("resolve: %+v", r)
	}
	if want := []string{"RemoveImage app:1 uid=1000", "Pull app:9 uid=1000", "Prune all=true uid=1000", "PinForJob job=77 app:2 uid=1000"}; !reflect.DeepEqual(f.called(), want) {
		t.Errorf("calls %q, want %q", f.called(), want)
	}
}

// import and export act for the caller, to an absolute path only, and
// export takes container names only.
func TestImportExportAsCaller(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	sock := serveFake(t, f, 1000, "v1")
	r, _ := ask(t, sock, wire.New(wire.Import, "ref", "podman://app:1", "out", "/home/u/a.sqsh", "home", "/home/u", "force", "1"))
	if out, _ := r.Get("out"); r.Type != wire.OK || out != "/home/u/a.sqsh" {
		t.Errorf("import: %+v", r)
	}
	r, _ = ask(t, sock, wire.New(wire.Export, "name", "work", "job", "7", "out", "/home/u/w.sqsh"))
	if r.Type != wire.OK {
		t.Errorf("export: %+v", r)
	}
	r, _ = ask(t, sock, wire.New(wire.Import, "ref", "app:1", "out", "a.sqsh"))
	wantError(t, "relative -o", r, `import: -o "a.sqsh": not an absolute path`)
	r, _ = ask(t, sock, wire.New(wire.Export, "name", "../x", "out", "/tmp/x"))
	wantError(t, "bad name", r, `export "../x": not a container name`)
	want := []string{"Import podman://app:1 uid=1000 home=/home/u out=/home/u/a.sqsh force=true", "Export work job=7 uid=1000 out=/home/u/w.sqsh"}
	if !reflect.DeepEqual(f.called(), want) {
		t.Errorf("calls %q, want %q", f.called(), want)
	}
}

// Only root (the job prolog) prefetches for a user; the pull runs for that
// user, in the background.
func TestPrefetch(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	r, _ := ask(t, serveFake(t, f, 1000, "v1"), wire.New(wire.Pull, "ref", "app:1", "prefetch", "1", "uid", "1001", "gid", "1001"))
	wantError(t, "user", r, "only the job prolog (root) may prefetch for a job; use podman-hpcd pull")
	sock := serveFake(t, f, 0, "v1")
	r, _ = ask(t, sock, wire.New(wire.Pull, "ref", "app:1", "prefetch", "1", "uid", "x"))
	wantError(t, "bad uid", r, "prefetch: needs ref, uid and gid")
	if r, _ = ask(t, sock, wire.New(wire.Pull, "ref", "app:1", "prefetch", "1", "uid", "1001", "gid", "1001", "job", "5")); r.Type != wire.OK {
		t.Fatalf("prefetch: %+v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !reflect.DeepEqual(f.called(), []string{"Pull app:1 uid=1001"}) {
		if time.Now().After(deadline) {
			t.Fatalf("calls %q", f.called())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A node without an image cache or containers says why.
func TestNodeUnavailable(t *testing.T) {
	t.Parallel()
	sock := startServerWith(t, asUID(0))
	host, _ := os.Hostname()
	r, _ := ask(t, sock, wire.New(wire.Images))
	wantError(t, "images", r, "podman-hpcd on "+host+" has no image cache: test")
	r, _ = ask(t, sock, containerRequest())
	wantError(t, "container", r, "podman-hpcd on "+host+" cannot run containers: test")
	if r, _ = ask(t, sock, wire.New(wire.Rm, "job", "5")); r.Type != wire.OK {
		t.Errorf("rm --job: %+v", r)
	}
}
