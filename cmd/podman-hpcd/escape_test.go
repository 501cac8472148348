package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func TestEscapeControls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"plain ref docker://x/y:1 \\ ok", "plain ref docker://x/y:1 \\ ok"},
		{"a\tb", "a\tb"},
		{"über 日本", "über 日本"},
		{"\x1b]0;PWNED\x07\x1b[1A\x1b[2K", `\x1b]0;PWNED\a\x1b[1A\x1b[2K`},
		{"line\nfake row\r", `line\nfake row\r`},
		{"del\x7f c1\u009b[2J rlo\u202e", `del\x7f c1\u009b[2J rlo\u202e`},
		{"bad \x9b[2J utf8 \xff", `bad \x9b[2J utf8 \xff`},
	} {
		if got := escapeControls(tc.in); got != tc.want {
			t.Errorf("escapeControls(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// replyWith serves one connection at a time on a socket, answering every
// request with reply, until the test ends.
func replyWith(t *testing.T, reply *wire.Message) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := wire.Read(c); err == nil {
				wire.Write(c, reply)
			}
			c.Close()
		}
	}()
	return sock
}

// What a user put into a file name or an entrypoint's output reaches root's
// terminal only escaped: no escape sequence, no row of its own, whichever
// command prints it.
func TestClientEscapesUsersStrings(t *testing.T) {
	t.Parallel()
	const evil = "e\x1b[2K\x1b]0;T\x07\nroot sha256:fake\r.sif"
	const shown = `e\x1b[2K\x1b]0;T\a\nroot sha256:fake\r.sif`
	status := wire.New(wire.OK, "version", "1", "node", "n1", "cache_dir", "/c",
		"image_header", "REFERENCE\tDIGEST",
		"image", "sif://"+evil+"\tsha256:1",
		"container", "c1\t"+evil+"\t1\t0\tu\timg\t1s",
		"error", "2025-01-01T00:00:00Z\tcontainer\tu\tjob 1 step 0: the output: \x1b]0;PWNED\x07\x1b[1A\x1b[2K")
	images := wire.New(wire.OK, "header", "REFERENCE\tDIGEST", "row", "sif://"+evil+"\tsha256:1")
	failed := wire.New(wire.Error, "message", "remove \""+evil+"\": not found")
	for _, tc := range []struct {
		name  string
		reply *wire.Message
		args  []string
		want  []string
	}{
		{"status", status, []string{"status"}, []string{shown, `the output: \x1b]0;PWNED\a\x1b[1A\x1b[2K`}},
		{"images", images, []string{"images"}, []string{"sif://" + `e\x1b[2K\x1b]0;T\a\nroot`}},
		{"ps", images, []string{"ps"}, []string{"sif://" + `e\x1b[2K`}},
		{"an error", failed, []string{"rmi", "x"}, []string{`remove "` + `e\x1b[2K\x1b]0;T\a\nroot`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sock := replyWith(t, tc.reply)
			var out, errOut bytes.Buffer
			run(append(append([]string{}, tc.args[0], "--socket", sock), tc.args[1:]...), &out, &errOut)
			all := out.String() + errOut.String()
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if i := strings.IndexFunc(all, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' || r == 0x7f }); i >= 0 {
				t.Errorf("a control character (%q) reached the terminal:\n%q", all[i], all)
			}
			if strings.Contains(all, "\nroot") || strings.Contains(all, "\n  root") {
				t.Errorf("a user's newline made a row of its own:\n%s", all)
			}
		})
	}
}
