package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range []*Message{
		New(Hello),
		New(Container, "job", "42", "mount", "/a:/b", "mount", "/c:/d:ro", "empty", ""),
		New(Error, "message", "podman-hpc: image \"x\" not found"),
	} {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Read(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Read(%v): %v", m, err)
		}
		if got.Type != m.Type || !reflect.DeepEqual(got.Fields, m.Fields) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestGetAll(t *testing.T) {
	t.Parallel()
	m := New(Container, "mount", "/a", "image", "x", "mount", "/b")
	if v, ok := m.Get("image"); !ok || v != "x" {
		t.Errorf("Get(image) = %q, %v", v, ok)
	}
	if _, ok := m.Get("nope"); ok {
		t.Error("Get(nope) found something")
	}
	if got := m.All("mount"); !reflect.DeepEqual(got, []string{"/a", "/b"}) {
		t.Errorf("All(mount) = %q", got)
	}
}

func TestMarshalRejects(t *testing.T) {
	t.Parallel()
	for _, m := range []*Message{
		New(Hello, "", "v"),
		New(Hello, "k\x00", "v"),
		New(Hello, "k", "v\x00w"),
		New(Hello, "k", string(make([]byte, MaxBody))),
	} {
		if _, err := m.Marshal(); err == nil {
			t.Errorf("Marshal(%.40q) succeeded", m.Fields)
		}
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	for name, frame := range map[string][]byte{
		"version":        {0, 0, 0, 4, 9, 1, 0, 0},
		"too large":      {0x7f, 0, 0, 0, 1, 1, 0, 0},
		"short length":   {0, 0, 0, 2, 1, 1, 0, 0},
		"no final NUL":   {0, 0, 0, 7, 1, 1, 0, 0, 'k', 0, 'v'},
		"odd fields":     {0, 0, 0, 6, 1, 1, 0, 0, 'k', 0},
		"empty key":      {0, 0, 0, 7, 1, 1, 0, 0, 0, 'v', 0},
		"truncated body": {0, 0, 0, 9, 1, 1, 0, 0, 'k'},
	} {
		if _, err := Read(bytes.NewReader(frame)); err == nil {
			t.Errorf("%s: Read succeeded", name)
		}
	}
	_, err := Read(bytes.NewReader([]byte{0, 0, 0, 4, 2, 1, 0, 0}))
	if !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: err = %v, want ErrVersion", err)
	}
}

// header returns a frame header that declares a body of n bytes.
func header(t Type, n int) []byte {
	h := make([]byte, HeaderSize)
	binary.BigEndian.PutUint32(h, uint32(n+4))
	h[4], h[5] = Version, byte(t)
	return h
}

// A peer that declares a body of MaxBody and sends a few bytes of it must
// not make Read allocate MaxBody: 300 such connections grew the daemon by
// 330 MB when it did (issue 12, item 8).
func TestReadAllocatesWhatArrives(t *testing.T) {
	frame := append(header(Container, MaxBody), "job\x001\x00"...)
	const runs = 50
	if _, err := Read(bytes.NewReader(frame)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: err = %v, want io.ErrUnexpectedEOF", err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		Read(bytes.NewReader(frame))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 64<<10 {
		t.Errorf("Read of a frame declaring %d bytes with %d sent allocated %d bytes per call, want < 64 KiB", MaxBody, len(frame)-HeaderSize, per)
	}
}

// A frame read in small pieces, or several frames from one stream, decode
// as they were sent: the growing buffer never reads into the next frame.
func TestReadInPieces(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3*readChunk+17)
	msgs := []*Message{
		New(Container, "auth", big, "job", "1"),
		New(Hello),
		New(End, "k", "v"),
		New(OK, "big", strings.Repeat("y", MaxBody-6)), // body exactly MaxBody
	}
	var stream []byte
	for _, m := range msgs {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, b...)
	}
	for name, r := range map[string]func() io.Reader{
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+err": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	} {
		rd := r()
		for i, want := range msgs {
			got, err := Read(rd)
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			if got.Type != want.Type || !reflect.DeepEqual(got.Fields, want.Fields) {
				t.Fatalf("%s: frame %d differs", name, i)
			}
		}
		if _, err := Read(rd); !errors.Is(err, io.EOF) {
			t.Errorf("%s: after the last frame: %v, want io.EOF", name, err)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadRefusesOverMaxBodyUnread(t *testing.T) {
	t.Parallel()
	cr := &countingReader{r: bytes.NewReader(append(header(Hello, MaxBody+1), make([]byte, MaxBody+1)...))}
	if _, err := Read(cr); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("body of MaxBody+1: err = %v, want ErrTooLarge", err)
	}
	if cr.n != HeaderSize {
		t.Errorf("read %d bytes of a frame refused by its header, want %d", cr.n, HeaderSize)
	}
}

// pipe returns the two ends of a synchronous in-memory connection.
func pipe(t *testing.T) (client, server net.Conn) {
	client, server = net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestReadWithinHeaderDeadline(t *testing.T) {
	t.Parallel()
	_, srv := pipe(t)
	start := time.Now()
	_, err := ReadWithin(srv, 50*time.Millisecond, time.Minute)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no request within 50ms") {
		t.Fatalf("silent peer: err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v, want about 50ms", d)
	}
}

// The body's deadline runs from the header's arrival and bounds the whole
// body: a peer that drips a byte at a time is cut off too.
func TestReadWithinBodyDeadline(t *testing.T) {
	t.Parallel()
	for name, drip := range map[string]bool{"stalled": false, "dripping": true} {
		cl, srv := pipe(t)
		go func() {
			cl.Write(header(Hello, 1000))
			for drip {
				if _, err := cl.Write([]byte{'k'}); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		_, err := ReadWithin(srv, time.Minute, 100*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "body not sent within 100ms") {
			t.Errorf("%s body: err = %v", name, err)
		}
		cl.Close()
	}
}

// No header deadline: a frame that comes late is read, and the deadline is
// cleared for whoever reads next.
func TestReadWithinNoHeaderDeadline(t *testing.T) {
	t.Parallel()
	cl, srv := pipe(t)
	b, _ := New(End).Marshal()
	go func() {
		time.Sleep(200 * time.Millisecond)
		cl.Write(b)
		time.Sleep(200 * time.Millisecond)
		cl.Write(b)
	}()
	m, err := ReadWithin(srv, 0, 50*time.Millisecond)
	if err != nil || m.Type != End {
		t.Fatalf("late frame: %+v, %v", m, err)
	}
	if _, err := Read(srv); err != nil {
		t.Errorf("read after ReadWithin: %v (deadline left set?)", err)
	}
}

func FuzzRead(f *testing.F) {
	for _, m := range []*Message{
		New(Container, "job", "1", "mount", "/a:/b"),
		New(Hello),
		New(Error, "message", "x", "", ""),
	} {
		b, _ := m.Marshal()
		f.Add(b)
	}
	f.Add(header(Hello, MaxBody))
	f.Add(header(Hello, MaxBody+1))
	f.Add([]byte{0, 0, 0, 4, 2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		m, err := Read(cr)
		if cr.n > HeaderSize+MaxBody {
			t.Fatalf("read %d bytes, more than one frame can hold", cr.n)
		}
		// Read in pieces, it decodes the same.
		m2, err2 := Read(iotest.OneByteReader(bytes.NewReader(data)))
		if (err == nil) != (err2 == nil) || (err == nil && !reflect.DeepEqual(m, m2)) {
			t.Fatalf("whole: %+v, %v; byte by byte: %+v, %v", m, err, m2, err2)
		}
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same frame, which is
		// all that was read.
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
		}
		if cr.n != len(out) || !bytes.Equal(out[:6], data[:6]) || !bytes.Equal(out[HeaderSize:], data[HeaderSize:len(out)]) {
			t.Fatalf("re-encoding differs (read %d bytes, encoded %d)", cr.n, len(out))
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add(header(Container, 0))
	f.Add(header(Hello, MaxBody))
	f.Add(header(Hello, MaxBody+1))
	f.Add([]byte{0, 0, 0, 3, 1, 1, 0, 0})
	f.Add([]byte{0, 0, 0, 4, 2, 1})
	f.Fuzz(func(t *testing.T, hdr []byte) {
		typ, n, err := ParseHeader(hdr)
		if err != nil {
			return
		}
		if n < 0 || n > MaxBody {
			t.Fatalf("accepted a body of %d bytes (MaxBody %d)", n, MaxBody)
		}
		if got := header(typ, n); !bytes.Equal(got[:6], hdr[:6]) {
			t.Fatalf("header %x parsed as type %d, %d bytes, which encode as %x", hdr[:6], typ, n, got[:6])
		}
	})
}

func FuzzParseBody(f *testing.F) {
	f.Add([]byte("job\x001\x00mount\x00/a:/b\x00"))
	f.Add([]byte("k\x00\x00"))
	f.Add([]byte("\x00v\x00"))
	f.Add([]byte("k\x00v"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := ParseBody(body)
		if err != nil {
			return
		}
		if 2*len(fields) > len(body) {
			t.Fatalf("%d fields from %d bytes", len(fields), len(body))
		}
		if len(body) > MaxBody {
			return // Marshal refuses those; ParseHeader never lets one through
		}
		m := &Message{Type: Hello, Fields: fields}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed %q but cannot encode it: %v", fields, err)
		}
		if !bytes.Equal(out[HeaderSize:], body) {
			t.Fatalf("body %q re-encodes as %q", body, out[HeaderSize:])
		}
	})
}
