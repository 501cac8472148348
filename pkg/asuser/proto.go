package asuser

import (
	"errors"
	"os"
	"strings"
	"syscall"
)

// The daemon and its helper speak over a SOCK_SEQPACKET pair: one JSON
// request from the daemon, then JSON replies, each with at most one
// descriptor. The helper is the user's process, so the daemon treats its
// replies as the user's input: bounded, and checked again (OpenFiles).

const (
	opOpen   = "open"
	opUnlink = "unlink"
	opDial   = "dial"
	opLayout = "layout"
)

// request is what the daemon asks of the helper.
type request struct {
	Op    string `json:"op"`
	Wants []Want `json:"wants,omitempty"` // opOpen
	Path  string `json:"path,omitempty"`  // the others
}

// reply is the helper's answer for one path.
type reply struct {
	// Err is why it failed ("" for success); Errno the errno behind it,
	// if any; Kind one of the kind* words below.
	Err     string `json:"err,omitempty"`
	Errno   int    `json:"errno,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Missing bool   `json:"missing,omitempty"`
}

const (
	kindNotRegular = "not-regular"
	kindMagicLink  = "magic-link"
)

// error rebuilds the helper's error for the daemon: an *os.PathError for
// the path, matching errors.Is for its errno and kind.
func (r reply) error(req request, i int) error {
	p, op := req.Path, req.Op
	if req.Op == opOpen && i < len(req.Wants) {
		p = req.Wants[i].Path
	}
	var err error
	switch {
	case r.Kind == kindNotRegular:
		err = ErrNotRegular
	case r.Kind == kindMagicLink:
		err = &wrapped{ErrMagicLink, syscall.ELOOP}
	case r.Errno > 0 && r.Errno < 4096 && req.Op == opOpen:
		err = syscall.Errno(r.Errno)
	case r.Errno > 0 && r.Errno < 4096:
		// The helper's words name the file inside (a layout's blob).
		err = &wrapped{errors.New(strings.TrimSpace(limit(r.Err, 512))), syscall.Errno(r.Errno)}
	default:
		err = errors.New(strings.TrimSpace(limit(r.Err, 512)))
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// wrapped reads as msg and matches both msg and errno.
type wrapped struct {
	msg   error
	errno syscall.Errno
}

func (w *wrapped) Error() string   { return w.msg.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.msg, w.errno} }

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return limit(lines[len(lines)-1], 512)
}

func errorReply(err error) reply {
	r := reply{Err: err.Error()}
	var errno syscall.Errno
	switch {
	case errors.Is(err, ErrNotRegular):
		r.Kind = kindNotRegular
	case errors.Is(err, syscall.ELOOP):
		r.Kind, r.Errno = kindMagicLink, int(syscall.ELOOP)
	case errors.As(err, &errno):
		r.Errno = int(errno)
	}
	return r
}
