package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// save writes the container's filesystem (the image with the step's
// writes) as a squashfs at the user's path, as the user: the file is theirs,
// and a path they could not write to stays out of reach. An existing file is
// replaced, as under pyxis. The result is usable as --container-image=PATH.
//
// The container's tree is the user's to change while it is read (another
// step in a named container, a process left running): mksquashfs reads it
// as the user (squash), into a temporary file of this save's own.
func (m *manager) save(ctx context.Context, c *container, req *wire.ContainerRequest, lim squashLimits) error {
	_, cred, err := lookupAccount(req)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(m.scratch, "save-*.sqfs")
	if err != nil {
		return wire.OptionErrorf("--container-save", "%w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := m.squash(ctx, c, tmp.Name(), lim); err != nil {
		return wire.OptionErrorf("--container-save", "%w", err)
	}
	// Only a regular file: a FIFO's open would wait for a reader, a
	// device's write go anywhere.
	dst, err := openOwnOutput(cred, req.Save, false)
	if err != nil {
		return wire.OptionErrorf("--container-save", "%w", err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, tmp); err != nil {
		dst.Truncate(0)
		return wire.OptionErrorf("--container-save", "write %s: %w", req.Save, err)
	}
	return dst.Sync()
}

// squash writes c's filesystem as a squashfs at out (an existing file of
// root's, in a directory only root may enter), every entry root's. It reads
// the container's own root, as the container's tasks see it (without their
// mounts), with the user's own credentials (squashfs.SquashTree): whatever
// the user changes in it while it is read, the save holds only what they
// could read themselves. It read, as root, an overlay mounted over the
// container's live writable layer, which overlayfs leaves undefined while
// the layer changes (issue 21).
func (m *manager) squash(ctx context.Context, c *container, out string, lim squashLimits) error {
	cred := credentialOf(c.req)
	if lim.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, lim.timeout,
			fmt.Errorf("mksquashfs ran longer than %s (the node's helper_timeout) and was stopped", lim.timeout))
		defer cancel()
	}
	return squashfs.SquashTree(ctx, c.rootfs, out, squashfs.TreeOptions{
		MaxSize:     lim.maxSize,
		Compression: m.compression,
		// Our init's mount point is not the user's.
		Exclude: []string{strings.TrimPrefix(wire.ReservedDir, "/")},
		Scratch: m.stateDir,
		Owner:   squashfs.Owner{UID: cred.UID, GID: cred.GID, Groups: cred.Groups},
	})
}
