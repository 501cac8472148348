package spawn

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sleeper() *exec.Cmd {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func alive(cmd *exec.Cmd) bool {
	// Not reaped yet, so a dead child is a zombie: read its state.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return false
}

// endThreads ends n OS threads: goroutines that lock theirs and return.
func endThreads(n int) {
	for i := 0; i < n; i++ {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
	time.Sleep(50 * time.Millisecond)
}

// The hazard: a child started from a thread that then ends is killed by
// its Pdeathsig, the daemon alive.
func TestPdeathsigFollowsTheThread(t *testing.T) {
	var cmd *exec.Cmd
	done := make(chan error)
	var start func()
	start = func() {
		runtime.LockOSThread() // this thread ends with the goroutine
		if unix.Gettid() == unix.Getpid() {
			// Go keeps the main thread: take another.
			go start()
			return
		}
		cmd = sleeper()
		done <- cmd.Start()
	}
	go start()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	for i := 0; i < 50 && alive(cmd); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(cmd) {
		t.Fatal("the child outlived the thread that forked it: no hazard to guard against")
	}
}

// Children started here survive the ends of other threads, and are all
// forked from one thread that lives on.
func TestStartSurvivesEndedThreads(t *testing.T) {
	var cmds []*exec.Cmd
	for i := 0; i < 4; i++ {
		cmd := sleeper()
		if err := Start(cmd); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		endThreads(8)
	}
	for _, cmd := range cmds {
		if !alive(cmd) {
			t.Errorf("child %d died with a thread of the process's", cmd.Process.Pid)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(forkedOn)); err != nil {
		t.Errorf("the spawner thread %d is gone: %v", forkedOn, err)
	}
}
