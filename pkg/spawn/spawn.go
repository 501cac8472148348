// Package spawn starts the daemon's child processes from one OS thread that
// lives as long as the process, so that a child's parent-death signal
// (SysProcAttr.Pdeathsig) means "the daemon died" and nothing else.
//
// Linux sends that signal when the thread that forked the child exits, not
// the process. The daemon ends threads on purpose (a goroutine that entered
// other namespaces keeps its thread locked, and Go ends the thread with
// it), and Go may run any goroutine, one that starts a child included, on a
// thread that is later locked and ended: the child would be killed with it.
// Without Pdeathsig, a killed daemon leaves its helpers (mksquashfs writing
// hundreds of megabytes, podman save) running for no one.
package spawn

import (
	"os/exec"
	"runtime"
	"sync"

	"github.com/podman-hpc/podman-hpc/pkg/timerslack"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once     sync.Once
	requests chan request
	// forkedOn is the spawner thread's id, for tests.
	forkedOn int
)

// Start starts cmd (cmd.Start) from the spawner thread. Set
// cmd.SysProcAttr.Pdeathsig for the child to die with the daemon.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		requests = make(chan request)
		started := make(chan struct{})
		go loop(started)
		<-started
	})
	r := request{cmd: cmd, done: make(chan error, 1)}
	requests <- r
	return <-r.done
}

// loop holds its thread for the life of the process: it never unlocks it
// and never returns.
func loop(started chan<- struct{}) {
	runtime.LockOSThread()
	// Children inherit this thread's timer slack: the node's, not the
	// daemon's coarse one.
	timerslack.Restore()
	forkedOn = gettid()
	close(started)
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
