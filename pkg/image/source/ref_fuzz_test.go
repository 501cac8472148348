package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// FuzzParseReference: the parser takes what users type; it must never
// panic, and its canonical form must parse back to itself (it keys the
// cache).
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"ubuntu", "nvcr.io#nvidia/pytorch:24.01", "alice@reg:5000#a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker://x", "oci:/a:b", "docker-archive:./x:@1", "/a/b.sqsh", ".x", "a@b", "#", "@", ":", "oci-archive::",
		"ubuntu:22.04", "registry.example:5000/a/b:c", "r.io/a:t@sha256:" + strings.Repeat("b", 64), "dir:/x",
		"localhost/a", "UPPER/case", "a#b#c", "", "docker://", "\x00",
		"podman://localhost/app:1", "dockerd://ubuntu", "podman://abc123", "podman://-x", "dockerd://sha256:ab", "podman://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, image.ErrBadReference) {
				t.Fatalf("Parse(%q): error %v does not wrap image.ErrBadReference", s, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("Parse(%q): error spans lines: %q", s, err)
			}
			return
		}
		canon := r.String()
		r2, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, canon, err)
		}
		if r2.String() != canon || r2.Kind != r.Kind {
			t.Fatalf("Parse(%q) = %q (kind %d), reparsed as %q (kind %d)", s, canon, r.Kind, r2.String(), r2.Kind)
		}
	})
}
