package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// entrypointTimeout bounds how long an image's entrypoint may take before it
// runs its arguments (our init).
const entrypointTimeout = 2 * time.Minute

// waitEntrypoint waits until the image's entrypoint has run its arguments,
// that is exec'd our init, and returns the environment it left: what the
// entrypoint exported reaches the tasks, as under pyxis. Its output (in the
// bounded output, oci.Output) is kept for --container-entrypoint-log and
// errors.
func (m *manager) waitEntrypoint(ctx context.Context, c *container) ([]string, error) {
	want := []byte(initPath + "\x00init\x00")
	what, hint := c.firstWhat()
	deadline := time.Now().Add(entrypointTimeout)
	// Most are done within a few ms (a SIF's environment scripts): polled
	// at 1 ms first, then less often, up to every 20 ms.
	delay := time.Millisecond
	for {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.initPid))
		exited := err != nil || zombie(c.initPid)
		switch {
		case exited:
			// Dead, its copies of the output's write end closed: all it
			// wrote arrives before the reader's end.
			c.entrypointLog = withoutNULs(c.output.Ended(time.Second))
		case bytes.Equal(cmdline, want) || time.Now().After(deadline):
			c.entrypointLog = withoutNULs(c.output.Settle())
		}
		switch {
		// An empty cmdline is a process in the middle of execve: wait.
		case exited:
			return nil, fmt.Errorf("%s exited before running the command%s; the output: %s", what, hint, oneLine(c.entrypointLog))
		case bytes.Equal(cmdline, want):
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c.initPid))
			if err != nil {
				return nil, fmt.Errorf("read the entrypoint's environment: %w", err)
			}
			return strings.Split(strings.TrimSuffix(string(environ), "\x00"), "\x00"), nil
		case time.Now().After(deadline):
			return nil, fmt.Errorf("%s did not run the command within %s%s; the output: %s", what, entrypointTimeout, hint, oneLine(c.entrypointLog))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// envFits fails a container whose environment (what its entrypoint or a
// SIF's environment scripts left, or the image's and hooks') would not
// fit in the answer to the plugin (wire.MaxEnv): the answer would be
// refused at its write, and the step fail with only "no answer".
func (c *container) envFits() error {
	n := wire.EnvSize(c.env)
	if n <= wire.MaxEnv {
		return nil
	}
	what, hint := "the image's config and hooks set", ""
	if c.runsFirst() {
		what, hint = c.firstWhat()
		what += " left"
	}
	return fmt.Errorf("the environment %s is %d bytes (%d variables), more than the %d the plugin takes; export fewer or shorter variables%s",
		what, n, len(c.env), wire.MaxEnv, hint)
}

func zombie(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] == 'Z' || st[i+2] == 'X'
}

// withoutNULs is the output as it goes to the plugin, as a C string: a NUL
// in it (a binary written to stdout) would make the whole answer
// unsendable.
func withoutNULs(s string) string { return strings.ReplaceAll(s, "\x00", "") }

// oneLine squeezes a log into one line for an error message: srun shows
// errors line by line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	if s == "" {
		return "(none)"
	}
	return s
}
