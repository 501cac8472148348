// podman-hpc-init is the first process of every podman-hpc container. It
// only waits, so that the container's namespaces live while the step's
// tasks join them, and exits on SIGTERM, SIGINT or SIGHUP. It runs as the
// job user with no capabilities.
//
// It is apart from podman-hpcd, which can stand in for it ("podman-hpcd
// init"), because it starts in about a millisecond: the daemon's libraries
// take some 10 ms of CPU to initialise, paid on every node of every step.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	<-sig
}
