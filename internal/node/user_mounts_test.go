package node

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func parseMounts(t *testing.T, entries ...string) []wire.UserMount {
	t.Helper()
	var out []wire.UserMount
	for _, e := range entries {
		um, err := wire.ParseUserMount(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, um)
	}
	return out
}

// The user's tmpfs mounts go among their binds in the order given (a bind
// under a tmpfs needs it first), after the home, before the others;
// umount entries mount nothing.
func TestInUserOrder(t *testing.T) {
	t.Parallel()
	mounts := parseMounts(t, "/a:/x", "tmpfs:/t:size=1m", "umount:/home/u", "/b:/t/b")
	bind := func(dst string) specs.Mount { return specs.Mount{Destination: dst, Type: "bind"} }
	staged := []specs.Mount{bind("/home/u"), bind("/x"), bind("/t/b"), bind("/script")}
	var got []string
	for _, m := range inUserOrder(staged, true, mounts, 1000, 1000, false) {
		got = append(got, m.Type+":"+m.Destination)
	}
	want := []string{"bind:/home/u", "bind:/x", "tmpfs:/t", "bind:/t/b", "bind:/script"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if got := umounted(mounts); !reflect.DeepEqual(got, map[string]bool{"/home/u": true}) {
		t.Errorf("umounted %v", got)
	}
}

// A tmpfs is the job user's (root of its user namespace when remapped),
// nosuid,nodev, with the user's options last.
func TestTmpfsMount(t *testing.T) {
	t.Parallel()
	um := parseMounts(t, "tmpfs:/s:mode=1777+size=1g")[0]
	want := []string{"nosuid", "nodev", "mode=755", "uid=1000", "gid=100", "mode=1777", "size=1g"}
	if m := tmpfsMount(um, 1000, 100, false); m.Type != "tmpfs" || m.Destination != "/s" || !reflect.DeepEqual(m.Options, want) {
		t.Errorf("got %+v", m)
	}
	if m := tmpfsMount(um, 1000, 100, true); m.Options[3] != "uid=0" || m.Options[4] != "gid=0" {
		t.Errorf("remapped: %+v", m)
	}
}

func TestPropagation(t *testing.T) {
	t.Parallel()
	got := propagation(parseMounts(t, "/a:/x:ro+unbindable", "/b:/y:ro", "tmpfs:/t", "/c:/z:rslave+rshared"))
	want := []oci.Propagation{{Dst: "/x", Options: []string{"unbindable"}}, {Dst: "/z", Options: []string{"rslave", "rshared"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestIgnoredWhenAttaching(t *testing.T) {
	t.Parallel()
	made := &wire.ContainerRequest{Image: "a", RemapRoot: true}
	step := &wire.ContainerRequest{Image: "b", Mounts: parseMounts(t, "/x:/y"), RemapRoot: true, Entrypoint: true}
	want := []string{"--container-mounts", "--container-image=b", "--container-entrypoint"}
	if got := ignoredWhenAttaching(step, made); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := ignoredWhenAttaching(&wire.ContainerRequest{Image: "a"}, made); len(got) != 0 {
		t.Errorf("nothing to ignore: %q", got)
	}
}
