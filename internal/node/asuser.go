package node

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/asuser"
)

// credential is the job user's identity, for everything opened as them.
type credential = asuser.Credential

// openAsUser opens each path with O_PATH as the user (internal/asuser): the
// user's permissions apply to every directory along the path, while the
// file's own mode keeps applying to whoever uses it later (O_PATH needs no
// read permission). Mounting the returned fd's /proc path instead of the
// path closes the race of a user swapping a symlink after the check. The
// caller closes the files.
func openAsUser(cred credential, paths []string) ([]*os.File, error) {
	return asuser.Open(cred, paths, unix.O_PATH, 0)
}
