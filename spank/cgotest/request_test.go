package cgotest

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// decode reads a frame the C side encoded as the daemon does.
func decode(t *testing.T, frame []byte) (*wire.Message, *wire.ContainerRequest) {
	t.Helper()
	m, err := wire.Read(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("Go cannot read the C request: %v", err)
	}
	if m.Type != wire.Container {
		t.Fatalf("type %d", m.Type)
	}
	r, err := wire.ParseContainerRequest(m)
	if err != nil {
		t.Fatalf("the daemon refuses the plugin's request: %v\n%+v", err, m.Fields)
	}
	return m, r
}

// Every field and mode the plugin encodes (spank/request.c) reaches the
// daemon (pkg/wire) as meant.
func TestRequestCToGo(t *testing.T) {
	t.Parallel()
	base := func() Request {
		return Request{Job: 42, Step: 3, UID: 1000, GID: 100, PluginVersion: "1.2-test",
			Options: []Option{{"image", "registry.example.org#app:1.2"}}, MountHome: -1, Entrypoint: -1, Remap: -1}
	}
	for _, tc := range []struct {
		name string
		edit func(*Request)
		want func(*wire.ContainerRequest)
	}{
		{"defaults", func(r *Request) {}, func(w *wire.ContainerRequest) { w.MountHome = true }},
		{"admin defaults", func(r *Request) {
			r.Config = []string{"container_mount_home=0", "container_writable=1", "execute_entrypoint=1"}
		}, func(w *wire.ContainerRequest) { w.Writable, w.Entrypoint = true, true }},
		{"every option", func(r *Request) {
			r.Options = append(r.Options, Option{"workdir", "/work"}, Option{"mounts", "/a:/b:ro+nosuid,/c,/d:/e"},
				Option{"writable", ""}, Option{"unshare", "net,ipc,uts"}, Option{"hooks", "mpi,no-gpu"},
				Option{"save", "/out/x.sqsh"})
			r.MountHome, r.Entrypoint, r.Remap, r.EntrypointLog, r.Saves = 0, 1, 1, true, true
			r.Command, r.Auth = "/usr/bin/hostname", `{"auths":{}}`
			r.JobEnv = []string{"SLURM_STEP_GPUS=0,1", "PMIX_SERVER_TMPDIR=/var/spool/slurmd/pmix.42.3"}
		}, func(w *wire.ContainerRequest) {
			w.Workdir, w.Writable, w.Entrypoint, w.EntrypointLog, w.RemapRoot = "/work", true, true, true, true
			w.Mounts = []wire.UserMount{{Src: "/a", Dst: "/b", Options: []string{"ro", "nosuid"}}, {Src: "/c", Dst: "/c"}, {Src: "/d", Dst: "/e"}}
			w.Unshare = []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace}
			w.Hooks, w.Save, w.Command, w.Auth = "mpi,no-gpu", "/out/x.sqsh", "/usr/bin/hostname", []byte(`{"auths":{}}`)
			w.Env = map[string]string{"SLURM_STEP_GPUS": "0,1", "PMIX_SERVER_TMPDIR": "/var/spool/slurmd/pmix.42.3"}
		}},
		{"save on another node", func(r *Request) {
			r.Options = append(r.Options, Option{"save", "/out/x.sqsh"})
		}, func(w *wire.ContainerRequest) { w.MountHome = true }},
		{"batch script", func(r *Request) { r.Step, r.Command = BatchStep, "/home/u/job.sh" }, func(w *wire.ContainerRequest) {
			w.Step, w.Command, w.Script, w.MountHome = wire.BatchStep, "/home/u/job.sh", "/home/u/job.sh", true
		}},
		{"named, global scope, no image", func(r *Request) {
			r.Options, r.Config = []Option{{"name", "data:exec"}}, []string{"container_scope=global"}
		}, func(w *wire.ContainerRequest) {
			w.Image, w.Name, w.NameMode, w.Scope, w.MountHome = "", "data", "exec", "global", true
		}},
	} {
		r := base()
		tc.edit(&r)
		frame, err := EncodeRequest(r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, got := decode(t, frame)
		want := &wire.ContainerRequest{Job: "42", Step: "3", UID: 1000, GID: 100, Image: "registry.example.org#app:1.2",
			PluginVersion: "1.2-test", Env: map[string]string{}}
		tc.want(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, want)
		}
	}
}

// Each name mode the plugin accepts, with its default, is one the daemon
// takes, scoped as the admin says.
func TestRequestNameModes(t *testing.T) {
	t.Parallel()
	for _, opt := range []string{"n", "n:auto", "n:create", "n:exec", "n:no_exec"} {
		for _, scope := range []string{"job", "global"} {
			r := Request{Job: 1, UID: 1, GID: 1, PluginVersion: "v", MountHome: -1, Entrypoint: -1, Remap: -1,
				Options: []Option{{"name", opt}}, Config: []string{"container_scope=" + scope}}
			frame, err := EncodeRequest(r)
			if err != nil {
				t.Fatalf("%s: %v", opt, err)
			}
			_, got := decode(t, frame)
			mode := "auto"
			if len(opt) > 2 {
				mode = opt[2:]
			}
			if got.Name != "n" || got.NameMode != mode || got.Scope != scope {
				t.Errorf("%s (%s): name %q mode %q scope %q", opt, scope, got.Name, got.NameMode, got.Scope)
			}
		}
	}
}

// The keys the C side writes, in order, are pkg/wire's RequestKeys.
func TestRequestKeys(t *testing.T) {
	t.Parallel()
	frame, err := EncodeRequest(Request{Job: 1, Step: BatchStep, UID: 1, GID: 1, PluginVersion: "v",
		Options: []Option{{"image", "x"}, {"workdir", "/w"}, {"mounts", "/a:/b,/c"}, {"name", "n:create"},
			{"unshare", "net"}, {"save", "/s"}, {"hooks", "mpi"}},
		MountHome: 1, Entrypoint: 1, Remap: 1, EntrypointLog: true, Saves: true,
		Command: "/job.sh", JobEnv: []string{"A=1", "B=2"}, Auth: "{}", Account: true})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := decode(t, frame)
	var keys []string
	for _, f := range m.Fields {
		if !slices.Contains(keys, f.Key) {
			keys = append(keys, f.Key)
		}
	}
	if !reflect.DeepEqual(keys, wire.RequestKeys) {
		t.Errorf("C writes the keys\n%q\npkg/wire knows\n%q", keys, wire.RequestKeys)
	}
}

// The vocabulary both sides keep: what the plugin accepts is what the
// daemon accepts, and both look for credentials in the same places.
func TestSharedConstants(t *testing.T) {
	t.Parallel()
	if got, want := slices.Sorted(slices.Values(MountFlags())), slices.Sorted(maps.Keys(wire.MountFlags)); !reflect.DeepEqual(got, want) {
		t.Errorf("mount flags: C %q, Go %q", got, want)
	}
	if got := TmpfsFlags(); !reflect.DeepEqual(got, wire.TmpfsFlags) {
		t.Errorf("tmpfs flags: C %q, Go %q", got, wire.TmpfsFlags)
	}
	if PhpcTmpfsSource != wire.TmpfsSource || PhpcUmountSource != wire.UmountSource {
		t.Errorf("special sources: C %q %q, Go %q %q", PhpcTmpfsSource, PhpcUmountSource, wire.TmpfsSource, wire.UmountSource)
	}
	if got := NameModes(); !reflect.DeepEqual(got, wire.NameModes) {
		t.Errorf("name modes: C %q, Go %q", got, wire.NameModes)
	}
	if got := UnshareNamespaces(); !reflect.DeepEqual(got, wire.UnshareNamespaces) {
		t.Errorf("unshare namespaces: C %q, Go %q", got, wire.UnshareNamespaces)
	}
	var goAuth [][2]string
	for _, a := range wire.AuthFiles {
		goAuth = append(goAuth, [2]string{a.Var, a.Suffix})
	}
	if got := AuthFiles(); !reflect.DeepEqual(got, goAuth) {
		t.Errorf("auth files: C %q, Go %q", got, goAuth)
	}
	if got := strconv.FormatUint(uint64(BatchStep), 10); BatchStep != 0xfffffffb || got != wire.BatchStep {
		t.Errorf("batch step: C %s, Go %s", got, wire.BatchStep)
	}
	if DefaultSocket() != config.DefaultSocket {
		t.Errorf("socket: plugin %s, daemon %s", DefaultSocket(), config.DefaultSocket)
	}
}

// The job user and their groups by name, through this machine's NSS (here:
// /etc/passwd's root and daemon), decoded as the daemon reads them; a uid
// NSS does not know sends no account (the daemon then looks it up itself).
func TestRequestAccount(t *testing.T) {
	t.Parallel()
	frame, err := EncodeRequest(Request{Job: 1, Step: 0, UID: 0, GID: 0, PluginVersion: "v",
		Options: []Option{{"image", "x"}}, Account: true, SupGIDs: []uint32{1, 0, 4294967000}})
	if err != nil {
		t.Fatal(err)
	}
	_, req := decode(t, frame)
	want := &wire.Account{Name: "root", Home: "/root", Shell: req.Account.Shell,
		Groups: []wire.Group{{GID: 0, Name: "root"}, {GID: 1, Name: "daemon"}, {GID: 4294967000}}}
	if !reflect.DeepEqual(req.Account, want) || req.Account.Shell == "" {
		t.Errorf("account %+v, want %+v", req.Account, want)
	}
	frame, err = EncodeRequest(Request{Job: 1, Step: 0, UID: 4294967000, GID: 4294967000, PluginVersion: "v",
		Options: []Option{{"image", "x"}}, Account: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, req := decode(t, frame); req.Account != nil {
		t.Errorf("an unknown uid sent an account: %+v", req.Account)
	}
}
