package layer

import (
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets the test binary serve as the re-executed helper processes
// (the chrooted layer extractor), as the daemon's
// main does.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
