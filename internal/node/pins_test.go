package node

import (
	"fmt"
	"testing"
)

// A job's pins are its own and its user's, go with the job, and are
// bounded oldest first.
func TestJobPins(t *testing.T) {
	t.Parallel()
	var p jobPins
	k := jobPinKey{job: "7", uid: 1000, ref: "r:t"}
	p.put(k, "r:t@sha256:a")
	p.put(k, "r:t@sha256:b") // the first answer stays
	if v, ok := p.get(k); !ok || v != "r:t@sha256:a" {
		t.Errorf("get = %q, %v", v, ok)
	}
	if _, ok := p.get(jobPinKey{job: "7", uid: 1001, ref: "r:t"}); ok {
		t.Error("another user sees the pin")
	}
	p.dropJob("7")
	if _, ok := p.get(k); ok {
		t.Error("pin kept after the job's end")
	}
	for i := range maxJobPins + 1 {
		p.put(jobPinKey{job: fmt.Sprint(i), ref: "r"}, "x")
	}
	if _, ok := p.get(jobPinKey{job: "0", ref: "r"}); ok || len(p.pins) != maxJobPins {
		t.Errorf("not bounded: %d entries", len(p.pins))
	}
}
