package sif

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/podman-hpc/podman-hpc/pkg/image/sif/siftest"
)

// FuzzFindRoot: a SIF a user names is read by the root daemon. Any bytes
// are taken without a panic or a runaway allocation, and a root it
// returns lies within the file. `go test -fuzz=FuzzFindRoot` runs it.
func FuzzFindRoot(f *testing.F) {
	f.Add([]byte{})
	f.Add(rootBytes)
	f.Add(write(f, root()))
	f.Add(write(f, siftest.Deffile("x"), siftest.Labels("{}"), root(), siftest.Overlay(strings.NewReader("ext3"))))
	f.Add(write(f, siftest.Root(sif.FsExt3, strings.NewReader("ext3"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !Is(bytes.NewReader(b)) {
			return
		}
		r, err := find(b)
		if err != nil {
			return
		}
		if r.Offset < 0 || r.Size <= 0 || r.Offset+r.Size > int64(len(b)) {
			t.Fatalf("root %+v outside a file of %d bytes", r, len(b))
		}
	})
}
