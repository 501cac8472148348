// Package timerslack lets the daemon's threads sleep coarsely while the
// processes it starts keep the node's timer precision.
//
// Go's monitor thread (sysmon) sleeps 20 µs at a time, tens of times per
// millisecond, for as long as the daemon is at work: about 0.7 ms of CPU for
// every container it starts (measured, issue 26). The kernel's timer slack
// lets it wake later, coalescing those sleeps with other wake-ups; the
// daemon needs no timer finer than a few hundred microseconds. A process
// inherits its creator's slack, so the threads that start children (the
// runtime, and through it the containers) put the process's first value
// back on themselves (Restore).
package timerslack

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Daemon is the slack the daemon's own threads get: its 1 ms polls may
// come up to a fifth late; sysmon's 20 µs sleeps last about 0.2 ms.
const Daemon = 200_000 // ns

// initial is the slack the process started with (its main thread's, read
// before any thread could change it): what children must inherit.
var initial = func() int {
	v, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}()

// Coarsen sets every thread of the process, the runtime's monitor among
// them, to ns of slack; threads created afterwards inherit it from the
// threads that create them. A thread the kernel will not change (no
// CAP_SYS_NICE: a test run by a user) keeps its own; it returns how many
// were changed.
func Coarsen(ns int) int {
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	v := []byte(strconv.Itoa(ns))
	n := 0
	for _, t := range tids {
		// /proc/TID, not /proc/self/task/TID: only the former has the
		// file. Go ends no thread at this point (Coarsen runs first in
		// serve), so the id is still this process's thread.
		if os.WriteFile("/proc/"+t.Name()+"/timerslack_ns", v, 0) == nil {
			n++
		}
	}
	return n
}

// Restore puts the process's first slack back on the calling thread, which
// must be locked (runtime.LockOSThread) for it to stay: call it on a thread
// that starts children.
func Restore() {
	if initial > 0 {
		unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(initial), 0, 0, 0)
	}
}
