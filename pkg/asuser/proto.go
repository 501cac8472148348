package asuser

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The daemon and its helper speak over a SOCK_SEQPACKET pair: one request
// from the daemon, then JSON replies, each with at most one descriptor. The
// helper is the user's process, so the daemon treats its replies as the
// user's input: bounded, and checked again (OpenFiles).
//
// The request is NUL-terminated fields, which the C helper
// (cmd/podman-hpc-asuser) reads without a JSON parser: the operation, then
// for an open five fields per want (flags, mode, regular, optional, path),
// for the others the path. A path holding a NUL cannot be sent (nor
// opened: the kernel would stop there).

const (
	opOpen   = "open"
	opUnlink = "unlink"
	opDial   = "dial"
	opLayout = "layout"
)

// request is what the daemon asks of the helper.
type request struct {
	Op    string
	Wants []Want // opOpen
	Path  string // the others
}

// encode writes the request as its fields; a path holding a NUL fails as
// the kernel's open would (EINVAL).
func (r request) encode() ([]byte, error) {
	var b []byte
	field := func(s string) { b = append(append(b, s...), 0) }
	flag := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	field(r.Op)
	if r.Op != opOpen {
		if strings.IndexByte(r.Path, 0) >= 0 {
			return nil, &os.PathError{Op: r.Op, Path: r.Path, Err: syscall.EINVAL}
		}
		field(r.Path)
		return b, nil
	}
	for _, w := range r.Wants {
		if strings.IndexByte(w.Path, 0) >= 0 || w.Flags < 0 {
			return nil, &os.PathError{Op: "open", Path: w.Path, Err: syscall.EINVAL}
		}
		field(strconv.Itoa(w.Flags))
		field(strconv.FormatUint(uint64(w.Mode), 10))
		field(flag(w.Regular))
		field(flag(w.Optional))
		field(w.Path)
	}
	return b, nil
}

// decodeRequest reads a request's fields (the Go helper's side).
func decodeRequest(b []byte) (request, error) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return request{}, errors.New("not NUL-terminated fields")
	}
	fields := strings.Split(string(b[:len(b)-1]), "\x00")
	r := request{Op: fields[0]}
	rest := fields[1:]
	if r.Op != opOpen {
		if len(rest) != 1 {
			return request{}, fmt.Errorf("%s: %d fields, want a path", r.Op, len(rest))
		}
		r.Path = rest[0]
		return r, nil
	}
	if len(rest)%5 != 0 {
		return request{}, fmt.Errorf("open: %d fields, not five per path", len(rest))
	}
	for i := 0; i < len(rest); i += 5 {
		flags, err := strconv.Atoi(rest[i])
		if err != nil || flags < 0 {
			return request{}, fmt.Errorf("open: flags %q", rest[i])
		}
		mode, err := strconv.ParseUint(rest[i+1], 10, 32)
		if err != nil {
			return request{}, fmt.Errorf("open: mode %q", rest[i+1])
		}
		r.Wants = append(r.Wants, Want{Path: rest[i+4], Flags: flags, Mode: uint32(mode), Regular: rest[i+2] == "1", Optional: rest[i+3] == "1"})
	}
	return r, nil
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
	case r.Errno > 0 && r.Errno < 4096 && req.Op != opLayout:
		// An open's, an unlink's or a dial's own errno: the C helper
		// sends no words for it.
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
