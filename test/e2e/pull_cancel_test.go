//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A user who kills their pull's client while a layer is being extracted
// stops the extraction (outside review 12): containers/storage's
// extractor ran on, chrooted and root, for up to two minutes of CPU after
// the client had gone, with the user's pull slot given back meanwhile.
// The layer forces extraction (a path twice), and is smaller than the
// pipe to the extractor but slow to unpack (files 2,000 directories
// deep): starving the extractor of input, all the old code did, could not
// stop it.
func TestPullCancelledWhileExtracting(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	image := slowImage(t, node, 2000, 180)
	pull, extractor := pullUntilExtracting(t, node, cluster["TEST_USER"], image)
	// Let it get into the deep part.
	time.Sleep(time.Second)
	if !runningAs(extractor, "exe") {
		t.Fatalf("the extractor ended within a second: the layer is too quick to test a cancellation")
	}
	pull.kill()
	killed := time.Now()
	if !waitFor(5*time.Second, func() bool { return !runningAs(extractor, "exe") }) {
		t.Fatalf("the extractor (pid %d) still runs 5s after its pull's client was killed", extractor)
	}
	t.Logf("the extractor ended %s after the client", time.Since(killed).Round(100*time.Millisecond))
	// The pull is gone too: its work directory is removed.
	tmp := filepath.Join(cluster["LAB"], "nodelocal", "images", "tmp")
	if !waitFor(10*time.Second, func() bool {
		return strings.TrimSpace(onNode(t, node, "", `ls -A "$1"`, tmp).stdout) == ""
	}) {
		t.Errorf("the cancelled pull's files are still in %s:\n%s", tmp, onNode(t, node, "", `ls -lA "$1"`, tmp).stdout)
	}
}

// All users' pulls at once are bounded by max_pulls: with 1, another
// user's pull waits while the first extracts, is told why, and goes on
// once the first is cancelled.
func TestMaxPullsAllUsers(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	restart := func() {
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	}
	if err := os.WriteFile(conf, configWith(orig, "max_pulls = 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(conf, orig, 0o644)
		restart()
	})
	restart()
	image := slowImage(t, node, 2000, 180)
	small := readableTempDir(t) + "/small.tar"
	mustSucceed(t, run(t, "tar", "-C", "../../build/images/small", "-cf", small, "."))
	mustSucceed(t, run(t, "chmod", "a+r", small))
	t.Cleanup(func() { podmanHpcd(t, node, "rmi", "oci-archive:"+small) })

	first, _ := pullUntilExtracting(t, node, cluster["TEST_USER"], image)
	second := startPull(t, node, "nobody", "oci-archive:"+small)
	if !waitFor(20*time.Second, func() bool { return strings.Contains(second.output(), "(max_pulls)") }) {
		t.Fatalf("another user's pull was not told it waits for max_pulls: %s", second.output())
	}
	select {
	case <-second.done:
		t.Fatalf("another user's pull ended while the first ran: %s", second.output())
	default:
	}
	first.kill()
	second.succeeds(t, 60*time.Second, "the waiting pull, once the first ended")
}

// Two clients of one user pull the same image, sharing one pull; the
// first one's client is killed while the layers are extracted: the pull
// goes on for the second, its helpers charged to the second (outside
// review 13: the next helper was charged to the first client's gone
// process, and the pull failed for both). Another user's pull of the same
// image is theirs anyway (TestGetOtherUsersPullTheirOwn).
func TestSharedPullOutlivesFirstClient(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	image := slowImage(t, node, 1500, 150)
	first, _ := pullUntilExtracting(t, node, cluster["TEST_USER"], image)
	second := startPull(t, node, cluster["TEST_USER"], image)
	time.Sleep(500 * time.Millisecond) // joined
	first.kill()
	second.succeeds(t, 120*time.Second, "the second client's pull, once the first client went")
}

// slowImage is the small image with a layer from writeSlowLayer on top,
// as an OCI layout every user may read (2000, 180: about 20 s of
// extraction on the test bed).
func slowImage(t *testing.T, node string, depth, files int) string {
	t.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skipf("%q not found in PATH", "umoci")
	}
	dir := readableTempDir(t)
	layout := filepath.Join(dir, "img")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", layout))
	layer := filepath.Join(dir, "layer.tar")
	writeSlowLayer(t, layer, depth, files)
	mustSucceed(t, run(t, "umoci", "raw", "add-layer", "--image", layout+":latest", layer))
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", dir))
	image := "oci:" + layout + ":latest"
	t.Cleanup(func() { podmanHpcd(t, node, "rmi", image) })
	return image
}

// bgPull is a podman-hpcd pull client running in the background.
type bgPull struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

func (p *bgPull) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *bgPull) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// succeeds waits up to limit for the pull to end, and fails t unless it
// ended well, printing the image's digest.
func (p *bgPull) succeeds(t *testing.T, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("%s did not end within %s: %s", what, limit, p.output())
	}
	if !p.cmd.ProcessState.Success() || !strings.Contains(p.output(), "sha256:") {
		t.Fatalf("%s failed (%v): %s", what, p.cmd.ProcessState, p.output())
	}
}

// kill kills the client and waits for it.
func (p *bgPull) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// startPull starts user's podman-hpcd pull of image on node.
func startPull(t *testing.T, node, user, image string) *bgPull {
	t.Helper()
	p := &bgPull{done: make(chan struct{})}
	p.cmd = exec.Command(cluster["NODE_EXEC"], node, "runuser", "-u", user, "--",
		cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], image)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// pullUntilExtracting starts user's pull of image on node and returns once
// the daemon's extractor runs for it, with the extractor's pid.
func pullUntilExtracting(t *testing.T, node, user, image string) (*bgPull, int) {
	t.Helper()
	daemon := daemonPid(t, node)
	p := startPull(t, node, user, image)
	extractor := 0
	if !waitFor(60*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("the pull ended before its extractor was seen: %s", p.output())
		default:
		}
		for pid := range helpersOf(daemon) {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(cmd), "podman-hpc-extract-layer\x00") {
				extractor = pid
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no extractor of podman-hpcd (pid %d) within 60s; the pull: %s", daemon, p.output())
	}
	return p, extractor
}

// writeSlowLayer writes a layer tar that a streamed pull hands to
// extraction (its first path is there twice) and that the extractor
// takes long to unpack: files depth directories deep (the directories
// are implied, made by the extractor).
func writeSlowLayer(t *testing.T, path string, depth, files int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	mtime := time.Unix(1700000000, 0)
	add := func(h *tar.Header, body string) {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		add(&tar.Header{Name: "twice", Typeflag: tar.TypeReg, Mode: 0o644}, "x")
	}
	deep := "n" + strings.Repeat("/n", depth-1)
	for i := range files {
		add(&tar.Header{Name: fmt.Sprintf("%s/f%d", deep, i), Typeflag: tar.TypeReg, Mode: 0o644}, "x")
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
