package hooks

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	current "go.podman.io/common/pkg/hooks/1.0.0"
)

// match decides as podman's When.Match does, for every kind of condition,
// alone and combined, with "or" (0.1.0 hooks) and without.
func TestMatchIsPodmans(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	whens := []current.When{
		{},
		{Always: &yes},
		{Always: &no},
		{HasBindMounts: &yes},
		{HasBindMounts: &no},
		{Annotations: map[string]string{`^org\.example\.gpu$`: `^(true|1)$`}},
		{Annotations: map[string]string{`gpu`: `true`, `^org\.podman-hpc\.step$`: `^1\.`}},
		{Annotations: map[string]string{`.*`: `^$`}},
		{Commands: []string{`^/usr/bin/python`, `mpi`}},
		{Commands: []string{`^/bin/sh$`}, Annotations: map[string]string{`gpu`: `.`}},
		{Always: &yes, Commands: []string{`^/nothing$`}},
		{HasBindMounts: &yes, Annotations: map[string]string{`gpu`: `true`}},
	}
	annotations := []map[string]string{
		nil,
		{"org.example.gpu": "true"},
		{"org.example.gpu": "false", "org.podman-hpc.step": "1.0"},
		{"org.example.gpu": "1", "org.podman-hpc.step": "2.0", "empty": ""},
	}
	commands := []string{"", "/usr/bin/python3", "/bin/sh", "/opt/mpi/bin/app"}
	n := 0
	for wi, w := range whens {
		for _, or := range []bool{false, true} {
			w := w
			//lint:ignore SA1019 0.1.0 hooks' "or", which podman still loads
			w.Or = or
			for ai, a := range annotations {
				for _, cmd := range commands {
					for _, binds := range []bool{false, true} {
						config := &specs.Spec{}
						if cmd != "" {
							config.Process = &specs.Process{Args: []string{cmd}}
						}
						want, werr := w.Match(config, a, binds)
						got, gerr := match(&w, config, a, binds)
						if got != want || (gerr == nil) != (werr == nil) {
							t.Errorf("when %d (or %v), annotations %d, command %q, binds %v: %v, %v; podman: %v, %v",
								wi, or, ai, cmd, binds, got, gerr, want, werr)
						}
						n++
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no case ran")
	}
	// A pattern is compiled once.
	re1, _ := rx(`^x$`)
	re2, _ := rx(`^x$`)
	if re1 != re2 {
		t.Error("a pattern compiled twice")
	}
	if _, err := rx(`(`); err == nil {
		t.Error("a bad pattern compiled")
	}
}
