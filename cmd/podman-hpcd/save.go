package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// save writes the container's filesystem (the image with the step's
// writes) as a squashfs at the user's path, as the user: the file is theirs,
// and a path they could not write to stays out of reach. An existing file is
// replaced, as under pyxis. The result is usable as --container-image=PATH.
func (m *manager) save(ctx context.Context, c *container, req *containerRequest) error {
	_, cred, err := lookupAccount(req.UID, req.GID)
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.stateDir, "save-"+c.id+".sqfs")
	defer os.Remove(tmp)
	// Our init's mount point is not the user's.
	cmd := exec.CommandContext(ctx, "mksquashfs", c.rootfs, tmp, "-noappend", "-quiet", "-no-progress",
		"-comp", "zstd", "-Xcompression-level", "3", "-e", strings.TrimPrefix(filepath.Dir(initPath), "/"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs: %s: %w", strings.TrimSpace(string(out)), err)
	}
	src, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer src.Close()
	files, err := openFilesAsUser(cred, []string{req.Save}, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("--container-save: %w", err)
	}
	dst := files[0]
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		dst.Truncate(0)
		return fmt.Errorf("--container-save: write %s: %w", req.Save, err)
	}
	return dst.Sync()
}
