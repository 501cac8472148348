package timerslack

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func slackOf(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Coarsen reaches every thread, the ones that exist and (by inheritance)
// the ones made later; Restore gives a locked thread, and so the children
// it starts, the process's first slack back.
func TestCoarsenAndRestore(t *testing.T) {
	if initial <= 0 {
		t.Skip("no timer slack read at start")
	}
	const coarse = 300_000
	defer Coarsen(initial)
	if Coarsen(coarse) == 0 {
		t.Skip("cannot set other threads' timer slack (needs CAP_SYS_NICE)")
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tids {
		tid, _ := strconv.Atoi(e.Name())
		if got := slackOf(t, tid); got != coarse {
			t.Errorf("thread %d: slack %d, want %d", tid, got, coarse)
		}
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if got := slackOf(t, unix.Gettid()); got != coarse {
			t.Errorf("a thread's slack before Restore: %d, want %d", got, coarse)
		}
		Restore()
		if got := slackOf(t, unix.Gettid()); got != initial {
			t.Errorf("after Restore: %d, want %d", got, initial)
		}
		cmd := exec.Command("sleep", "5")
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		if got := slackOf(t, cmd.Process.Pid); got != initial {
			t.Errorf("a child of a restored thread: slack %d, want %d", got, initial)
		}
		// Back to the coarse value before the thread goes back to the pool.
		unix.Prctl(unix.PR_SET_TIMERSLACK, coarse, 0, 0, 0)
	}()
	<-done
}
