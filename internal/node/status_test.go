package node

import (
	"errors"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

// A Get that downloads is a miss and a pull of the bytes its layers
// reported (the last, largest count of each); one that only resolves is a
// hit; only pulls show in status.
func TestPullWatch(t *testing.T) {
	var f pullsInFlight
	hit := f.start("app:1", 1000)
	var passed int
	report := hit.watch(func(store.Progress) { passed++ })
	report(store.Progress{Phase: "resolving", Message: "app:1"})
	report(store.Progress{Phase: "done"})
	pull := f.start("app:2", 1001)
	report2 := pull.watch(nil)
	report2(store.Progress{Phase: "resolving"})
	for _, p := range []store.Progress{
		{Phase: "downloading", Layer: "a", Done: 10, Total: 100}, {Phase: "downloading", Layer: "a", Done: 100, Total: 100},
		{Phase: "downloading", Layer: "b", Done: 50, Total: 50}, {Phase: "downloading", Layer: "a", Message: "applying layer 1 of 2"},
		{Phase: "note", Message: "waiting"},
	} {
		report2(p)
	}
	if l := f.list(); len(l) != 1 || l[0].Ref != "app:2" || l[0].UID != 1001 || l[0].Phase != "extracting" {
		t.Errorf("in flight: %+v, want app:2 extracting only", l)
	}
	report2(store.Progress{Phase: "downloading", Layer: "b", Done: 50, Total: 50})
	if l := f.list(); len(l) != 1 || l[0].Phase != "downloading" {
		t.Errorf("in flight: %+v, want app:2 downloading", l)
	}
	// A pull waiting for a slot is listed, and says which limit holds it.
	queued := f.start("app:3", 1002)
	queued.watch(nil)(store.Progress{Phase: "note", Message: "waiting: 4 pulls already run on this node, the most it runs at once (max_pulls)"})
	if l := f.list(); len(l) != 2 || l[1].Ref != "app:3" || l[1].Phase != "waiting (max_pulls)" {
		t.Errorf("in flight: %+v, want app:3 waiting (max_pulls) listed too", l)
	}
	if queued.pulled {
		t.Errorf("a waiting pull counts as a pull")
	}
	f.end(queued)
	if passed != 2 {
		t.Errorf("%d reports passed on, want 2", passed)
	}
	if hit.pulled || !pull.pulled {
		t.Errorf("pulled: hit %v pull %v", hit.pulled, pull.pulled)
	}
	var sum int64
	for _, b := range pull.layers {
		sum += b
	}
	if sum != 150 {
		t.Errorf("%d bytes, want 150", sum)
	}
	f.end(hit)
	f.end(pull)
	if l := f.list(); len(l) != 0 {
		t.Errorf("after the end: %+v", l)
	}
	// A user's file copied in is a pull too.
	cp := f.start("/home/u/x.sqfs", 1000)
	cp.watch(nil)(store.Progress{Phase: "resolving", Message: "copying x.sqfs"})
	if !cp.pulled {
		t.Error("a copy is not a pull")
	}
	// count with no metrics is safe.
	(&squashStore{}).count(cp, errors.New("x"))
}
