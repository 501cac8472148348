package hooks

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Not parallel: the runtime gives the wrapper the hook's environment, which
// the test sets as the process's own.
func TestTimedRunsTheHook(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "hook.sh")
	// Reads the state on stdin, sees its own argv[0] and env, exits 3.
	os.WriteFile(prog, []byte("#!/bin/sh\nread state\necho \"$0 $1 $HOOKVAR $state\"\necho oops >&2\nexit 3\n"), 0o755)
	log := filepath.Join(dir, "hooks.log")
	h := Timed(Matched{Name: "01-a.json", Stage: "createRuntime", Hook: specsHook(prog, []string{prog, "arg1"}, "HOOKVAR=v")}, "/daemon", log)
	if h.Path != "/daemon" || h.Args[1] != TimedCommand || h.Env[0] != "HOOKVAR=v" {
		t.Fatalf("wrapped hook %+v", h)
	}
	t.Setenv("HOOKVAR", "v")
	var out, errb bytes.Buffer
	code := RunTimed(h.Args[2:], strings.NewReader("{\"id\":\"c\"}\n"), &out, &errb)
	if code != 3 || out.String() != prog+" arg1 v {\"id\":\"c\"}\n" || errb.String() != "oops\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	// A signal is an exit status over 128; a missing program is 127.
	os.WriteFile(prog, []byte("#!/bin/sh\nkill -TERM $$\n"), 0o755)
	if code := RunTimed(h.Args[2:], strings.NewReader(""), &out, &errb); code != 128+15 {
		t.Errorf("killed hook: exit %d", code)
	}
	if code := RunTimed([]string{"--log", log, "--name", "x.json", "--stage", "poststop", "--path", filepath.Join(dir, "absent"), "--"}, strings.NewReader(""), &out, &errb); code != 127 {
		t.Errorf("missing program: exit %d", code)
	}
	timings, off := ReadTimings(log, 0)
	if len(timings) != 3 || timings[0].Name != "01-a.json" || timings[0].Stage != "createRuntime" || timings[0].Exit != 3 ||
		timings[0].Duration <= 0 || timings[0].Duration > time.Minute || timings[2].Err == "" {
		t.Fatalf("timings %+v", timings)
	}
	if more, off2 := ReadTimings(log, off); len(more) != 0 || off2 != off {
		t.Errorf("read again from the end: %v", more)
	}
	if tm, off := ReadTimings(filepath.Join(dir, "none"), 0); tm != nil || off != 0 {
		t.Errorf("missing log: %v", tm)
	}
	if h := Timed(Matched{Stage: "startContainer", Hook: specsHook(prog, nil)}, "/daemon", log); h.Path != prog {
		t.Errorf("startContainer hook wrapped: %+v", h)
	}
	if code := RunTimed([]string{"--name", "x"}, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("usage: exit %d", code)
	}
}

// A hook without a timeout of its own gets DefaultTimeout, at every stage;
// one with its own keeps it.
func TestTimedDefaultTimeout(t *testing.T) {
	own := 7
	for _, stage := range []string{"createRuntime", "createContainer", "startContainer", "poststop"} {
		h := Timed(Matched{Name: "x.json", Stage: stage, Hook: specs.Hook{Path: "/bin/true"}}, "/self", "/log")
		if h.Timeout == nil || *h.Timeout != DefaultTimeout {
			t.Errorf("%s: timeout %v, want %d", stage, h.Timeout, DefaultTimeout)
		}
		h = Timed(Matched{Name: "x.json", Stage: stage, Hook: specs.Hook{Path: "/bin/true", Timeout: &own}}, "/self", "/log")
		if h.Timeout == nil || *h.Timeout != own {
			t.Errorf("%s: its own timeout %v, want %d", stage, h.Timeout, own)
		}
	}
}
