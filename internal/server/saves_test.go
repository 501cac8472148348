package server

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// serveAs serves f to peers seen as *uid at the time they connect.
func serveAs(t *testing.T, f *fakeNode, uid *atomic.Uint32) string {
	t.Helper()
	return startServerWith(t, func(s *Server) {
		s.peerCred = func(c *net.UnixConn) (peer, error) {
			p, err := peerOf(c)
			p.UID = uid.Load()
			return p, err
		}
		s.containers, s.images = f, f
	})
}

func count(calls []string, call string) int {
	n := 0
	for _, c := range calls {
		if c == call {
			n++
		}
	}
	return n
}

// The job user's SAVE saves their step's container once, and the step's
// END then does not save it again; another user cannot ask for it.
func TestSaveOnceByTheStepsUser(t *testing.T) {
	f := newFakeNode(t)
	var uid atomic.Uint32
	sock := serveAs(t, f, &uid)
	stepd := dial(t, sock) // as root
	if r, _ := askOn(t, stepd, containerRequest("save", "/home/u/out.sqsh")); r.Type != wire.OK {
		t.Fatalf("container: %v", r)
	}

	uid.Store(1001)
	r, _ := ask(t, sock, wire.New(wire.Save, "job", "5", "step", "0"))
	if msg, _ := r.Get("message"); r.Type != wire.Error || !strings.Contains(msg, "no step 5.0 of yours saves") {
		t.Errorf("another user's SAVE: %v %q", r.Type, msg)
	}
	uid.Store(1000)
	if r, _ := ask(t, sock, wire.New(wire.Save, "job", "5", "step", "1")); r.Type != wire.Error {
		t.Errorf("SAVE of a step that does not exist: %v", r)
	}
	for i := 0; i < 2; i++ {
		if r, _ := ask(t, sock, wire.New(wire.Save, "job", "5", "step", "0")); r.Type != wire.OK {
			t.Errorf("SAVE %d: %v", i, r)
		}
	}
	if r, _ := askOn(t, stepd, wire.New(wire.End)); r.Type != wire.OK {
		t.Errorf("END: %v", r)
	}
	calls := f.called()
	if n := count(calls, "Save phpc-5-0"); n != 1 {
		t.Errorf("saved %d times, want once: %v", n, calls)
	}
	if !slices.Contains(calls, "End phpc-5-0") {
		t.Errorf("the step's END did not end it: %v", calls)
	}
	// The step is gone: nothing left to ask for.
	if r, _ := ask(t, sock, wire.New(wire.Save, "job", "5", "step", "0")); r.Type != wire.Error {
		t.Errorf("SAVE after the step's end: %v", r)
	}
}

// A save that fails tells the task that asked, with the cause; the step's
// END reports the same outcome without saving again.
func TestSaveFailureReachesTheTask(t *testing.T) {
	f := newFakeNode(t)
	f.saveErr = errors.New("--container-save: open /home/u/out.sqsh: permission denied")
	var uid atomic.Uint32
	sock := serveAs(t, f, &uid)
	stepd := dial(t, sock)
	if r, _ := askOn(t, stepd, containerRequest("save", "/home/u/out.sqsh")); r.Type != wire.OK {
		t.Fatalf("container: %v", r)
	}
	uid.Store(1000)
	r, _ := ask(t, sock, wire.New(wire.Save, "job", "5", "step", "0"))
	if msg, _ := r.Get("message"); r.Type != wire.Error || msg != f.saveErr.Error() {
		t.Errorf("SAVE: %v %q", r.Type, msg)
	}
	if r, _ := askOn(t, stepd, wire.New(wire.End)); r.Type != wire.Error {
		t.Errorf("END after a failed save: %v", r)
	}
	if n := count(f.called(), "Save phpc-5-0"); n != 1 {
		t.Errorf("saved %d times, want once", n)
	}
}

// NOTES, from the step's slurmstepd as its tasks end, answers the node's
// lines for the user about the step's container, and ends nothing; a
// user cannot ask it.
func TestNotesAtTheStepsEnd(t *testing.T) {
	f := newFakeNode(t)
	f.notes = []string{"the container's writable root on node1 is full", "second"}
	var uid atomic.Uint32
	sock := serveAs(t, f, &uid)
	stepd := dial(t, sock)
	if r, _ := askOn(t, stepd, wire.New(wire.Notes)); r.Type != wire.OK || len(r.All("message")) != 0 {
		t.Errorf("NOTES before any container: %v", r)
	}
	if r, _ := askOn(t, stepd, containerRequest()); r.Type != wire.OK {
		t.Fatalf("container: %v", r)
	}
	r, _ := askOn(t, stepd, wire.New(wire.Notes))
	if got := r.All("message"); r.Type != wire.OK || !slices.Equal(got, f.notes) {
		t.Errorf("NOTES: %v %q, want %q", r.Type, got, f.notes)
	}
	if calls := f.called(); slices.Contains(calls, "End phpc-5-0") {
		t.Errorf("NOTES ended the step: %v", calls)
	}
	uid.Store(1000)
	if r, _ := ask(t, sock, wire.New(wire.Notes)); r.Type != wire.Error {
		t.Errorf("a user's NOTES: %v", r)
	}
}
