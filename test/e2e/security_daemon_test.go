//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flooder is a client that opens N connections to the daemon's socket, on
// each sends a frame header declaring BODY bytes and then only 6 of them,
// and reports on stdout "held H refused R other O" (held: no answer yet;
// refused: an answer, the first printed as "refusal: MESSAGE"). It then
// keeps the connections until a line on stdin: "close" ends it, "wait"
// waits for each held connection's answer first and reports
// "answered A: MESSAGE" (A held connections answered with MESSAGE, the
// first answer).
const flooder = `package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// answer reads one frame by deadline and returns its "message" value.
func answer(c net.Conn, deadline time.Time) (string, error) {
	c.SetReadDeadline(deadline)
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return "", err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr)-4)
	if _, err := io.ReadFull(c, body); err != nil {
		return "", err
	}
	f := strings.Split(string(body), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == "message" {
			return f[i+1], nil
		}
	}
	return "", errors.New("no message")
}

// answers reads an answer from each of conns at once, by deadline (a
// deadline past makes a Read fail before it looks for data).
func answers(conns []net.Conn, deadline time.Time) ([]string, []error) {
	msgs, errs := make([]string, len(conns)), make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs[i], errs[i] = answer(c, deadline)
		}()
	}
	wg.Wait()
	return msgs, errs
}

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	size, _ := strconv.Atoi(os.Args[3])
	frame := make([]byte, 8, 14)
	binary.BigEndian.PutUint32(frame, uint32(size+4))
	frame[4], frame[5] = 1, 1 // version 1, HELLO
	frame = append(frame, "client"...)
	var conns []net.Conn
	other := 0
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			other++
			continue
		}
		c.Write(frame) // a refused connection may be closed already
		conns = append(conns, c)
	}
	// Refusals come at once; a held connection hears nothing until the
	// body's deadline.
	time.Sleep(time.Second)
	var held []net.Conn
	refused, refusal := 0, ""
	msgs, errs := answers(conns, time.Now().Add(200*time.Millisecond))
	for i, c := range conns {
		switch {
		case errors.Is(errs[i], os.ErrDeadlineExceeded):
			held = append(held, c)
		case errs[i] == nil:
			refused++
			if refusal == "" {
				refusal = msgs[i]
			}
		default:
			fmt.Fprintln(os.Stderr, "read:", errs[i])
			other++
		}
	}
	fmt.Printf("held %d refused %d other %d\nrefusal: %s\n", len(held), refused, other, refusal)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "wait" {
		return
	}
	answered, first := 0, ""
	msgs, errs = answers(held, time.Now().Add(time.Minute))
	for i := range held {
		if errs[i] == nil {
			answered++
			if first == "" {
				first = msgs[i]
			}
		}
	}
	fmt.Printf("answered %d: %s\n", answered, first)
}
`

// buildFlooder compiles flooder into a directory every user may read.
func buildFlooder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// The test user runs it: its directory, and the test's above it.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o755)
	}
	src := filepath.Join(dir, "flooder.go")
	if err := os.WriteFile(src, []byte(flooder), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "flooder")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the flooder: %v\n%s", err, out)
	}
	return bin
}

// flood runs the flooder on node (as user, or as root when user is ""),
// opening n connections that each declare a body of size bytes.
type flood struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startFlood(t *testing.T, bin, node, user string, n, size int) *flood {
	t.Helper()
	args := []string{node}
	if user != "" {
		args = append(args, "runuser", "-u", user, "--")
	}
	args = append(args, bin, cluster["PODMAN_HPCD_SOCKET"], strconv.Itoa(n), strconv.Itoa(size))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, cluster["NODE_EXEC"], args...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &flood{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { f.stdin.Close(); f.cmd.Wait() })
	return f
}

// report reads the flooder's next line that starts with prefix.
func (f *flood) report(t *testing.T, prefix string) string {
	t.Helper()
	for {
		line, err := f.out.ReadString('\n')
		if err != nil {
			t.Fatalf("flooder ended before %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
}

// end tells the flooder to close (cmd "close") or to wait for the held
// connections' answers first ("wait").
func (f *flood) end(cmd string) {
	fmt.Fprintln(f.stdin, cmd)
}

// rssKB is a process's resident set, in kB.
func rssKB(t *testing.T, pid string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%s/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// Issue 12, item 8: 300 connections that each declare a 1 MiB frame and send
// a few bytes grew the daemon by ~330 MB (each body was allocated before it
// was read); a user could hold any number of connections, for ever; and an
// accept error ended the accept loop. Now a frame costs what arrived,
// a user holds at most 16 connections (the rest are told why and closed),
// a frame's body comes within 10 s or the connection is closed, and the
// daemon serves on: status answers and a container step runs after.
func TestSecurityDaemonFloodedConnections(t *testing.T) {
	requireRoot(t)
	const (
		conns    = 300
		declared = 1<<20 - 16 // a MiB frame, less a few bytes
		capPer   = 16         // podman-hpcd's per-uid cap (internal/server/server.go)
		maxGrow  = 40 << 10   // kB
	)
	node := nodes()[0]
	bin := buildFlooder(t)
	pidB, err := os.ReadFile(filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(pidB))
	uid := strings.TrimSpace(run(t, "id", "-u", cluster["TEST_USER"]).stdout)

	// Root's connections are not capped (slurmstepd holds one per step):
	// 300 held frames show what the frame reader itself costs. Twice: the
	// first round may get untouched pages from the kernel (a body
	// allocated but not written costs nothing yet); the second reuses the
	// first's memory, which Go zeroes, so a body allocated shows.
	before := rssKB(t, pid)
	for round := 1; round <= 2; round++ {
		f := startFlood(t, bin, node, "", conns, declared)
		if got := f.report(t, "held "); got != fmt.Sprintf("%d refused 0 other 0", conns) {
			t.Fatalf("root's %d connections: held %s", conns, got)
		}
		grew := rssKB(t, pid) - before
		t.Logf("root's %d connections, round %d: the daemon grew by %d kB", conns, round, grew)
		if grew > maxGrow {
			t.Errorf("%d connections declaring %d bytes each grew the daemon by %d MB, want < %d MB", conns, declared, grew>>10, maxGrow>>10)
		}
		f.end("close")
		f.cmd.Wait()
	}

	// The test user: 16 held, the rest refused with the reason; the
	// held ones cut off at the body's deadline.
	before = rssKB(t, pid)
	f := startFlood(t, bin, node, cluster["TEST_USER"], conns, declared)
	if got, want := f.report(t, "held "), fmt.Sprintf("%d refused %d other 0", capPer, conns-capPer); got != want {
		t.Errorf("user's %d connections: held %s, want held %s", conns, got, want)
	}
	want := "podman-hpcd: too many connections from uid " + uid + " (at most 16 at once); close some and retry"
	if got := f.report(t, "refusal: "); got != want {
		t.Errorf("refusal %q, want %q", got, want)
	}
	grew := rssKB(t, pid) - before
	t.Logf("the user's %d connections: the daemon grew by %d kB", conns, grew)
	if grew > maxGrow {
		t.Errorf("the user's flood grew the daemon by %d MB, want < %d MB", grew>>10, maxGrow>>10)
	}
	start := time.Now()
	f.end("wait")
	if got, want := f.report(t, "answered "), fmt.Sprintf("%d: podman-hpcd: message body not sent within 10s; closing the connection", capPer); got != want {
		t.Errorf("held connections: answered %s, want %s", got, want)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("held connections cut off after %v, want about 10s", d)
	}
	f.cmd.Wait()

	// The daemon serves on, for the user and for a step.
	r := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--",
		cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "podman-hpcd ") || !strings.Contains(r.stdout, "pid "+pid) {
		t.Errorf("status after the flood: %s", r)
	}
	r = asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "grep", "^ID=", "/etc/os-release")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "ID=podman-hpc-small") {
		t.Errorf("step after the flood: %s", r)
	}
	if !strings.Contains(daemonLog(t, node), "connections refused") {
		t.Error("the daemon's log does not say it refused connections")
	}
	checkNothingLeft(t, node)
}
