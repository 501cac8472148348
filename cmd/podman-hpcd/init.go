package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// initName is the containers' init, installed next to podman-hpcd.
const initName = "podman-hpc-init"

// initCmd is what podman-hpc-init does (see cmd/podman-hpc-init), for a
// node where only podman-hpcd is installed.
func initCmd() error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	<-sig
	return nil
}

// initBinary returns the binary bound at initPath in every container:
// podman-hpc-init next to this binary, or this binary itself (slower to
// start) when that is missing. Either runs as "initPath init".
func initBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if small := filepath.Join(filepath.Dir(self), initName); isRegular(small) {
		return small, nil
	}
	return self, nil
}

func isRegular(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
