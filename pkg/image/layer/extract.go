package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// extractorName is the reexec name of the extractor: this program again,
// chrooted into the root being built, unpacking one layer read from stdin.
const extractorName = "podman-hpc-extract-layer"

func init() { reexec.Register(extractorName, extractorMain) }

// extract runs the extractor on rootfs with layer (an uncompressed tar
// stream) as its stdin, and waits for it. It is containers/storage's
// extractor (archive.UnpackLayer) in a chrooted child, as chrootarchive
// runs it, but a child the daemon owns: when ctx ends it is killed at
// once, so a cancelled pull stops spending root's CPU and disk even on a
// layer whose unpacking is slow after its last byte was read (deep paths,
// many hard links). It dies with the daemon, and is charged to what it
// works for (package charge), as the squashers are.
func extract(ctx context.Context, rootfs string, layer *os.File) error {
	cmd := exec.CommandContext(ctx, reexec.Self(), rootfs)
	cmd.Args[0] = extractorName
	cmd.Stdin = layer
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := spawn.Start(cmd); err != nil {
		return err
	}
	if err := charge.Place(ctx, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("extractor: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	return nil
}

// extractorMain is the child's main: it never returns.
func extractorMain() {
	if err := extractorRun(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func extractorRun() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("%s: want 1 argument, the root", extractorName)
	}
	// Inside the chroot every path of the layer, and every symlink it
	// meets, resolves within the root being built. UnpackLayer with no
	// options looks no user or group up, so nothing of the image's
	// /etc is read.
	if err := unix.Chroot(os.Args[1]); err != nil {
		return fmt.Errorf("chroot %q: %w", os.Args[1], err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// Modes are the layer's, exactly.
	unix.Umask(0)
	// UnpackLayer makes a temporary directory for AUFS hard links; the
	// root being built may have no /tmp.
	tmp, err := os.MkdirTemp("/", ".podman-hpc-extract-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Setenv("TMPDIR", tmp)
	if _, err := archive.UnpackLayer("/", os.Stdin, &archive.TarOptions{}); err != nil {
		return err
	}
	// Take what follows the archive's end (its padding), so that the
	// scanner writing it does not fail.
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}
