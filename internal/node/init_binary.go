package node

import (
	"os"
	"path/filepath"
	"sync"
)

// initName is the containers' init, installed next to podman-hpcd.
const initName = "podman-hpc-init"

// initBinary returns the binary bound at initPath in every container:
// podman-hpc-init next to this binary, or this binary itself (slower to
// start) when that is missing. Either runs as "initPath init". Looked up
// once: every container asks.
var initBinary = sync.OnceValues(func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	small := filepath.Join(filepath.Dir(self), initName)
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() {
		return small, nil
	}
	return self, nil
})
