// Command podman-hpc-asuser is the daemon's helper for the work it does on
// a user's behalf (pkg/asuser): started by podman-hpcd with the
// user's credentials, it opens what the user names and sends the
// descriptors back. Not for running by hand.
package main

import (
	"os"

	"github.com/podman-hpc/podman-hpc/pkg/asuser"
)

func main() {
	os.Exit(asuser.Serve())
}
