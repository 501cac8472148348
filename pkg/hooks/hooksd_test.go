package hooks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	podhooks "go.podman.io/common/pkg/hooks"
)

// hookDir writes files (name -> JSON, with HOOK standing for an existing
// hook program) into a new directory.
func hookDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	prog := filepath.Join(dir, "hook.sh")
	os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(body, "HOOK", prog)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(hs []Matched) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name+":"+h.Stage)
	}
	return out
}

// The cases of podman's oci-hooks(5), one hook file each.
func TestHooksDirsMatching(t *testing.T) {
	t.Parallel()
	ann := map[string]string{"org.podman-hpc.hook.marker": "true", "com.example.department": "fluid-dynamics"}
	for _, tc := range []struct {
		name string
		hook string
		m    Match
		want []string
	}{
		{"always", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["prestart","poststop"]}`,
			Match{}, []string{"h.json:createRuntime", "h.json:poststop"}},
		{"always false never matches", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":false,"annotations":{".*":".*"}},"stages":["poststart"]}`,
			Match{Annotations: ann}, nil},
		{"annotation key and value regex", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"^com\\.example\\.department$":".*fluid-dynamics$"}},"stages":["createContainer"]}`,
			Match{Annotations: ann}, []string{"h.json:createContainer"}},
		{"annotation value differs", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"^com\\.example\\.department$":"^chemistry$"}},"stages":["poststart"]}`,
			Match{Annotations: ann}, nil},
		{"every annotation must match", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"marker$":"^true$","^absent$":".*"}},"stages":["poststart"]}`,
			Match{Annotations: ann}, nil},
		{"commands", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"commands":[".*/init$",".*/systemd$"]},"stages":["prestart"]}`,
			Match{Command: "/usr/lib/systemd/systemd"}, []string{"h.json:createRuntime"}},
		{"commands not matching", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"commands":[".*/init$"]},"stages":["prestart"]}`,
			Match{Command: "/bin/sh"}, nil},
		{"commands and annotations both needed", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"marker":"true"},"commands":["^/bin/sh$"]},"stages":["prestart"]}`,
			Match{Command: "/bin/true", Annotations: ann}, nil},
		{"no command known", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"commands":[".*"]},"stages":["prestart"]}`,
			Match{}, nil},
		{"hasBindMounts", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"hasBindMounts":true},"stages":["prestart"]}`,
			Match{HasBindMounts: true}, []string{"h.json:createRuntime"}},
		{"hasBindMounts without mounts", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"hasBindMounts":true},"stages":["prestart"]}`,
			Match{}, nil},
		{"legacy 0.1.0: any condition (or)", `{"hook":"HOOK","arguments":["--debug"],"stage":["prestart"],"cmds":["^/nope$"],"annotations":["^true$"]}`,
			Match{Command: "/bin/sh", Annotations: ann}, []string{"h.json:createRuntime"}},
		{"legacy 0.1.0: cmd synonym", `{"version":"0.1.0","hook":"HOOK","stages":["poststop"],"cmd":["sh$"]}`,
			Match{Command: "/bin/sh"}, []string{"h.json:poststop"}},
		{"podman's own precreate stage is skipped", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["precreate","poststart"]}`,
			Match{}, []string{"h.json:poststart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set, _, err := ReadDirs([]string{hookDir(t, map[string]string{"h.json": tc.hook})})
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := set.Select(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), tc.want) {
				t.Errorf("matched %v, want %v", names(got), tc.want)
			}
		})
	}
}

// 0.1.0's arguments follow the path in args; 1.0.0's hook entry is kept whole.
func TestHooksDirsHookEntry(t *testing.T) {
	t.Parallel()
	dir := hookDir(t, map[string]string{
		"old.json": `{"hook":"HOOK","arguments":["a","b"],"stages":["prestart"],"cmds":[".*"]}`,
		"new.json": `{"version":"1.0.0","hook":{"path":"HOOK","args":["x","y"],"env":["A=1"],"timeout":5},"when":{"always":true},"stages":["poststart"]}`,
	})
	set, _, err := ReadDirs([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := set.Select(Match{Command: "/bin/sh"})
	prog := filepath.Join(dir, "hook.sh")
	five := 5
	want := []Matched{
		{Name: "new.json", Stage: "poststart", Hook: specs.Hook{Path: prog, Args: []string{"x", "y"}, Env: []string{"A=1"}, Timeout: &five}},
		{Name: "old.json", Stage: "createRuntime", Hook: specs.Hook{Path: prog, Args: []string{prog, "a", "b"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// Masking between directories, order by lowercased name, and the same
// result as podman's own Manager.
func TestHooksDirsMaskingAndOrder(t *testing.T) {
	t.Parallel()
	always := func(stage string) string {
		return `{"version":"1.0.0","hook":{"path":"HOOK","args":["` + stage + `"]},"when":{"always":true},"stages":["` + stage + `"]}`
	}
	low := hookDir(t, map[string]string{
		"02-another-hook.json": always("poststart"),
		"01-my-hook.json":      always("poststop"), // masked by high's
		"01-UPPERCASE.json":    always("prestart"),
		"README":               "not a hook",
	})
	high := hookDir(t, map[string]string{"01-my-hook.json": always("prestart")})
	dirs := []string{low, filepath.Join(t.TempDir(), "missing"), high}
	set, _, err := ReadDirs(dirs)
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := set.Select(Match{})
	want := []string{"01-my-hook.json:createRuntime", "01-UPPERCASE.json:createRuntime", "02-another-hook.json:poststart"}
	if !reflect.DeepEqual(names(got), want) {
		t.Errorf("got %v, want %v", names(got), want)
	}
	if n := set.Names(); !reflect.DeepEqual(n, []string{"UPPERCASE", "another-hook", "my-hook"}) {
		t.Errorf("Names() = %v", n)
	}
	var ours specs.Spec
	if err := AddToSpec(&ours, got); err != nil {
		t.Fatal(err)
	}
	pm, err := podhooks.New(context.Background(), dirs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var theirs specs.Spec
	if _, err := pm.Hooks(&theirs, nil, false); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ours.Hooks, theirs.Hooks) {
		t.Errorf("hooks differ from podman's Manager:\nours   %+v\ntheirs %+v", ours.Hooks, theirs.Hooks)
	}
}

func TestHooksDirsBadFiles(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"unknown stage":   `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["later"]}`,
		"unknown version": `{"version":"2.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["prestart"]}`,
		"bad regex":       `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"[":"a"}},"stages":["prestart"]}`,
		"not JSON":        `{`,
	} {
		_, _, err := ReadDirs([]string{hookDir(t, map[string]string{"bad.json": body})})
		if err == nil || !strings.Contains(err.Error(), "bad.json") {
			t.Errorf("%s: err = %v, want one naming bad.json", name, err)
		}
	}
}

// As under podman, a hook whose program is missing is left out (and masks
// nothing); we say so in a warning.
func TestHooksDirsMissingProgram(t *testing.T) {
	t.Parallel()
	low := hookDir(t, map[string]string{"a.json": `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["poststart"]}`})
	high := hookDir(t, map[string]string{"a.json": `{"version":"1.0.0","hook":{"path":"/does/not/exist"},"when":{"always":true},"stages":["prestart"]}`})
	set, warnings, err := ReadDirs([]string{low, high})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := set.Select(Match{}); !reflect.DeepEqual(names(got), []string{"a.json:poststart"}) {
		t.Errorf("got %v", names(got))
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], filepath.Join(high, "a.json")+" left out") {
		t.Errorf("warnings %q", warnings)
	}
}

func FuzzHookFile(f *testing.F) {
	f.Add(`{"version":"1.0.0","hook":{"path":"/bin/true"},"when":{"annotations":{"a":"b"},"commands":["x"]},"stages":["prestart"]}`)
	f.Add(`{"hook":"/bin/true","stage":["prestart"],"cmd":["."],"annotation":["a"]}`)
	f.Fuzz(func(t *testing.T, body string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "f.json"), []byte(body), 0o644)
		set, _, err := ReadDirs([]string{dir})
		if err != nil {
			return
		}
		hs, _, err := set.Select(Match{Command: "/bin/sh", Annotations: map[string]string{"a": "b"}, HasBindMounts: true})
		if err == nil {
			AddToSpec(&specs.Spec{}, hs)
		}
	})
}

func specsHook(path string, args []string, env ...string) specs.Hook {
	return specs.Hook{Path: path, Args: args, Env: env}
}

// A file is parsed once and kept while it stays the same; an edit, or a
// file made bad, is seen by the next read.
func TestHooksDirsReadAgainOnlyWhenChanged(t *testing.T) {
	t.Parallel()
	dir := hookDir(t, map[string]string{
		"a.json": `{"version": "1.0.0", "hook": {"path": "HOOK"}, "when": {"always": true}, "stages": ["prestart"]}`,
	})
	first, _, err := ReadDirs([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := ReadDirs([]string{dir})
	if err != nil || again.hooks["a.json"] != first.hooks["a.json"] {
		t.Errorf("an unchanged file was parsed again (%v)", err)
	}

	prog := filepath.Join(dir, "hook.sh")
	edited := `{"version": "1.0.0", "hook": {"path": "` + prog + `", "args": ["hook", "edited"]}, "when": {"always": true}, "stages": ["poststop"]}`
	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _, err := ReadDirs([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if h := after.hooks["a.json"]; h == nil || len(h.Stages) != 1 || h.Stages[0] != "poststop" || len(h.Hook.Args) != 2 {
		t.Errorf("the edit was not read: %+v", h)
	}

	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"version": "1.0.0"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadDirs([]string{dir}); err == nil || !strings.Contains(err.Error(), "a.json") {
		t.Errorf("a file made bad: %v, want an error naming it", err)
	}
}

// What of a step may change which hooks a container gets: a "commands"
// condition makes the command count, an annotation condition that may match
// the step's key the step itself.
func TestHooksStepDependence(t *testing.T) {
	t.Parallel()
	const step = "org.podman-hpc.step"
	for _, tc := range []struct {
		name          string
		hook          string
		command, byID bool
	}{
		{"always", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"always":true},"stages":["prestart"]}`, false, false},
		{"commands", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"commands":[".*/app$"]},"stages":["prestart"]}`, true, false},
		{"another annotation", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"^org\\.podman-hpc\\.hook\\.marker$":"true"}},"stages":["prestart"]}`, false, false},
		{"the step's", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"^org\\.podman-hpc\\.step$":"^0$"}},"stages":["prestart"]}`, false, true},
		{"any annotation", `{"version":"1.0.0","hook":{"path":"HOOK"},"when":{"annotations":{"podman-hpc":".*"}},"stages":["prestart"]}`, false, true},
	} {
		s, _, err := ReadDirs([]string{hookDir(t, map[string]string{"h.json": tc.hook})})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c, st := s.StepDependence(step); c != tc.command || st != tc.byID {
			t.Errorf("%s: command %v step %v, want %v %v", tc.name, c, st, tc.command, tc.byID)
		}
	}
}
