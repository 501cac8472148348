package store

import (
	"os"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets the test binary serve as the re-executed helper processes
// (the chrooted layer extractor), as the daemon's
// main does.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

var raceEnabled bool

// fastest runs f n times and returns the shortest duration: a latency
// target is about the code, not about what else the machine is doing.
func fastest(t testing.TB, n int, f func() error) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// checkLatency fails if d exceeds limit, except under the race detector.
func checkLatency(t testing.TB, what string, d, limit time.Duration) {
	t.Helper()
	t.Logf("%s: %s", what, d)
	if d > limit && !raceEnabled {
		t.Errorf("%s took %s, want < %s", what, d, limit)
	}
}
