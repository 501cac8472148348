package hooks

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A hooks.d file, beside a good one. HOOK in the input stands for a program
// that exists, so that the fuzzer gets past podman's check of the path. A
// file that loads must never break a container's creation: its hooks match
// without error and go into a spec.
func FuzzHooksDir(f *testing.F) {
	for _, s := range []string{
		`{"version":"1.0.0","hook":{"path":"HOOK","args":["h","x"],"env":["A=1"],"timeout":5},"when":{"always":true},"stages":["prestart","poststop"]}`,
		`{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"^a$":"b.*"},"commands":[".*/sh$"],"hasBindMounts":true},"stages":["createContainer","precreate"]}`,
		`{"version":"1.0.0","hook":{"path":"/no/such"},"when":{"always":true},"stages":["poststart"]}`,
		`{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"commands":["("]},"stages":["poststart"]}`,
		`{"version":"1.0.0","hook":{"path":"HOOK"},"when":{},"stages":["nope"]}`,
		`{"hook":"HOOK","stages":["prestart"],"cmds":[".*"],"annotations":["a"]}`,
		`{"version":"0.1.0","hook":"HOOK","stage":["prestart"],"cmd":[".*"],"hasbindmounts":true}`,
		`{"version":"2"}`, `not json`, ``,
	} {
		f.Add(s)
	}
	prog := filepath.Join(f.TempDir(), "hook.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		f.Fatal(err)
	}
	good := `{"version":"1.0.0","hook":{"path":"` + prog + `"},"when":{"always":true},"stages":["poststop"]}`
	stages := []string{"createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
	f.Fuzz(func(t *testing.T, content string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "10-fuzz.json"), []byte(strings.ReplaceAll(content, "HOOK", prog)), 0o644)
		os.WriteFile(filepath.Join(dir, "20-good.json"), []byte(good), 0o644)
		s, _, err := ReadDirs([]string{dir})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "hooks.d: ") || !strings.Contains(err.Error(), "10-fuzz.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		names := s.Names()
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) || !slices.Contains(names, "good") {
			t.Fatalf("names %q: not sorted, not unique, or without the good file's", names)
		}
		for _, m := range []Match{
			{},
			{Command: "/bin/sh", HasBindMounts: true, Annotations: map[string]string{"a": "b", "org.podman-hpc.hook.x": "true"}},
		} {
			hooks, skipped, err := s.Select(m)
			if err != nil {
				t.Fatalf("a file that loaded fails to match: %v", err)
			}
			for _, h := range hooks {
				if !slices.Contains(stages, h.Stage) {
					t.Fatalf("selected stage %q", h.Stage)
				}
			}
			for _, h := range skipped {
				if !slices.Contains(podmanOnlyStages, h.Stage) {
					t.Fatalf("skipped stage %q", h.Stage)
				}
			}
			if err := AddToSpec(&specs.Spec{}, hooks); err != nil {
				t.Fatalf("selected hooks do not go into a spec: %v", err)
			}
		}
	})
}
