package source

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The daemon is root; a path a user names must be read with that user's
// permissions, or any user could make root read files they cannot. The
// opens (and the walk of an OCI layout directory) run in a helper process
// of the user's (pkg/asuser, the daemon's one way of acting as a
// user); the data is read from the descriptors it sends back, or from the
// stream it writes. What the kernel or containers/image then parse is only
// ever our own root-owned copy.

// errNotRegular is a path that is not a regular file.
var errNotRegular = asuser.ErrNotRegular

// Credential is who a path is read as: a user's uid, gid and groups.
type Credential = asuser.Credential

// causeError reads as msg and matches cause with errors.Is.
type causeError struct {
	msg   string
	cause error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.cause }

// asUserError makes the kernel's "permission denied" for the user this
// package's ErrPermission.
func asUserError(err error) error {
	if err != nil && errors.Is(err, fs.ErrPermission) && !errors.Is(err, image.ErrPermission) {
		return &causeError{err.Error(), image.ErrPermission}
	}
	return err
}

// openAsUser opens the regular file p with cred's permissions (root's
// too, in a helper: nothing of the daemon's is reachable through p) and
// returns it; the caller closes it.
func OpenAsUser(p string, cred Credential) (*os.File, error) {
	f, err := asuser.OpenRegular(cred, p)
	return f, asUserError(err)
}

// tarLayoutAsUser writes the OCI layout at dir, read with cred's
// permissions, into the tar file out (created 0600); a layout of more
// than limit (> 0) bytes is refused with ErrTooLarge.
func tarLayoutAsUser(ctx context.Context, dir string, cred Credential, out string, limit int64) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Counted as written: the user may make the layout anything.
	budget := &image.Budget{Limit: limit}
	if err := asuser.TarLayout(ctx, cred, dir, budget.Writer(f)); err != nil {
		if limit > 0 && budget.Used() > limit {
			return image.TooLarge("is", limit)
		}
		return asUserError(err)
	}
	return f.Close()
}
