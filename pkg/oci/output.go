package oci

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// OutputLimit is how much a container's processes may write to their
// output once its init runs (what the image's entrypoint left running)
// before the daemon stops reading: its read end is closed, and a further
// write fails with EPIPE (SIGPIPE). Until then (the runtime, and the
// entrypoint itself, which entrypointTimeout bounds) the output is drained
// and only its end kept. Nothing of it lands in a file of root's. A
// variable for the tests.
var OutputLimit int64 = 1 << 20

// outputTail is how much of the output is kept, the last of it: an
// entrypoint's messages, a runtime's error.
const outputTail = 16 << 10

// Output is a container's output: a pipe the runtime and the container
// write, drained by the daemon into a bounded tail.
type Output struct {
	once    sync.Once
	r, w    *os.File
	err     error
	mu      sync.Mutex
	tail    []byte
	total   int64
	stopped chan struct{} // closed when the reader ends
	last    time.Time     // of the last read
	// limitFrom is total when Limit was called; -1 before.
	limitFrom int64
}

// NewOutput returns an Output; the pipe is made at its first writer.
func NewOutput() *Output { return &Output{stopped: make(chan struct{}), limitFrom: -1} }

// Limit bounds what is read from now on to OutputLimit: the container's
// init runs, and nothing of the image's is expected to write any more.
func (o *Output) Limit() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.limitFrom < 0 {
		o.limitFrom = o.total
	}
}

// writer returns the pipe's write end, the caller's to close once the
// runtime is done with it (the container's processes keep their copies).
func (o *Output) writer() (*os.File, error) {
	o.once.Do(func() {
		o.r, o.w, o.err = os.Pipe()
		if o.err == nil {
			go o.drain()
		} else {
			close(o.stopped)
		}
	})
	return o.w, o.err
}

func (o *Output) drain() {
	defer close(o.stopped)
	defer o.r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := o.r.Read(buf)
		o.mu.Lock()
		o.tail = append(o.tail, buf[:n]...)
		if len(o.tail) > outputTail {
			o.tail = append(o.tail[:0], o.tail[len(o.tail)-outputTail:]...)
		}
		o.total += int64(n)
		o.last = time.Now()
		over := o.limitFrom >= 0 && o.total-o.limitFrom > OutputLimit
		if over {
			o.tail = append(o.tail, "\n[podman-hpc: more output than the limit after the container started; the rest was refused]\n"...)
		}
		o.mu.Unlock()
		if err != nil || over {
			return
		}
	}
}

// String is the end of what was written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.tail)
}

// Total is how many bytes were read.
func (o *Output) Total() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// Settle returns String once what was written so far has been read: the
// pipe holds nothing unread (FIONREAD, TIOCINQ here) twice, a millisecond apart (a read
// in flight is in the tail by then), or 200 ms have passed. It waits for
// nothing that is not there: the entrypoint's start pays for it.
func (o *Output) Settle() string {
	deadline := time.Now().Add(200 * time.Millisecond)
	for empty := 0; empty < 2 && time.Now().Before(deadline); {
		select {
		case <-o.stopped:
			return o.String()
		default:
		}
		if o.unread() == 0 {
			empty++
		} else {
			empty = 0
		}
		time.Sleep(time.Millisecond)
	}
	return o.String()
}

// Ended returns String once every writer has gone and the reader has taken
// all they wrote, or after d: for output whose writers are known to be dead
// (an entrypoint that exited), where Settle's "nothing unread" can come
// while the reader still holds the last bytes (a loaded node).
func (o *Output) Ended(d time.Duration) string {
	select {
	case <-o.stopped:
	case <-time.After(d):
	}
	return o.String()
}

// unread is how many bytes the pipe holds (-1: unknown).
func (o *Output) unread() int {
	if o.r == nil {
		return 0
	}
	rc, err := o.r.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) {
		// TIOCINQ is FIONREAD.
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// Close stops reading: writers get EPIPE from now on.
func (o *Output) Close() {
	o.once.Do(func() { close(o.stopped) }) // never written: no pipe
	if o.r != nil {
		o.r.Close()
	}
	<-o.stopped
}
