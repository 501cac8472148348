package main

import (
	"os"
	"runtime"
	"sync"
	"time"
)

// procs sets how many CPUs the daemon's Go code runs on at once
// (GOMAXPROCS). A container's start is a chain of short system calls and
// waits for the runtime, and at each step Go wakes its idle processors to
// look for work: with two of them, the daemon took ~5 ms more of the step's
// start on this 2-core node than with one, competing with slurmstepd and
// crun for the CPUs the job's own start-up needs. So requests are served on
// one; a pull, which decompresses and unpacks layers in parallel, gets
// every CPU while it runs. GOMAXPROCS set in the environment is the admin's
// choice and left alone.
type procs struct {
	mu    sync.Mutex
	busy  int // slow operations running
	serve int // GOMAXPROCS between them
	all   int // GOMAXPROCS during them
}

// newProcs applies the serving setting and returns the controller.
func newProcs() *procs {
	p := &procs{serve: runtime.GOMAXPROCS(0), all: runtime.GOMAXPROCS(0)}
	if os.Getenv("GOMAXPROCS") == "" && p.all > 1 {
		p.serve = 1
		runtime.GOMAXPROCS(p.serve)
	}
	return p
}

func (p *procs) widen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy++; p.busy == 1 && p.all != p.serve {
		runtime.GOMAXPROCS(p.all)
	}
}

func (p *procs) narrow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy--; p.busy == 0 && p.all != p.serve {
		runtime.GOMAXPROCS(p.serve)
	}
}

// widenAfter gives the daemon every CPU once the operation that follows
// has run for d (a cached image is resolved well within it; a pull is
// not), until done is called. A nil procs does nothing.
func (p *procs) widenAfter(d time.Duration) (done func()) {
	if p == nil {
		return func() {}
	}
	var mu sync.Mutex
	widened, finished := false, false
	t := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			p.widen()
			widened = true
		}
	})
	return func() {
		t.Stop()
		mu.Lock()
		defer mu.Unlock()
		finished = true
		if widened {
			p.narrow()
		}
	}
}
