package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// escapeReply escapes, in place, every value of a reply from the daemon
// (escapeControls): the client prints them to whoever runs it, root
// included, and many are a user's strings (an image's file name, a
// container's name, an entrypoint's output in an error). A terminal obeys
// the escape sequences among them: it retitles the window, moves the
// cursor up and erases lines, or answers them as typed input; a newline
// adds a row that is not the daemon's. Every value of every reply goes
// through here, the one place where the daemon's words reach the client.
func escapeReply(m *wire.Message) {
	for i := range m.Fields {
		m.Fields[i].Value = escapeControls(m.Fields[i].Value)
	}
}

// escapeControls returns s with every character a terminal does not
// print as itself written as Go's %q writes it (ESC as \x1b, CR as \r,
// CSI U+009B as \u009b, a right-to-left override as \u202e), and every
// byte that is not UTF-8 as \xNN; a backslash stays as it is. Only tab,
// which separates a table's columns, passes.
func escapeControls(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r != '\t' && !strconv.IsPrint(r) })
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for j := 0; j < len(s); {
		r, n := utf8.DecodeRuneInString(s[j:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[j])
		case r == '\t' || strconv.IsPrint(r):
			b.WriteString(s[j : j+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		j += n
	}
	return b.String()
}
