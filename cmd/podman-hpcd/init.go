package main

import (
	"os"
	"os/signal"
	"syscall"
)

// initCmd is the container's first process (initPath inside): it only
// waits, so that the container's namespaces live while the step's tasks join
// them, and exits on SIGTERM, SIGINT or SIGHUP. It runs as the job user with
// no capabilities.
func initCmd() error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	<-sig
	return nil
}
