package squash

import "strings"

// opError is what the user sees: `verb "ref": kind: detail: hint`, always
// on one line. kind is a sentinel above; cause (may be nil) is the
// underlying error kept for errors.Is/As and for logs.
type opError struct {
	verb, ref string
	kind      error
	detail    string
	hint      string
	cause     error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString(e.verb)
	b.WriteString(` "`)
	b.WriteString(e.ref)
	b.WriteString(`": `)
	b.WriteString(e.kind.Error())
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return oneLine(b.String())
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// oneLine folds the multi-line messages some libraries produce (registry
// error lists, policy errors) so that srun shows a single line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return strings.Join(f, "; ")
}
