package node

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// A destination is judged by where it leads in the image: a symlink there
// cannot carry a user's mount onto the root or the daemon's directory.
func TestCheckUserDestinations(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{".podman-hpc", "data", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"evil": "/.podman-hpc", "up": "../../..", "rootlink": "/", "lib": "usr/lib"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for dst, refused := range map[string]bool{
		"/data": false, "/new/dir": false, "/lib/x": false, "/lib": false,
		"/evil": true, "/evil/init": true, "/evil/new/deeper": true,
		"/up": true, "/rootlink": true, "/up/.podman-hpc": true, "/data/../evil": true,
	} {
		err := checkUserDestinations(root, []wire.UserMount{{Src: "/x", Dst: dst}})
		if (err != nil) != refused {
			t.Errorf("%s: err %v, want refused %v", dst, err, refused)
		}
		if err != nil && !strings.Contains(err.Error(), "pick another destination") {
			t.Errorf("%s: %v", dst, err)
		}
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	os.Symlink("/a", filepath.Join(root, "l"))
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for in, want := range map[string]string{"/": "/", "/a/b": "/a/b", "/l/b/c/d": "/a/b/c/d", "/x/y": "/x/y", "/l/../../l": "/a"} {
		if got, err := resolveInRoot(fd, in); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", in, got, err, want)
		}
	}
}

// The image may not lead one of the daemon's own mounts (its /tmp, the
// home) into the daemon's directory or onto the root through a symlink;
// a mount the daemon puts there on purpose is left alone.
func TestCheckImageDestinations(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, ".podman-hpc", "dev"), 0o755)
	os.Mkdir(filepath.Join(root, "proc"), 0o755)
	os.Symlink("/.podman-hpc", filepath.Join(root, "tmp"))
	os.Symlink("..", filepath.Join(root, "home"))
	for dst, refused := range map[string]bool{
		"/proc": false, "/.podman-hpc/dev/os-release": false, "/tmp": true, "/tmp/x": true, "/home": true,
	} {
		err := checkImageDestinations(root, []specs.Mount{{Destination: dst}})
		if (err != nil) != refused {
			t.Errorf("%s: %v, want refused %v", dst, err, refused)
		}
	}
}

// submounts picks a stage's own submounts, parents first, from one listing
// of every stage's (deepest first), and not a neighbour's whose name
// starts alike.
func TestSubmounts(t *testing.T) {
	t.Parallel()
	// MountsUnder's order: the reverse of mount order.
	all := []string{
		"/b/mounts/10/x",
		"/b/mounts/10",
		"/b/mounts/1/a/b",
		"/b/mounts/1/a",
		"/b/mounts/1/c",
		"/b/mounts/1",
		"/b/mounts/0",
	}
	for _, tc := range []struct {
		stage string
		want  []string
	}{
		{"/b/mounts/1", []string{"/b/mounts/1/c", "/b/mounts/1/a", "/b/mounts/1/a/b"}},
		{"/b/mounts/10", []string{"/b/mounts/10/x"}},
		{"/b/mounts/0", nil},
	} {
		if got := submounts(all, tc.stage); !slices.Equal(got, tc.want) {
			t.Errorf("submounts(%s) = %q, want %q", tc.stage, got, tc.want)
		}
	}
}
