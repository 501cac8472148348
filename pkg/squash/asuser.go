package squash

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"strconv"

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

// credential is who a path is read as.
type credential = asuser.Credential

func (o PullOptions) credential() credential {
	c := credential{UID: o.UID, GID: o.GID, Groups: o.Groups}
	if c.Groups == nil && o.UID != 0 {
		// Best effort: /etc/group only without cgo. Slurm knows the job's
		// groups; the daemon should pass them in PullOptions.Groups.
		if u, err := user.LookupId(strconv.FormatUint(uint64(o.UID), 10)); err == nil {
			if ids, err := u.GroupIds(); err == nil {
				for _, s := range ids {
					if g, err := strconv.ParseUint(s, 10, 32); err == nil {
						c.Groups = append(c.Groups, uint32(g))
					}
				}
			}
		}
	}
	return c
}

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
func openAsUser(p string, cred credential) (*os.File, error) {
	f, err := asuser.OpenRegular(cred, p)
	return f, asUserError(err)
}

// tarLayoutAsUser writes the OCI layout at dir, read with cred's
// permissions, into the tar file out (created 0600); a layout of more
// than limit (> 0) bytes is refused with ErrTooLarge.
func tarLayoutAsUser(ctx context.Context, dir string, cred credential, out string, limit int64) error {
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
