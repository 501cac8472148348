package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// Requests are served on one CPU; an operation that runs past the delay
// gets them all until it is done; a short one never does.
func TestProcs(t *testing.T) {
	all := runtime.GOMAXPROCS(0)
	if all < 2 {
		t.Skip("one CPU: nothing to change")
	}
	defer runtime.GOMAXPROCS(all)
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		os.Unsetenv("GOMAXPROCS")
		defer os.Setenv("GOMAXPROCS", v)
	}
	p := newProcs()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("serving on %d CPUs, want 1", got)
	}

	done := p.widenAfter(time.Hour)
	done()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("after a short operation: %d CPUs, want 1", got)
	}

	done = p.widenAfter(time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != all && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.GOMAXPROCS(0); got != all {
		t.Errorf("during a long operation: %d CPUs, want %d", got, all)
	}
	second := p.widenAfter(0)
	time.Sleep(10 * time.Millisecond)
	done()
	if got := runtime.GOMAXPROCS(0); got != all {
		t.Errorf("one of two long operations done: %d CPUs, want %d", got, all)
	}
	second()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("after the long operations: %d CPUs, want 1", got)
	}
}

// The admin's GOMAXPROCS stays.
func TestProcsAdminSetting(t *testing.T) {
	all := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(all)
	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	p := newProcs()
	done := p.widenAfter(0)
	time.Sleep(10 * time.Millisecond)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d, want the admin's 3", got)
	}
	done()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d after, want the admin's 3", got)
	}
}
