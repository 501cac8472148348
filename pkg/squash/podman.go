package squash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// podman://IMAGE is an image in the user's own podman storage (what their
// `podman build` or `podman pull` on the node made). That storage is the
// user's: under their home, its files owned by their subordinate ids, its
// paths theirs to point anywhere. Root does not walk it: `podman save` runs
// as the user, in the user's own rootless podman, and root only reads the
// archive it writes to a pipe, into a root-owned copy that is then an
// ordinary docker-archive (its layers checked as every archive's are).
//
// Rootless podman leaves a process behind (its "pause" process, which
// keeps its user namespace for the next podman command), and newuidmap,
// which it runs, reads /proc. So podman runs in a PID namespace of its
// own, with a /proc of that namespace, under a root helper that is the
// namespace's init: when the helper exits, the kernel kills whatever podman
// left. Nothing the user's podman starts outlives the export.

// podmanHelper is the reexec name of that init.
const podmanHelper = "podman-hpc-podman-save"

func init() { reexec.Register(podmanHelper, podmanSaveMain) }

// exportPodman writes the user's podman image name as a docker-archive to
// out, through `podman save` run as cred with home as HOME; more than limit
// (> 0) bytes fails with ErrTooLarge. podman is the binary ("": from PATH).
func exportPodman(ctx context.Context, podman, name string, cred credential, home string, out io.Writer, limit int64) error {
	if cred.UID == 0 {
		// Root's podman storage is the node's: not a user's to name.
		return &opError{kind: ErrPermission, detail: "podman:// reads a user's own podman storage, and root's is the node's"}
	}
	if home == "" || !strings.HasPrefix(home, "/") {
		return &opError{kind: ErrBadReference, detail: "podman:// needs your home directory (where your podman storage is), and the daemon was not told it"}
	}
	bin, err := exec.LookPath(or(podman, "podman"))
	if err != nil {
		return &opError{kind: ErrUnsupported, detail: "podman:// needs podman on the node: " + err.Error(), hint: "ask your admin"}
	}
	groups := make([]string, len(cred.Groups))
	for i, g := range cred.Groups {
		groups[i] = strconv.FormatUint(uint64(g), 10)
	}
	cmd := reexec.Command(podmanHelper, bin, strconv.FormatUint(uint64(cred.UID), 10),
		strconv.FormatUint(uint64(cred.GID), 10), strings.Join(groups, ","), home, name)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	budget := &sizeBudget{limit: limit}
	cmd.Stdout = &budgetWriter{w: out, b: budget}
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("podman save: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	stop()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case limit > 0 && budget.used.Load() > limit:
		return tooLarge("is", limit)
	}
	msg := podmanMessage(stderr.String())
	if strings.Contains(msg, "image not known") || strings.Contains(msg, "no such image") {
		return &opError{kind: ErrNoImage, detail: fmt.Sprintf("your podman storage on this node has no image %q", name), hint: "podman images lists yours (run podman build or podman pull on this node)"}
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("podman save %s (as uid %d): %s", name, cred.UID, msg)
}

// podmanMessage is podman's error line ("Error: ..."), without podman's
// warnings about the node's mounts.
func podmanMessage(s string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if e, ok := strings.CutPrefix(l, "Error: "); ok {
			return e
		}
		if l != "" && !strings.Contains(l, "level=warning") {
			last = l
		}
	}
	return last
}

// podmanSaveMain is the helper: PID 1 of a new PID namespace, root, in a
// new mount namespace. It mounts that namespace's /proc, runs
// `podman save` as the user (args: podman uid gid groups home image) with
// its stdout as podman's, and exits with podman's status, taking the
// namespace's processes with it.
func podmanSaveMain() {
	os.Exit(podmanSave(os.Args[1:]))
}

func podmanSave(args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
		return 125
	}
	if len(args) != 6 || os.Getpid() != 1 {
		return fail("%s: not run by podman-hpcd", podmanHelper)
	}
	bin, home, name := args[0], args[4], args[5]
	uid, err1 := strconv.ParseUint(args[1], 10, 32)
	gid, err2 := strconv.ParseUint(args[2], 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid == 0 {
		return fail("bad user: %v", err)
	}
	var groups []uint32
	for _, g := range strings.Split(args[3], ",") {
		if g == "" {
			continue
		}
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return fail("bad group %q", g)
		}
		groups = append(groups, uint32(n))
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fail("make mounts slaves: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	cmd := exec.Command(bin, "save", "--quiet", "--format", "docker-archive", "--", name)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		return fail("run %s: %v", bin, err)
	}
	return 0
}
