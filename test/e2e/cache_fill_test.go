//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sparseCopy is an outside review's attack file: the small squashfs at
// src made size bytes long, sparse, its last byte written (the kernel
// and unsquashfs ignore what follows the file system), readable by all.
func sparseCopy(t *testing.T, src, dst string, size int64, last byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{last}, size-1); err != nil {
		t.Fatal(err)
	}
	return dst
}

// The review's finding: on a node whose cache file system is 2G
// (cache_max_size auto: 1G), one user pulled two sparse squashfs files at
// once and both went in, the cache over its limit and the disk nearly
// full, and another user's image then failed for want of space. Each
// pull now reserves its room first: of two 600M files one is refused,
// saying why, the cache's directory never holds more than cache_max_size,
// and another user's 500M file afterwards evicts the first user's image
// to make room.
func TestSecurityCacheFill(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "mksquashfs")
	}
	node := nodes()[0]
	const limit = 1 << 30 // half of the nodes' 2G tmpfs (test/cluster/up.sh)
	dir := readableTempDir(t)
	small := squashfsWith(t, dir, nil)
	big5 := sparseCopy(t, small, filepath.Join(dir, "big5.sqsh"), 600<<20, '5')
	big6 := sparseCopy(t, small, filepath.Join(dir, "big6.sqsh"), 600<<20, '6')
	other := sparseCopy(t, small, filepath.Join(dir, "other.sqsh"), 500<<20, 'o')
	pullAs := func(user, file string) result {
		return run(t, cluster["NODE_EXEC"], node, "runuser", "-u", user, "--",
			cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], file)
	}
	t.Cleanup(func() {
		for _, f := range []string{big5, big6, other} {
			podmanHpcd(t, node, "rmi", f)
		}
	})
	// Make room for the test: what other tests left goes first.
	podmanHpcd(t, node, "prune", "--all")

	images := filepath.Join(cluster["LAB"], "nodelocal", "images", "images")
	var most int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := run(t, cluster["NODE_EXEC"], node, "du", "-sb", images)
			if n, err := strconv.ParseInt(strings.Fields(r.stdout + " 0")[0], 10, 64); err == nil && n > most {
				most = n
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	got := make([]result, 2)
	for i, f := range []string{big5, big6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = pullAs(cluster["TEST_USER"], f)
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range got {
		switch {
		case r.code == 0:
			ok++
		case !strings.Contains(r.stderr, "cache_max_size 1G") || !strings.Contains(r.stderr, "pulls in progress"):
			t.Errorf("the refusal does not say why:\n%s", r)
		}
	}
	if ok != 1 {
		t.Errorf("%d of the two 600M pulls worked, want 1:\n%s\n%s", ok, got[0], got[1])
	}
	// Another user's image, once the first one's is past its grace.
	time.Sleep(6 * time.Second)
	r := pullAs("phpc-nss", other)
	close(stop)
	<-watched
	mustSucceed(t, r)
	if most > limit {
		t.Errorf("the cache's directory held %d bytes, more than cache_max_size (%d)", most, limit)
	}
	if most < 500<<20 {
		t.Errorf("the watch saw at most %d bytes: it did not see the copies", most)
	}
	all := podmanHpcd(t, node, "images")
	mustSucceed(t, all)
	if strings.Contains(all.stdout, "big5") || strings.Contains(all.stdout, "big6") || !strings.Contains(all.stdout, "other.sqsh") {
		t.Errorf("after the other user's pull, want only their image:\n%s", all.stdout)
	}
	fmt.Fprintf(os.Stderr, "cache directory at most %d MiB (limit %d MiB)\n", most>>20, limit>>20)
}
