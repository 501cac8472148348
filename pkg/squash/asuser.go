package squash

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/podman-hpc/podman-hpc/internal/asuser"
)

// The daemon is root; a path a user names must be read with that user's
// permissions, or any user could make root read files they cannot. The
// opens (and the walk of an OCI layout directory) run on a thread that has
// become the user (internal/asuser, the daemon's one way of acting as a
// user); the data is read from the descriptors so opened. What the kernel
// or containers/image then parse is only ever our own root-owned copy.

var errNotRegular = errors.New("not a regular file")

// openRegular opens p read-only without blocking on a FIFO or taking a
// controlling tty, and refuses anything but a regular file.
func openRegular(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: %w", p, errNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// writeLayoutTar writes the OCI layout at dir as a tar stream of regular
// files only (index.json, oci-layout, blobs/ALG/HEX), following symlinks
// with the user's permissions. Anything else in the directory is skipped.
func writeLayoutTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	add := func(rel string) error {
		f, err := openRegular(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime()}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		// Exactly Size bytes: the user may grow the file meanwhile.
		_, err = io.Copy(tw, io.NewSectionReader(f, 0, fi.Size()))
		return err
	}
	for _, rel := range []string{"oci-layout", "index.json"} {
		if err := add(rel); err != nil {
			return err
		}
	}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	for _, a := range algs {
		blobs, err := os.ReadDir(filepath.Join(dir, "blobs", a.Name()))
		if err != nil {
			continue
		}
		for _, b := range blobs {
			if err := add(filepath.Join("blobs", a.Name(), b.Name())); err != nil && !errors.Is(err, errNotRegular) {
				return err
			}
		}
	}
	return tw.Close()
}

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
	if err != nil && errors.Is(err, fs.ErrPermission) && !errors.Is(err, ErrPermission) {
		return &causeError{err.Error(), ErrPermission}
	}
	return err
}

// openAsUser opens the regular file p with cred's permissions and returns
// it; the caller closes it. Root's requests are opened directly.
func openAsUser(p string, cred credential) (*os.File, error) {
	if cred.UID == 0 {
		return openRegular(p)
	}
	var f *os.File
	err := asuser.Do(cred, func() (err error) {
		f, err = openRegular(p)
		return err
	})
	return f, asUserError(err)
}

// tarLayoutAsUser writes the OCI layout at dir, read with cred's
// permissions, into the tar file out (created 0600); a layout of more
// than limit (> 0) bytes is refused with ErrTooLarge.
func tarLayoutAsUser(dir string, cred credential, out string, limit int64) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Counted as written: the user may make the layout anything.
	budget := &sizeBudget{limit: limit}
	write := func() error { return writeLayoutTar(&budgetWriter{w: f, b: budget}, dir) }
	if cred.UID == 0 {
		err = write()
	} else {
		err = asuser.Do(cred, write)
	}
	if err != nil {
		if limit > 0 && budget.used.Load() > limit {
			return tooLarge("is", limit)
		}
		return asUserError(err)
	}
	return f.Close()
}
