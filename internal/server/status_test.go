package server

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

type fakeStatus struct{ asked []uint32 }

func (f *fakeStatus) Status(uid uint32) node.Status {
	f.asked = append(f.asked, uid)
	return node.Status{Runtime: "/usr/bin/crun", CacheDir: "/var/cache/x", CacheBytes: 1 << 30, CacheImages: 2,
		CacheMaxBytes: 10 << 30, MaxImageSize: -1, CacheMaxAge: 48 * time.Hour,
		Pulls: []node.Pull{{Ref: "app:2", UID: uid, Started: time.Now(), Phase: "downloading"}}}
}

// Status: the node's facts for anyone; a user's own containers and errors
// only, root's all of them.
func TestStatusIsTheAskersOwn(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t)
	f.list = []node.Container{
		{ID: "phpc-5-0", Job: "5", Step: "0", UID: 4242, Image: "app:1", Created: time.Now()},
		{ID: "phpc-6-0", Job: "6", Step: "0", UID: 4243, Image: "secret:1", Created: time.Now()},
	}
	st := &fakeStatus{}
	var srv *Server
	for _, uid := range []uint32{4242, 0} {
		sock := startServerWith(t, func(s *Server) {
			asUID(uid)(s)
			s.containers, s.images, s.statusOf, s.version = f, f, st, "v1"
			srv = s
		})
		srv.fail("container", 4242, "job 5 step 0: --container-image=app:1: manifest\tunknown")
		srv.fail("pull", 4243, "secret:1: unauthorized")
		r, _ := ask(t, sock, wire.New(wire.Status))
		if r.Type != wire.OK {
			t.Fatalf("uid %d: %v %v", uid, r.Type, r.Fields)
		}
		for k, want := range map[string]string{"version": "v1", "runtime": "/usr/bin/crun", "cache_dir": "/var/cache/x",
			"cache_bytes": "1073741824", "cache_images": "2", "cache_max_bytes": "10737418240", "max_image_size": "-1", "cache_max_age": "48h0m0s"} {
			if got, _ := r.Get(k); got != want {
				t.Errorf("uid %d: %s = %q, want %q", uid, k, got, want)
			}
		}
		containers, errs := r.All("container"), r.All("error")
		wantN := map[uint32]int{4242: 1, 0: 2}[uid]
		if len(containers) != wantN || len(errs) != wantN {
			t.Errorf("uid %d: containers %q errors %q, want %d of each", uid, containers, errs, wantN)
		}
		if uid != 0 && (strings.Contains(strings.Join(containers, " "), "secret") || strings.Contains(strings.Join(errs, " "), "secret")) {
			t.Errorf("uid %d sees another user's: %q %q", uid, containers, errs)
		}
		if len(errs) > 0 && !strings.HasSuffix(errs[0], "\tcontainer\t4242\tjob 5 step 0: --container-image=app:1: manifest unknown") {
			t.Errorf("uid %d: error row %q", uid, errs[0])
		}
		if p := r.All("pull"); len(p) != 1 || !strings.HasPrefix(p[0], "app:2\t") {
			t.Errorf("uid %d: pulls %q", uid, p)
		}
	}
	if !slices.Equal(st.asked, []uint32{4242, 0}) {
		t.Errorf("the node was asked for the status of %v, want the askers' uids", st.asked)
	}
}

// The last errors are bounded: the oldest go.
func TestLastErrorsBounded(t *testing.T) {
	t.Parallel()
	var l lastErrors
	for i := range lastErrorsKept + 5 {
		l.add(failure{message: string(rune('a' + i))})
	}
	got := l.of(0)
	if len(got) != lastErrorsKept || got[0].message != "f" {
		t.Errorf("%d kept, first %q", len(got), got[0].message)
	}
}

// A node whose runtime failed says so in status.
func TestStatusUnavailable(t *testing.T) {
	t.Parallel()
	sock := startServerWith(t, func(s *Server) { asUID(0)(s); s.noMgr = errors.New("no working OCI runtime") })
	r, _ := ask(t, sock, wire.New(wire.Status))
	if u, _ := r.Get("unavailable"); r.Type != wire.OK || u != "no working OCI runtime" {
		t.Errorf("%v unavailable=%q", r.Type, u)
	}
}

func TestImagesTableKeepsATabInAPathInItsColumn(t *testing.T) {
	imgs := []store.Image{{Digest: "squashfs:sha256:0123456789abcdef", Refs: []string{"/home/u/a\tb.sqsh"}, LastUsed: time.Now()}}
	for _, root := range []bool{false, true} {
		tab := imagesTable(imgs, root)
		h, _ := tab.Get("header")
		rows := tab.All("row")
		if len(rows) != 1 {
			t.Fatalf("rows %q", rows)
		}
		if got, want := strings.Count(rows[0], "\t"), strings.Count(h, "\t"); got != want {
			t.Errorf("root=%v: row %q has %d tabs, the header %d", root, rows[0], got, want)
		}
		if !strings.HasPrefix(rows[0], `/home/u/a\tb.sqsh`+"\t") {
			t.Errorf("root=%v: row %q, want the path with its tab written as \\t", root, rows[0])
		}
	}
}
