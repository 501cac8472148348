package hooks

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TimedCommand is the daemon's subcommand that runs a hook and times it.
const TimedCommand = "oci-hook"

// Timing is one hook run, as the wrapper recorded it.
type Timing struct {
	Name     string        `json:"name"`
	Stage    string        `json:"stage"`
	Path     string        `json:"path"`
	Duration time.Duration `json:"duration"`
	Exit     int           `json:"exit"`
	Err      string        `json:"err,omitempty"` // the hook could not be run at all
}

// Timed returns the hook that runs m.Hook timed: the runtime runs self (the
// daemon's binary, a path valid in the runtime's mount namespace) as
// "podman-hpcd oci-hook --log LOG --name NAME --stage STAGE --path PATH --
// ARGS...",
// which runs the hook with the same standard input (the container's state),
// output, environment, timeout and exit status, and appends a line to log.
// startContainer hooks run inside the container, where neither self nor
// log exist: they come back untimed. A hook without a timeout of its own
// gets DefaultTimeout.
func Timed(m Matched, self, log string) specs.Hook {
	timeout := m.Hook.Timeout
	if timeout == nil {
		t := DefaultTimeout
		timeout = &t
	}
	if m.Stage == "startContainer" {
		h := m.Hook
		h.Timeout = timeout
		return h
	}
	args := []string{"podman-hpcd", TimedCommand, "--log", log, "--name", m.Name, "--stage", m.Stage, "--path", m.Hook.Path, "--"}
	return specs.Hook{Path: self, Args: append(args, m.Hook.Args...), Env: m.Hook.Env, Timeout: timeout}
}

// DefaultTimeout is the seconds a hook without a timeout of its own may run:
// one waiting forever (on a FIFO the image planted where it writes) held its
// step, and the runtime, until the job ended (review of 2026-12-06).
const DefaultTimeout = 120

// RunTimed is the oci-hook command: args are what Timed put after the
// command's name. It returns the hook's exit status (128+N when signal N killed it),
// or 127 when the hook could not be started. A failure to write the log is
// reported on stderr and changes nothing else.
func RunTimed(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet(TimedCommand, flag.ContinueOnError)
	fl.SetOutput(stderr)
	logPath := fl.String("log", "", "append the timing to this file")
	var t Timing
	fl.StringVar(&t.Name, "name", "", "the hook's file name")
	fl.StringVar(&t.Stage, "stage", "", "the OCI stage")
	fl.StringVar(&t.Path, "path", "", "the hook program")
	if err := fl.Parse(args); err != nil || t.Path == "" || *logPath == "" {
		fmt.Fprintf(stderr, "usage: %s --log FILE --name NAME --stage STAGE --path PROGRAM -- [ARGS...]\n", TimedCommand)
		return 2
	}
	argv := fl.Args()
	if len(argv) == 0 {
		argv = []string{t.Path}
	}
	cmd := &exec.Cmd{Path: t.Path, Args: argv, Env: os.Environ(), Stdin: stdin, Stdout: stdout, Stderr: stderr,
		// The runtime kills us on the hook's timeout: the hook goes with us.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}}
	start := time.Now()
	err := cmd.Run()
	t.Duration = time.Since(start)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Exit = 128 + int(ws.Signal())
		}
	case err != nil:
		t.Exit, t.Err = 127, err.Error()
		fmt.Fprintf(stderr, "%s: %v\n", t.Path, err)
	}
	if err := appendTiming(*logPath, t); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", TimedCommand, err)
	}
	return t.Exit
}

func appendTiming(path string, t Timing) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadTimings returns the timings logged at or after offset, and the
// offset after the last whole line. A missing log has none.
func ReadTimings(path string, offset int64) ([]Timing, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset
	}
	var out []Timing
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return out, offset
		}
		offset += int64(len(line))
		var t Timing
		if json.Unmarshal(line, &t) == nil {
			out = append(out, t)
		}
	}
}
