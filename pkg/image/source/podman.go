package source

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
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// podman://IMAGE is an image in the user's own podman storage (what their
// `podman build` or `podman pull` on the node made). That storage is the
// user's: under their home, its files owned by their subordinate ids, its
// paths theirs to point anywhere. Root does not walk it: `podman save` runs
// as the user, and root only reads the archive it writes to a pipe, into a
// root-owned copy that is then an ordinary docker-archive (its layers
// checked as every archive's are).
//
// "As the user" is what rootless podman itself would be: uid 0 of a user
// namespace that maps the user's uid and gid and their subordinate ranges
// (/etc/subuid, /etc/subgid), with no supplementary group, so the kernel
// applies the user's permissions and nothing more. The daemon makes that
// namespace (as newuidmap would) and tells podman it is in it
// (_CONTAINERS_USERNS_CONFIGURED): rootless podman would otherwise make a
// namespace of its own and a "pause" process that keeps it, which would
// outlive the export in the daemon's cgroup, and whose pid file is the
// user's own podman's. The namespace has its own PIDs and /proc, under a
// helper that is its init: when the helper exits, the kernel kills whatever
// podman left. Nothing the user's podman starts outlives the export.
//
// The namespace is root's (the daemon makes it), so the user cannot enter
// or trace what runs in it; its capabilities reach only files of the ids it
// maps (the user's own, as with rootless podman) and its own mount
// namespace, where the daemon's mounts it copied are locked by the kernel
// (none can be unmounted to uncover what it hides).

// podmanHelper is the reexec name of that init.
const podmanHelper = "podman-hpc-podman-save"

func init() { reexec.Register(podmanHelper, podmanSaveMain) }

// exportPodman writes the user's podman image name as a docker-archive to
// out, through `podman save` run as cred (named user, "" if unknown) with
// home as HOME; more than limit (> 0) bytes fails with ErrTooLarge. podman
// is the binary ("": from PATH).
func exportPodman(ctx context.Context, podman, name string, cred Credential, user, home string, out io.Writer, limit int64) error {
	if cred.UID == 0 {
		// Root's podman storage is the node's: not a user's to name.
		return &opError{kind: image.ErrPermission, detail: "podman:// reads a user's own podman storage, and root's is the node's"}
	}
	if home == "" || !strings.HasPrefix(home, "/") {
		return &opError{kind: image.ErrBadReference, detail: "podman:// needs your home directory (where your podman storage is), and the daemon was not told it"}
	}
	if podman == "" {
		podman = "podman"
	}
	bin, err := exec.LookPath(podman)
	if err != nil {
		return &opError{kind: image.ErrUnsupported, detail: "podman:// needs podman on the node: " + err.Error(), hint: "ask your admin"}
	}
	uids, err := subIDs(subUIDFile, cred.UID, user)
	if err != nil {
		return err
	}
	gids, err := subIDs(subGIDFile, cred.GID, user)
	if err != nil {
		return err
	}
	cmd := reexec.Command(podmanHelper, bin, name)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home,
		"_CONTAINERS_USERNS_CONFIGURED=1",
		"_CONTAINERS_ROOTLESS_UID=" + strconv.FormatUint(uint64(cred.UID), 10),
		"_CONTAINERS_ROOTLESS_GID=" + strconv.FormatUint(uint64(cred.GID), 10)}
	if user != "" {
		cmd.Env = append(cmd.Env, "USER="+user, "LOGNAME="+user)
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS,
		UidMappings: uids, GidMappings: gids, GidMappingsEnableSetgroups: true,
		// Root of the namespace, in no group but the user's: without an
		// empty setgroups the daemon's own groups would stay.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	budget := &image.Budget{Limit: limit}
	cmd.Stdout = budget.Writer(out)
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	// Should a process of the namespace hold the pipes past its end (one
	// stuck in the kernel), Wait gives up on them.
	cmd.WaitDelay = 5 * time.Second
	// The helper waits on gate (its fd 3) until it is where the request's
	// processes belong (charge): podman, and whatever a user's
	// configuration makes it run, start there.
	gate, open, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("podman save: %w", err)
	}
	defer open.Close()
	cmd.ExtraFiles = []*os.File{gate}
	// From the spawner's thread: its Pdeathsig fires when the daemon
	// dies, never when some other thread of it ends.
	err = spawn.Start(cmd)
	gate.Close()
	if err != nil {
		return fmt.Errorf("podman save: %w", err)
	}
	if err := charge.Place(ctx, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("podman save: %w", err)
	}
	open.Write([]byte{1})
	open.Close()
	// The helper is the namespace's init: killed, it takes every process
	// of the namespace with it (the kernel kills them, and reaps them before
	// Wait returns), whatever podman or a program of the user's started,
	// daemons included. os.Process signals through a pidfd: never another
	// process that got the helper's pid.
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	stop()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case limit > 0 && budget.Used() > limit:
		return image.TooLarge("is", limit)
	}
	msg := podmanMessage(stderr.String())
	if strings.Contains(msg, "image not known") || strings.Contains(msg, "no such image") {
		return &opError{kind: image.ErrNoImage, detail: fmt.Sprintf("your podman storage on this node has no image %q", name), hint: "podman images lists yours (run podman build or podman pull on this node)"}
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("podman save %s (as uid %d): %s", name, cred.UID, msg)
}

// podmanMessage is podman's error line ("Error: ...", else its last
// logged error's msg), without podman's warnings about the node's mounts.
func podmanMessage(s string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if e, ok := strings.CutPrefix(l, "Error: "); ok {
			return e
		}
		if l == "" || strings.Contains(l, "level=warning") {
			continue
		}
		last = l
		if _, m, ok := strings.Cut(l, ` msg="`); ok && strings.Contains(l, "level=") {
			last = strings.ReplaceAll(strings.TrimSuffix(m, `"`), `\"`, `"`)
		}
	}
	return last
}

// podmanSaveMain is the helper: PID 1 of the new PID namespace, uid 0 of
// the user's namespace. It mounts that namespace's /proc, runs
// `podman save` (args: podman image) with its stdout as podman's, and
// exits with podman's status, taking the namespace's processes with it.
func podmanSaveMain() {
	os.Exit(podmanSave(os.Args[1:]))
}

func podmanSave(args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
		return 125
	}
	if len(args) != 2 || os.Getpid() != 1 || os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "" {
		return fail("%s: not run by podman-hpcd", podmanHelper)
	}
	// The daemon's go-ahead: this process is in the cgroups it belongs
	// in, and so will be all it starts.
	gate := os.NewFile(3, "gate")
	if n, _ := gate.Read(make([]byte, 1)); n != 1 {
		return fail("%s: the daemon did not let it start", podmanHelper)
	}
	gate.Close()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fail("make mounts slaves: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	cmd := exec.Command(args[0], "save", "--quiet", "--format", "docker-archive", "--", args[1])
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		return fail("run %s: %v", args[0], err)
	}
	return 0
}

// The subordinate id files podman's newuidmap and newgidmap read.
var (
	subUIDFile = "/etc/subuid"
	subGIDFile = "/etc/subgid"
)

// subIDs is the user namespace's map for id: id as 0, then the ranges
// file gives the user (by name, or by number) from 1 on, as rootless
// podman maps them. A user without ranges gets id alone.
func subIDs(file string, id uint32, user string) ([]syscall.SysProcIDMap, error) {
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(id), Size: 1}}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	next := 1
	num := strconv.FormatUint(uint64(id), 10)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) != 3 || (f[0] != num && (user == "" || f[0] != user)) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		// The kernel takes at most 340 lines; a range holding id would
		// map it twice.
		if err1 != nil || err2 != nil || n == 0 || len(m) >= 340 || (uint64(id) >= start && uint64(id) < start+n) {
			continue
		}
		m = append(m, syscall.SysProcIDMap{ContainerID: next, HostID: int(start), Size: int(n)})
		next += int(n)
	}
	return m, nil
}

// tailBuffer keeps the last 8 KiB written to it: enough to show why a
// child failed without holding all its chatter.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const max = 8 << 10
	t.b = append(t.b, p...)
	if len(t.b) > max {
		t.b = append(t.b[:0], t.b[len(t.b)-max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
