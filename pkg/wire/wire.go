// Package wire is the Go side of the protocol between the SPANK plugin and
// podman-hpcd: the framing here, the CONTAINER request in request.go. The C
// side is spank/proto.c and spank/request.c; spank/cgotest tests one against
// the other.
//
// A frame is a 4-byte big-endian length of what follows, a 4-byte header
// (version, message type, two zero bytes), then a body of "key\x00value\x00"
// pairs. Keys may repeat. File descriptors travel as SCM_RIGHTS beside a frame.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"time"
)

// Version is the protocol version this package speaks.
const Version = 1

// MaxBody is the largest body either side accepts.
const MaxBody = 1 << 20

// MaxEnv is the most bytes a container reply's environment may take
// (EnvSize): MaxBody less room for the reply's other fields (its ids, the
// working directory, the entrypoint's log). A larger one would be refused
// at the write, and the plugin hear nothing.
const MaxEnv = MaxBody - 64<<10

// EnvSize is the bytes env takes in a reply, as "env" fields.
func EnvSize(env []string) int {
	n := 0
	for _, e := range env {
		n += len("env") + 1 + len(e) + 1
	}
	return n
}

// HeaderSize is the size of a frame's fixed part.
const HeaderSize = 8

// Type is a message type.
type Type uint8

// Message types; the numbers are shared with spank/proto.h.
const (
	Hello     Type = 1  // client -> daemon: who I am, protocol check
	Container Type = 2  // slurmstepd -> daemon: the step's container
	Pull      Type = 3  // user -> daemon: pull "ref" into the cache
	Images    Type = 4  // user -> daemon: list cached images
	Rmi       Type = 5  // user -> daemon: remove "ref" from the cache
	Prune     Type = 6  // user -> daemon: evict ("all" = 1: every unused image)
	Ps        Type = 7  // user -> daemon: list running containers
	Rm        Type = 8  // root -> daemon: remove the containers of "job"
	End       Type = 9  // slurmstepd -> daemon: the step is over (save, then remove)
	Import    Type = 10 // user -> daemon: "ref" as a squashfs file of the user's at "out"
	Export    Type = 11 // user -> daemon: container "name"'s filesystem, likewise
	Status    Type = 12 // anyone -> daemon: the node's status (a user sees their own part)
	Save      Type = 13 // the job user's task -> daemon: save step "job"."step"'s container now
	Notes     Type = 14 // slurmstepd -> daemon: lines for the user at the step's end (OK's "message"s)
	OK        Type = 64 // daemon -> client: done
	Error     Type = 65 // daemon -> client: "message" says why
	Progress  Type = 66 // daemon -> client: "message" for the user
)

var (
	// ErrVersion means the peer speaks another protocol version.
	ErrVersion = errors.New("unsupported protocol version")
	// ErrTooLarge means a frame's body is over MaxBody.
	ErrTooLarge = errors.New("message too large")
	// ErrMalformed means a body is not a sequence of key/value C strings.
	ErrMalformed = errors.New("malformed message body")
)

// Field is one key/value pair.
type Field struct {
	Key, Value string
}

// Message is one decoded frame.
type Message struct {
	Type   Type
	Fields []Field
}

// New returns a message of type t with the given key, value, key, value... pairs.
func New(t Type, kv ...string) *Message {
	m := &Message{Type: t}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Add(kv[i], kv[i+1])
	}
	return m
}

// Add appends a pair.
func (m *Message) Add(key, value string) {
	m.Fields = append(m.Fields, Field{key, value})
}

// Get returns the first value of key, and whether it was there.
func (m *Message) Get(key string) (string, bool) {
	for _, f := range m.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// All returns every value of key, in order.
func (m *Message) All(key string) []string {
	var out []string
	for _, f := range m.Fields {
		if f.Key == key {
			out = append(out, f.Value)
		}
	}
	return out
}

// Marshal encodes m as one frame. It fails on an empty key, a NUL inside a
// key or value, or a body over MaxBody.
func (m *Message) Marshal() ([]byte, error) {
	var body bytes.Buffer
	for _, f := range m.Fields {
		if f.Key == "" || bytes.IndexByte([]byte(f.Key), 0) >= 0 || bytes.IndexByte([]byte(f.Value), 0) >= 0 {
			return nil, fmt.Errorf("encode field %q: %w", f.Key, ErrMalformed)
		}
		body.WriteString(f.Key)
		body.WriteByte(0)
		body.WriteString(f.Value)
		body.WriteByte(0)
	}
	if body.Len() > MaxBody {
		return nil, ErrTooLarge
	}
	out := make([]byte, HeaderSize, HeaderSize+body.Len())
	binary.BigEndian.PutUint32(out, uint32(body.Len()+4))
	out[4] = Version
	out[5] = byte(m.Type)
	return append(out, body.Bytes()...), nil
}

// ParseHeader reads a frame header and returns the type and body length.
func ParseHeader(hdr []byte) (Type, int, error) {
	if len(hdr) < HeaderSize {
		return 0, 0, io.ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(hdr)
	if hdr[4] != Version {
		return 0, 0, fmt.Errorf("%w %d (want %d)", ErrVersion, hdr[4], Version)
	}
	if n < 4 || n-4 > MaxBody {
		return 0, 0, ErrTooLarge
	}
	return Type(hdr[5]), int(n - 4), nil
}

// ParseBody decodes a body into pairs.
func ParseBody(body []byte) ([]Field, error) {
	var fields []Field
	parts := bytes.Split(body, []byte{0})
	if len(body) == 0 {
		return nil, nil
	}
	// A valid body ends with NUL, so Split leaves one empty trailing part.
	if len(parts)%2 != 1 || len(parts[len(parts)-1]) != 0 {
		return nil, ErrMalformed
	}
	for i := 0; i+1 < len(parts); i += 2 {
		if len(parts[i]) == 0 {
			return nil, ErrMalformed
		}
		fields = append(fields, Field{string(parts[i]), string(parts[i+1])})
	}
	return fields, nil
}

// readChunk is the body buffer's first size: a frame's body is read as it
// arrives, the buffer doubling only once full, so a peer that declares
// MaxBody and sends a few bytes costs this, not MaxBody.
const readChunk = 4 << 10

// Read reads one frame from r. The body's buffer grows with the bytes that
// arrive (to about twice what came at most, and the declared length, itself
// at most MaxBody). A frame cut short is io.ErrUnexpectedEOF; a
// header over MaxBody is ErrTooLarge, before any of the body is read.
func Read(r io.Reader) (*Message, error) {
	hdr := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	return readBody(r, hdr)
}

func readBody(r io.Reader, hdr []byte) (*Message, error) {
	t, n, err := ParseHeader(hdr)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, min(n, readChunk))
	for len(body) < n {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(cap(body), n-len(body)))
		}
		// Never past n: what follows is the next frame's.
		k, err := r.Read(body[len(body):min(cap(body), n)])
		body = body[:len(body)+k]
		if err != nil && len(body) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	fields, err := ParseBody(body)
	if err != nil {
		return nil, err
	}
	return &Message{Type: t, Fields: fields}, nil
}

// DeadlineReader is a reader whose reads can be given a deadline: a
// net.Conn.
type DeadlineReader interface {
	io.Reader
	SetReadDeadline(t time.Time) error
}

// ReadWithin reads one frame from c as Read does, with deadlines: its
// header must have arrived within header of the call (0: wait as long as
// it takes), and its body within body of the header's arrival (0: no
// limit). A missed deadline is an error that wraps os.ErrDeadlineExceeded
// and says, in a few words, which part was late. c's read deadline is
// cleared on return.
func ReadWithin(c DeadlineReader, header, body time.Duration) (*Message, error) {
	defer c.SetReadDeadline(time.Time{})
	if err := c.SetReadDeadline(deadline(header)); err != nil {
		return nil, err
	}
	hdr := make([]byte, HeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &lateError{"no request", header}
		}
		return nil, err
	}
	if err := c.SetReadDeadline(deadline(body)); err != nil {
		return nil, err
	}
	m, err := readBody(c, hdr)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, &lateError{"message body not sent", body}
	}
	return m, err
}

// lateError is a deadline ReadWithin missed.
type lateError struct {
	what  string
	limit time.Duration
}

func (e *lateError) Error() string { return fmt.Sprintf("%s within %v", e.what, e.limit) }
func (e *lateError) Unwrap() error { return os.ErrDeadlineExceeded }

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// Write writes m to w as one frame.
func Write(w io.Writer, m *Message) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// WriteUnix writes m to c with files' descriptors attached (SCM_RIGHTS) to
// the frame's first bytes. The receiver gets its own copies of the fds.
func WriteUnix(c *net.UnixConn, m *Message, files ...*os.File) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		_, err = c.Write(b)
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	n, _, err := c.WriteMsgUnix(b, syscall.UnixRights(fds...), nil)
	if err != nil {
		return err
	}
	// A stream socket may take a large frame in parts; the fds went with
	// the first.
	_, err = c.Write(b[n:])
	return err
}
