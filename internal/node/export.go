package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// enroot's import and export (podman-hpcd import, podman-hpcd export):
// an image, or a container's filesystem, as a squashfs file of the user's,
// usable as --container-image=FILE. The file is created by a thread that
// has become the user (asuser), so it is theirs, where they may write, and
// never over a symlink; root only writes into the descriptor.

// FileRequest is where an import or export goes: Out, an absolute path,
// is created as the user (UID, GID, their groups from the node's account
// database); Force replaces an existing file, as enroot's -f does.
type FileRequest struct {
	UID, GID uint32
	Out      string
	Force    bool
}

// Import gets ref as Pull does (any reference --container-image takes)
// and writes its squashfs to r.Out.
func (n *Node) Import(ctx context.Context, ref string, pr PullRequest, r FileRequest) (*store.Image, error) {
	img, err := n.Pull(ctx, ref, pr)
	if err != nil {
		return nil, err
	}
	// Pinned while it is copied: a prune would remove it.
	unpin, err := n.store.pin(img.Digest)
	if err != nil {
		return nil, err
	}
	defer unpin()
	src, err := os.Open(img.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return img, writeAsUser(r, src)
}

// Export writes the filesystem of uid's container name on this node to
// r.Out: a named container's (of job, when given; the only one of that
// name otherwise), or the one of step JOB.STEP (a step's own, unnamed,
// container, as pyxis names them). It returns the container's id.
func (n *Node) Export(ctx context.Context, name, job string, r FileRequest) (string, error) {
	if n.mgr == nil {
		return "", errNoContainers
	}
	c, err := n.mgr.find(r.UID, name, job)
	if err != nil {
		return "", err
	}
	// One at a time per user, refused rather than queued: a client that
	// waited would hold one of the user's connections for it.
	release, err := n.squashes.take(ctx, r.UID, false)
	if err != nil {
		return "", err
	}
	defer release()
	tmp, err := os.CreateTemp(n.mgr.scratch, "export-*.sqfs")
	if err != nil {
		return "", err
	}
	// Removed whatever happens: a failed, stopped or too large squash
	// leaves nothing behind.
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := n.mgr.squash(ctx, c, tmp.Name(), n.squashLimits()); err != nil {
		return "", err
	}
	if !n.mgr.has(c) {
		return "", fmt.Errorf("container %s ended while it was read: nothing written", name)
	}
	return c.id, writeAsUser(r, tmp)
}

// openOwnOutput opens path as the user (cred) to write a squashfs into it:
// a new file (with excl, only a new one), or an existing regular file of
// theirs, emptied. Another user's file, even one they may write (a 0666
// file planted in /tmp), is refused before anything is written: it would
// keep its owner, who would then read the user's image.
func openOwnOutput(cred credential, path string, excl bool) (*os.File, error) {
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY
	if excl {
		flags |= unix.O_EXCL
	}
	files, err := asuser.OpenFiles(cred, []asuser.Want{{Path: path, Flags: flags, Mode: 0o644, Regular: true}})
	if err != nil {
		return nil, err
	}
	f := files[0]
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Uid != cred.UID {
		f.Close()
		return nil, fmt.Errorf("%s is another user's file (uid %d), which would keep its owner: remove it, or write elsewhere", path, st.Uid)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// find is uid's container name (see Export).
func (m *manager) find(uid uint32, name, job string) (*container, error) {
	var found []*container
	for _, c := range m.list() {
		if c.req.UID != uid {
			continue
		}
		jobs := []string{c.req.Job}
		for j := range c.jobs {
			jobs = append(jobs, j)
		}
		if job != "" && !slices.Contains(jobs, job) {
			continue
		}
		if (c.named && c.req.Name == name) || (!c.named && m.namesStep(c, name)) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no container of yours named %q on this node: podman-hpcd ps lists them (a step's own is JOBID.STEPID)", name)
	case 1:
		return found[0], nil
	}
	var jobs []string
	for _, c := range found {
		jobs = append(jobs, c.req.Job)
	}
	return nil, fmt.Errorf("%q names containers of jobs %s: say which with --job JOBID", name, strings.Join(jobs, ", "))
}

// has says whether c is still one of the node's containers.
func (m *manager) has(c *container) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containers[c.id] == c
}

// writeAsUser copies src into r.Out, created as the user; a failed copy
// leaves no file of ours behind. Only a regular file is written: the open
// does not wait for a FIFO's reader nor take a terminal.
func writeAsUser(r FileRequest, src io.Reader) error {
	cred := credentialOf(&wire.ContainerRequest{UID: r.UID, GID: r.GID})
	dst, err := openOwnOutput(cred, r.Out, !r.Force)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: file exists: remove it, or use -f to replace it", r.Out)
	}
	if err != nil {
		return err
	}
	defer dst.Close()
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if err != nil {
		dst.Truncate(0)
		if !r.Force {
			// Ours: made by the O_EXCL open. Unlinked as the user.
			asuser.Unlink(cred, r.Out)
		}
		return fmt.Errorf("write %s: %w", r.Out, err)
	}
	return nil
}
