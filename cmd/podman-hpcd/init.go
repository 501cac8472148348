package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
)

// initName is the containers' init, installed next to podman-hpcd.
const initName = "podman-hpc-init"

// initCmd is what podman-hpc-init does (see cmd/podman-hpc-init), for a
// node where only podman-hpcd is installed.
func initCmd() error {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return nil
		}
		// PID 1 of the container: orphans are ours to reap.
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
	return nil
}

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
