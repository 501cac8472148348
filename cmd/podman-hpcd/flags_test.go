package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Each client command has its own options: its help lists those, and only
// those; another command's option is a usage error.
func TestCommandsOwnFlags(t *testing.T) {
	t.Parallel()
	all := []string{"-socket", "-all", "-job", "-name", "-uid", "-config", "-o string", "-force"}
	for cmd, own := range map[string][]string{
		"pull":         {"-socket"},
		"images":       {"-socket"},
		"rmi":          {"-socket"},
		"prune":        {"-socket", "-all"},
		"ps":           {"-socket"},
		"rm":           {"-socket", "-job", "-name", "-uid"},
		"status":       {"-socket"},
		"check-config": {"-config"},
		"serve":        {"-config", "-socket"},
		"resolve":      {"-socket", "-config", "-job"},
		"import":       {"-socket", "-o string", "-force"},
		"export":       {"-socket", "-o string", "-force", "-job"},
	} {
		for _, args := range [][]string{{cmd, "--help"}, {"help", cmd}} {
			var out, errOut bytes.Buffer
			if rc := run(args, &out, &errOut); rc != 0 || errOut.Len() != 0 {
				t.Errorf("%q: rc %d, stderr %q", args, rc, errOut.String())
			}
			if !strings.HasPrefix(out.String(), "usage: podman-hpcd "+cmd+" ") {
				t.Errorf("%q: help %q", args, out.String())
			}
			for _, f := range all {
				has := strings.Contains(out.String(), "\n  "+f)
				if want := contains(own, f); has != want {
					t.Errorf("%q: lists %s: %v, want %v:\n%s", args, f, has, want, out.String())
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A command line a command cannot take exits 2, saying why and how it is
// used; extra arguments are refused, not ignored.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "none.sock") // reached by nothing: a usage error must come first
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", "--socket", sock}, "podman-hpcd pull: missing argument\nusage: podman-hpcd pull [--socket PATH] REF\n"},
		{[]string{"pull", "--socket", sock, "a", "b"}, "podman-hpcd pull: unexpected argument \"b\"\nusage: podman-hpcd pull "},
		{[]string{"rmi", "--socket", sock, "a", "b"}, "podman-hpcd rmi: unexpected argument \"b\"\n"},
		{[]string{"images", "--socket", sock, "extra"}, "podman-hpcd images: unexpected argument \"extra\"\n"},
		{[]string{"images", "--all", "--socket", sock}, "flag provided but not defined: -all\nusage: podman-hpcd images "},
		{[]string{"ps", "--job", "1", "--socket", sock}, "flag provided but not defined: -job\n"},
		{[]string{"prune", "--socket", sock, "now"}, "podman-hpcd prune: unexpected argument \"now\"\n"},
		{[]string{"prune", "--name", "x", "--socket", sock}, "flag provided but not defined: -name\n"},
		{[]string{"rm", "--socket", sock}, "podman-hpcd rm: --job JOBID or --name NAME needed\n"},
		{[]string{"rm", "--socket", sock, "--job", "1", "--name", "x"}, "podman-hpcd rm: --job or --name, not both\n"},
		{[]string{"rm", "--socket", sock, "--job", "1", "--uid", "5"}, "podman-hpcd rm: --uid goes with --name\n"},
		{[]string{"rm", "--socket", sock, "--job", "1", "2"}, "podman-hpcd rm: unexpected argument \"2\"\n"},
		{[]string{"status", "--socket", sock, "now"}, "podman-hpcd status: unexpected argument \"now\"\n"},
		{[]string{"check-config", "--config", "/nonexistent", "x"}, "podman-hpcd check-config: unexpected argument \"x\"\n"},
		{[]string{"serve", "--socket", sock, "x"}, "podman-hpcd serve: unexpected argument \"x\"\n"},
		{[]string{"resolve", "--socket", sock}, "podman-hpcd resolve: missing argument\n"},
		{[]string{"import", "--socket", sock, "a", "b"}, "podman-hpcd import: unexpected argument \"b\"\n"},
		{[]string{"export", "--socket", sock, "-o"}, "flag needs an argument: -o\n"},
		{[]string{"version", "x"}, "podman-hpcd version: unexpected argument \"x\"\n"},
		{[]string{"help", "pull", "rm"}, "podman-hpcd help: want at most one COMMAND\n"},
		{[]string{"help", "frobnicate"}, "podman-hpcd: unknown command \"frobnicate\"\n"},
	} {
		var out, errOut bytes.Buffer
		if rc := run(c.args, &out, &errOut); rc != 2 || !strings.HasPrefix(errOut.String(), c.want) || out.Len() != 0 {
			t.Errorf("%q: rc %d, stdout %q, stderr %q; want 2 and %q", c.args, rc, out.String(), errOut.String(), c.want)
		}
	}
}

// Options go before or after the argument ("--" ends them); a failure that
// is not the command line's exits 1.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	sock := startServer(t) // it has no image cache: each pull is refused
	for _, args := range [][]string{
		{"pull", "--socket", sock, "docker://x"},
		{"pull", "docker://x", "--socket", sock},
		{"rmi", "docker://x", "--socket=" + sock},
	} {
		var out, errOut bytes.Buffer
		if rc := run(args, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "has no image cache") {
			t.Errorf("%q: rc %d, stderr %q; want 1 and the daemon's answer", args, rc, errOut.String())
		}
	}
	// After "--", "--socket" is an argument (a second one).
	var errOut bytes.Buffer
	if rc := run([]string{"pull", "--socket", sock, "--", "x", "--socket"}, new(bytes.Buffer), &errOut); rc != 2 || !strings.HasPrefix(errOut.String(), "podman-hpcd pull: unexpected argument \"--socket\"") {
		t.Errorf("after --: rc %d, stderr %q", rc, errOut.String())
	}
}

// Under systemd (JOURNAL_STREAM names serve's stderr) the reason serve
// stops is an error in the journal: every line with sd-daemon's <3>.
func TestServeErrorsOnJournal(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.conf")
	os.WriteFile(conf, []byte("cache_dirr = /x\nlog_level = loud\n"), 0o644)
	stream, err := os.Create(filepath.Join(dir, "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(stream.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	serve := func() string {
		stream.Truncate(0)
		stream.Seek(0, 0)
		if rc := run([]string{"serve", "--config", conf, "--socket", filepath.Join(dir, "d.sock")}, new(bytes.Buffer), stream); rc != 1 {
			t.Errorf("serve rc=%d, want 1", rc)
		}
		b, _ := os.ReadFile(stream.Name())
		return string(b)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	lines := strings.Split(strings.TrimSuffix(serve(), "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "<3>podman-hpcd: "+conf+": the config has errors") ||
		!strings.HasPrefix(lines[1], "<3>"+conf+`:1: unknown key "cache_dirr"`) || !strings.HasPrefix(lines[2], "<3>"+conf+`:2: log_level "loud"`) {
		t.Errorf("on the journal:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "<3>") {
			t.Errorf("a line without its priority: %q", l)
		}
	}
	// Not the journal's stream (redirected since): no prefix.
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1))
	if out := serve(); !strings.HasPrefix(out, "podman-hpcd: "+conf+": the config has errors") || strings.Contains(out, "<3>") {
		t.Errorf("off the journal:\n%s", out)
	}
}

// status writes cache_max_age as the config does.
func TestStatusAge(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0s": "no limit", "": "", "30m0s": "30m", "1h30m0s": "1h30m", "2h0m0s": "2h", "10m0s": "10m",
		"1m30s": "1m30s", "720h0m0s": "30d", "25h0m0s": "25h", "1h0m10s": "1h0m10s", "500ms": "500ms",
	} {
		if got := age(in); got != want {
			t.Errorf("age(%q) = %q, want %q", in, got, want)
		}
	}
}
