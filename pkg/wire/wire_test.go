package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
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

func FuzzRead(f *testing.F) {
	b, _ := New(Container, "job", "1", "mount", "/a:/b").Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same frame.
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
		}
		if !bytes.Equal(out, data[:len(out)]) {
			t.Fatalf("re-encoding differs")
		}
	})
}
