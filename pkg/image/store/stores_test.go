package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// fakeDocker serves Docker's GET /images/get from a docker-archive, for
// the names it has, on a Unix socket of the given mode; it records what
// was asked.
type fakeDocker struct {
	socket  string
	archive string
	have    string
	mu      sync.Mutex
	asked   []string
}

func newFakeDocker(t *testing.T, mode os.FileMode, have, archive string) *fakeDocker {
	t.Helper()
	d := &fakeDocker{socket: filepath.Join(publicDir(t, 0o755), "docker.sock"), archive: archive, have: have}
	l, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.socket, mode); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("names")
		d.mu.Lock()
		d.asked = append(d.asked, r.Method+" "+r.URL.Path+" "+name)
		d.mu.Unlock()
		if r.URL.Path != "/images/get" || name != d.have {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"reference does not exist"}`)
			return
		}
		http.ServeFile(w, r, d.archive)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d
}

func TestGetDockerd(t *testing.T) {
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	im := newTestImage(t, baseConfig, baseLayers()...)
	archive := filepath.Join(publicDir(t, 0o755), "docker.tar")
	writeDockerArchive(t, im, "example.org/app:1", archive)
	open := newFakeDocker(t, 0o666, "example.org/app:1", archive)
	closed := newFakeDocker(t, 0o600, "example.org/app:1", archive) // root's only
	user := PullOptions{UID: nobody, GID: nobody}

	c := openTestCache(t, nil, func(o *Options) { o.DockerSocket = open.socket })
	img, err := c.Get(context.Background(), "dockerd://example.org/app:1", user)
	if err != nil {
		t.Fatal(err)
	}
	if list := listing(t, img.Path); !strings.Contains(list, "/opt/new") {
		t.Errorf("wrong content:\n%s", list)
	}
	if img.Config.WorkingDir != "/opt" {
		t.Errorf("config %+v", img.Config)
	}
	if fmt.Sprint(open.asked) != "[GET /images/get example.org/app:1]" {
		t.Errorf("the Docker daemon was asked %q", open.asked)
	}

	ref := "dockerd://example.org/other:1"
	_, err = c.Get(context.Background(), ref, user)
	if !errors.Is(err, image.ErrNoImage) {
		t.Fatalf("%v; want image.ErrNoImage", err)
	}
	assertOneLine(t, err, ref, "reference does not exist", "docker images")

	// A socket the user may not connect to is not used for them, though
	// root (the daemon) could.
	c2 := openTestCache(t, nil, func(o *Options) { o.DockerSocket = closed.socket })
	ref = "dockerd://example.org/app:1"
	_, err = c2.Get(context.Background(), ref, user)
	if !errors.Is(err, image.ErrPermission) {
		t.Fatalf("%v; want image.ErrPermission", err)
	}
	assertOneLine(t, err, ref, "may not use the node's Docker daemon", "docker group")
	if len(closed.asked) != 0 {
		t.Errorf("the Docker daemon was asked %q for a user who may not", closed.asked)
	}

	c3 := openTestCache(t, nil, func(o *Options) { o.DockerSocket = filepath.Join(publicDir(t, 0o755), "none.sock") })
	_, err = c3.Get(context.Background(), ref, user)
	if !errors.Is(err, image.ErrUnsupported) {
		t.Fatalf("%v; want image.ErrUnsupported", err)
	}
	assertOneLine(t, err, ref, "no Docker daemon on this node")
}

// TestGetPodman runs a stand-in for podman, which checks how it is run
// (as the user, with their HOME, in a PID namespace of its own) and plays
// `podman save`, leaving a process behind as rootless podman does.
func TestGetPodman(t *testing.T) {
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	im := newTestImage(t, baseConfig, baseLayers()...)
	dir := publicDir(t, 0o755)
	archive := filepath.Join(dir, "docker.tar")
	writeDockerArchive(t, im, "localhost/app:1", archive)
	home := publicDir(t, 0o755)
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	podman := filepath.Join(dir, "podman")
	// nobody has no subordinate ids: the namespace maps nobody alone.
	script := fmt.Sprintf(`#!/bin/sh
[ "$(id -u):$(id -G)" = "0:0" ] || { echo "Error: run as $(id -u), groups $(id -G)" >&2; exit 1; }
[ "$(cat /proc/self/uid_map | tr -s ' ')" = " 0 %d 1" ] || { echo "Error: uid_map $(cat /proc/self/uid_map)" >&2; exit 1; }
[ "$(cat /proc/self/gid_map | tr -s ' ')" = " 0 %d 1" ] || { echo "Error: gid_map $(cat /proc/self/gid_map)" >&2; exit 1; }
[ "$HOME:$_CONTAINERS_USERNS_CONFIGURED:$_CONTAINERS_ROOTLESS_UID" = "%s:1:%d" ] || { echo "Error: env $(env)" >&2; exit 1; }
tr '\0' ' ' </proc/1/cmdline | grep -q '^podman-hpc-podman-save ' || { echo "Error: not in a PID namespace of its own" >&2; exit 1; }
case "$*" in
"save --quiet --format docker-archive -- "localhost/app:1|*app|*7eb6cdf5003d) ;;
*) echo "Error: localhost/x: image not known" >&2; exit 125 ;;
esac
(setsid sleep 1000 </dev/null >/dev/null 2>&1 &)
cat %s
`, nobody, nobody, home, nobody, archive)
	if err := os.WriteFile(podman, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := openTestCache(t, nil, func(o *Options) { o.Podman = podman })
	user := PullOptions{UID: nobody, GID: nobody, Home: home}
	img, err := c.Get(context.Background(), "podman://localhost/app:1", user)
	if err != nil {
		t.Fatal(err)
	}
	if list := listing(t, img.Path); !strings.Contains(list, "/opt/new") {
		t.Errorf("wrong content:\n%s", list)
	}
	// The archive is podman's tag for what was named: a short name and
	// an id find it too.
	for _, ref := range []string{"podman://app", "podman://7eb6cdf5003d"} {
		if _, err := c.Get(context.Background(), ref, user); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if out, _ := imagetest.RunCmd("pgrep", "-u", fmt.Sprint(nobody), "-x", "-f", "sleep 1000"); strings.TrimSpace(out) != "" {
		t.Errorf("what podman left runs on: pids %s", out)
	}

	ref := "podman://localhost/x"
	_, err = c.Get(context.Background(), ref, user)
	if !errors.Is(err, image.ErrNoImage) {
		t.Fatalf("%v; want image.ErrNoImage", err)
	}
	assertOneLine(t, err, ref, "your podman storage on this node has no image", "podman images")

	for _, tc := range []struct {
		o    PullOptions
		want error
		text string
	}{
		{PullOptions{UID: nobody, GID: nobody}, image.ErrBadReference, "needs your home directory"},
		{PullOptions{UID: nobody, GID: nobody, Home: "/nonexistent"}, nil, "podman save localhost/app:1 (as uid 65534)"},
		{PullOptions{Home: "/root"}, image.ErrPermission, "root's is the node's"},
	} {
		_, err := c.Get(context.Background(), "podman://localhost/app:1", tc.o)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%+v: %v; want %v", tc.o, err, tc.want)
		}
		assertOneLine(t, err, "podman://localhost/app:1", tc.text)
	}
}
