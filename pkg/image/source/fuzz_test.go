package source

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// Fuzz targets for the parsers of what a user sends (image references:
// ref_fuzz_test.go): auth.json and oci-archives. `go test -fuzz=FuzzX`
// runs one.

// FuzzSanitizeAuth: the sanitised file is a JSON object with "auths"
// only, names no helper, and sanitises to itself.
func FuzzSanitizeAuth(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"auths":{"r.io":{"auth":"dTpw"}}}`, `{"auths":{"r.io":{}},"credsStore":"desktop"}`,
		`{"auths":{},"credHelpers":{"r.io":"ecr-login"}}`, `{"auths":null}`, `{"auths":{"r.io":{"identitytoken":"t","auth":"x"}}}`,
		`[]`, `"x"`, `{"auths":{"":{"auth":"x"}}}`, `{"auths":{"r.io":{"auth":1}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		clean, _, err := sanitizeAuth(b)
		if err != nil {
			if !errors.Is(err, image.ErrUnauthorized) {
				t.Fatalf("%q: %v does not wrap image.ErrUnauthorized", b, err)
			}
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(clean, &top); err != nil || len(top) != 1 || top["auths"] == nil {
			t.Fatalf("%q: sanitised to %s", b, clean)
		}
		again, dropped, err := sanitizeAuth(clean)
		if err != nil || dropped || !bytes.Equal(again, clean) {
			t.Fatalf("%q: %s sanitises to %s, %v, %v", b, clean, again, dropped, err)
		}
	})
}

// FuzzCheckArchive: checkArchive takes any bytes (an oci-archive a user
// names, before containers/image unpacks it as root).
func FuzzCheckArchive(f *testing.F) {
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "a", Body: "x"}, imagetest.TarEntry{Name: "d/", Type: tar.TypeDir}, imagetest.TarEntry{Name: "l", Type: tar.TypeSymlink, Link: "/etc"}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "dev", Type: tar.TypeChar, Major: 1}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "../x", Body: "y"}, imagetest.TarEntry{Name: ".wh..wh..opq"}))
	archive := filepath.Join(f.TempDir(), "a.tar")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(archive, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = checkArchive(archive)
	})
}
