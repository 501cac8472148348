//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skipf("%q not found in PATH", "umoci")
	}
	node := nodes()[0]
	dir := readableTempDir(t)
	layout := filepath.Join(dir, "img")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", layout))
	layer := filepath.Join(dir, "layer.tar")
	writeSlowLayer(t, layer, 2000, 180)
	mustSucceed(t, run(t, "umoci", "raw", "add-layer", "--image", layout+":latest", layer))
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", dir))
	image := "oci:" + layout + ":latest"
	t.Cleanup(func() { podmanHpcd(t, node, "rmi", image) })

	daemon := daemonPid(t, node)
	pull := exec.Command(cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--",
		cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], image)
	pull.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	pull.Stdout, pull.Stderr = &out, &out
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
	pulled := make(chan struct{})
	go func() { pull.Wait(); close(pulled) }()

	extractor := 0
	if !waitFor(60*time.Second, func() bool {
		select {
		case <-pulled:
			t.Fatalf("the pull ended before its extractor was seen: %s", out.String())
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
		t.Fatalf("no extractor of podman-hpcd (pid %d) within 60s; the pull: %s", daemon, out.String())
	}
	// Let it get into the deep part.
	time.Sleep(time.Second)
	if !runningAs(extractor, "exe") {
		t.Fatalf("the extractor ended within a second: the layer is too quick to test a cancellation")
	}
	syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
	<-pulled
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
