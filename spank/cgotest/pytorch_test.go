package cgotest

import (
	"strings"
	"testing"
)

// MASTER_ADDR is the step's first node, read from Slurm's host list as
// scontrol show hostnames would list it first.
func TestFirstHost(t *testing.T) {
	for list, want := range map[string]string{
		"node1":                "node1",
		"node[1-4]":            "node1",
		"node[01-04,07]":       "node01",
		"node[3,5-7],gpu1":     "node3",
		"a1,b[2-3]":            "a1",
		"rack[2-3]-n[10-11]":   "rack2-n10",
		"n[7]x.example.org":    "n7x.example.org",
		"gpu-a100-[0005-0008]": "gpu-a100-0005",
	} {
		if got, err := FirstHost(list); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", list, got, err, want)
		}
	}
	for _, bad := range []string{"", ",node1", "node[", "node[1-2", "node]", "node[[1]]", "node[a-b]", "[]", strings.Repeat("n", 300)} {
		if got, err := FirstHost(bad); err == nil {
			t.Errorf("%q: accepted as %q", bad, got)
		}
	}
}

// enroot's hook: the job id modulo 4536, above 61000.
func TestPyTorchPort(t *testing.T) {
	for job, want := range map[uint32]uint{0: 61000, 1: 61001, 4536: 61000, 4537: 61001, 123456: 123456%4536 + 61000} {
		if got := PyTorchPort(job); got != want {
			t.Errorf("job %d: %d, want %d", job, got, want)
		}
	}
}

// The host list comes from the step's environment: no input makes the
// parser run past it or write past its buffer, and what it returns is a
// non-empty piece of the list, without brackets or commas.
func FuzzFirstHost(f *testing.F) {
	for _, s := range []string{"node[1-4]", "a,b", "x[01-02]y[3]", "[", "n[1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		if strings.ContainsRune(list, 0) {
			return
		}
		got, err := FirstHost(list)
		if err != nil {
			return
		}
		if got == "" || strings.ContainsAny(got, "[],") || len(got) > len(list) {
			t.Fatalf("%q gave %q", list, got)
		}
	})
}
