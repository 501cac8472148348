package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Runtime drives an OCI runtime binary (runc or crun; they share a CLI).
// Tests swap Command for a script.
type Runtime struct {
	Command string   // binary name or path
	Root    string   // --root: the runtime's state directory; "" for its default
	Args    []string // global options before the command (crun's --cgroup-manager)
	// NS, when set, is the mount namespace the runtime runs in (and so
	// the namespace its containers' are copied from); nil: the caller's.
	NS *MountNS
	// RemovesOwnState: a forced Delete of a container whose init the
	// caller holds (DeleteOpts.Pidfd) and whose state holds no poststop
	// hook removes the runtime's state directory (Root/id)
	// itself, once the init is dead, instead of running "delete". Only
	// for crun without cgroups (--cgroup-manager=disabled), whose delete
	// then does nothing else: it kills nothing (Delete kills and awaits
	// the init), destroys no cgroup, and runs poststop hooks, which a
	// container that has any still gets by the runtime. It spares an exec
	// of the runtime, a dynamically linked program (~2 ms of CPU), at
	// every container's removal.
	RemovesOwnState bool

	sealed *sealedBinary // see ExecSealed
}

// ExecSealed makes the runtime run from a sealed in-memory copy of Command,
// which must be an executable (not a script): crun and runc then skip the
// copy of themselves they make at every start (sealed.go).
func (r *Runtime) ExecSealed() {
	r.sealed = &sealedBinary{path: r.Command}
}

// ErrNotExist is returned by State for a container the runtime does not know.
var ErrNotExist = errors.New("container does not exist")

// RunOpts are the options of Runtime.Run.
type RunOpts struct {
	// Output takes the runtime's and the container's output (nil: one
	// of Run's own, closed when it returns).
	Output *Output
	// Created, if set, is called between create and start (Run).
	Created func(pid int) error
	Bundle  string // directory holding config.json
	PidFile string // where the runtime writes the init's pid
}

func (o RunOpts) args(id string) []string {
	a := []string{"run", "--detach", "--bundle", o.Bundle}
	if o.PidFile != "" {
		a = append(a, "--pid-file", o.PidFile)
	}
	return append(a, id)
}

// DeleteOpts are the options of Runtime.Delete.
type DeleteOpts struct {
	Force bool // kill the container first if it is running
	// Pidfd refers to the container's init (pidfd_open(2)) when the
	// caller holds one; 0: Force finds the init through State.
	Pidfd int
	// Background runs the runtime at the lowest CPU priority: a removal
	// is not waited for, and yields the CPU to the node's jobs.
	Background bool
}

func (o DeleteOpts) args(id string) []string {
	if o.Force {
		return []string{"delete", "--force", id}
	}
	return []string{"delete", id}
}

// State is the part of the runtime's state we use.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

// Run creates and starts container id detached: when it returns nil, the
// init process runs. The runtime's output, and the container's (the image's
// entrypoint, and whatever it leaves running), go to o.Output, a bounded
// pipe (output.go): a file would let the container's processes fill the
// daemon's state directory. With o.Created, Run creates the container,
// calls Created with its first process's pid before anything of the image
// has run (the caller opens its namespaces there: an entrypoint may not
// swap in namespaces of its own), then starts it.
func (r *Runtime) Run(ctx context.Context, id string, o RunOpts) error {
	out := o.Output
	if out == nil {
		out = NewOutput()
		defer out.Close()
	}
	w, err := out.writer()
	if err != nil {
		return fmt.Errorf("%s run %s: %w", r.Command, id, err)
	}
	defer w.Close()
	if o.Created == nil {
		return r.runStage(ctx, "run", o.args(id), w, out)
	}
	create := []string{"create", "--bundle", o.Bundle, "--pid-file", o.PidFile, id}
	if err := r.runStage(ctx, "create", create, w, out); err != nil {
		return err
	}
	pid, err := readPidFile(o.PidFile)
	if err == nil {
		err = o.Created(pid)
	}
	if err != nil {
		return fmt.Errorf("%s create %s: %w", r.Command, id, err)
	}
	return r.runStage(ctx, "start", []string{"start", id}, w, out)
}

// runStage runs the runtime with args, its output to w; an error carries
// what it and the container wrote.
func (r *Runtime) runStage(ctx context.Context, verb string, args []string, w *os.File, out *Output) error {
	cmd := r.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// Not /dev/null: crun 1.8 hands the container's stdio to the
	// container's user (fchown) when it has a user namespace, and
	// would make the node's /dev/null theirs. An empty pipe instead.
	cmd.Stdin = strings.NewReader("")
	if err := r.run(ctx, cmd, 0); err != nil {
		return &runtimeError{cmd: r.Command + " " + verb, stderr: out.Settle(), err: err}
	}
	return nil
}

// readPidFile reads the pid the runtime wrote.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Delete removes the container's runtime state (and with Force, kills it).
// A container the runtime does not know is not an error: deleting twice is fine.
// With Force the init is killed here, and its end awaited, before the
// runtime deletes: runc's own --force polls for the death every 100 ms, and
// crun without cgroups kills nothing.
func (r *Runtime) Delete(ctx context.Context, id string, o DeleteOpts) error {
	if o.Force {
		if err := r.killInit(ctx, id, o.Pidfd); err != nil {
			return err
		}
		if o.Pidfd > 0 {
			// Its init, held by the caller, was killed and awaited.
			if done, err := r.removeState(id); done {
				return err
			}
		}
	}
	nice := 0
	if o.Background {
		nice = BackgroundNice
	}
	_, err := r.execNice(ctx, nice, o.args(id)...)
	if err != nil && isNotExist(err) {
		return nil
	}
	return err
}

// removeState removes the state directory of container id, whose init is
// dead, when the runtime removes its own state (RemovesOwnState) and the
// container has no poststop hook; done is false when the runtime must
// delete it.
func (r *Runtime) removeState(id string) (done bool, err error) {
	if !r.RemovesOwnState || r.Root == "" || id == "" || id == "." || id == ".." || strings.ContainsRune(id, '/') {
		return false, nil
	}
	dir := filepath.Join(r.Root, id)
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		// Not a container the runtime knows (deleted already), or
		// one whose state it never finished: its delete decides.
		return false, nil
	}
	if err != nil {
		return false, nil
	}
	if !bytes.Contains(b, []byte(`"poststop"`)) {
		// No hook of that stage: no need to decode the spec.
		return true, removeStateDir(id, dir)
	}
	var spec struct {
		Hooks *struct {
			Poststop []json.RawMessage `json:"poststop"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal(b, &spec); err != nil || (spec.Hooks != nil && len(spec.Hooks.Poststop) > 0) {
		return false, nil
	}
	return true, removeStateDir(id, dir)
}

func removeStateDir(id, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s's runtime state: %w", id, err)
	}
	return nil
}

// State returns the container's state, or ErrNotExist.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.exec(ctx, "state", id)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("%s: %w", id, ErrNotExist)
		}
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("%s state %s: %w", r.Command, id, err)
	}
	return &st, nil
}

// runtimeError keeps the runtime's own words: they name the cause.
type runtimeError struct {
	cmd    string
	stderr string
	err    error
}

func (e *runtimeError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = e.err.Error()
	}
	// runc logs JSON-ish lines; keep the last, which says what failed.
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	return fmt.Sprintf("%s: %s", e.cmd, msg)
}

func (e *runtimeError) Unwrap() error { return e.err }

func isNotExist(err error) bool {
	var re *runtimeError
	if !errors.As(err, &re) {
		return false
	}
	s := strings.ToLower(re.stderr)
	return strings.Contains(s, "does not exist") || strings.Contains(s, "not exist") || strings.Contains(s, "no such file")
}

// command returns the runtime invocation. Stdin is /dev/null; the runtime
// (and so the container's init) inherits no other fd and no environment but PATH.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	var full []string
	if r.Root != "" {
		full = append(full, "--root", r.Root)
	}
	full = append(append(full, r.Args...), args...)
	cmd := exec.CommandContext(ctx, r.Command, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	// A runtime abandoned (the step cancelled while its container is
	// made) goes with everything it started: the container's first
	// process and its hooks are in its process group. Killing the runtime
	// alone left them, a hook that never returns holding the rest, as
	// root, outside Slurm (review of 2026-12-06).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	return cmd
}

func (r *Runtime) exec(ctx context.Context, args ...string) ([]byte, error) {
	return r.execNice(ctx, 0, args...)
}

// BackgroundNice is the niceness of work nobody waits for: a removal, a
// container's init that only waits.
const BackgroundNice = 19

// execNice runs the runtime at niceness nice (0: the daemon's).
func (r *Runtime) execNice(ctx context.Context, nice int, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := r.run(ctx, cmd, nice); err != nil {
		return nil, &runtimeError{cmd: r.Command + " " + args[0], stderr: stderr.String(), err: err}
	}
	return stdout.Bytes(), nil
}

// run starts cmd in the runtime's mount namespace, at niceness nice (0:
// the daemon's), and waits for it.
func (r *Runtime) run(ctx context.Context, cmd *exec.Cmd, nice int) error {
	if err := r.start(cmd); err != nil {
		return err
	}
	if nice != 0 {
		// From the runtime's first instructions on; it may be gone.
		unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, nice)
	}
	return waitCmd(ctx, cmd)
}

func (r *Runtime) start(cmd *exec.Cmd) error {
	if r.sealed != nil {
		exe, started := r.sealed.acquire()
		defer started()
		cmd.Path = exe
	}
	return r.NS.Do(cmd.Start)
}
