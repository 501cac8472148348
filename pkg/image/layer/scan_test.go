package layer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// A sparse file expands without bytes in the layer: refused, so that
// neither the scanner nor the extractor spins through its holes.
func TestScanRefusesSparseFiles(t *testing.T) {
	t.Parallel()
	imagetest.RequireBinary(t, "tar")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hole"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "hole"), 1<<30); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"gnu", "posix"} {
		out := filepath.Join(dir, format+".tar")
		if o, err := imagetest.RunCmd("tar", "-C", dir, "--sparse", "--format="+format, "-cf", out, "hole"); err != nil {
			t.Fatalf("tar: %v: %s", err, o)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		err = scanLayer(newScanner(t.TempDir()), bytes.NewReader(b), io.Discard)
		if !errors.Is(err, image.ErrUnsafeLayer) || !strings.Contains(err.Error(), "sparse") {
			t.Errorf("%s sparse entry: %v, want image.ErrUnsafeLayer", format, err)
		}
	}
}
