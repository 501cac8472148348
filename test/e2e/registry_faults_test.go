//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A registry that answers, but with empty or cut-short bodies (issue 24,
// item 7): a proxy in front of a registry that drops its connections, a
// registry whose storage fails. Before, srun said "registry unreachable",
// with containers/image's notes on its retries in the message ("heuristic
// tuning data: total 0 @1041.186 ms ...").

// failingRegistry serves one image without authentication on the
// cluster's TEST_REGISTRY address: its manifest and config whole, each
// layer with its full Content-Length but only keep(size) of its bytes, on
// the first request and on every resumed one (Range: bytes=N-, answered 206
// from N). It counts the GETs of each layer.
type failingRegistry struct {
	host     string
	keep     func(size int) int
	manifest []byte
	mt       string
	blobs    map[string][]byte // digest -> bytes
	layers   map[string]bool   // digests of the layers
	mu       sync.Mutex
	gets     map[string]int // layer digest -> GETs
}

func startFailingRegistry(t *testing.T, keep func(int) int) *failingRegistry {
	t.Helper()
	addr := cluster["TEST_REGISTRY"]
	if addr == "" {
		t.Skip("the test cluster has no TEST_REGISTRY: rerun make cluster")
	}
	_, manifest, mt, blobs := privateLayout(t)
	r := &failingRegistry{host: addr, keep: keep, manifest: manifest, mt: mt,
		blobs: map[string][]byte{}, layers: map[string]bool{}, gets: map[string]int{}}
	for i, b := range blobs {
		d := "sha256:" + sha256Of(b)
		r.blobs[d] = b
		r.layers[d] = i > 0 // blobs[0] is the config
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r
}

// layerGets is how many times each layer was asked for.
func (r *failingRegistry) layerGets() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for d, is := range r.layers {
		if is {
			m[d] = r.gets[d]
		}
	}
	return m
}

func (r *failingRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rest := strings.TrimPrefix(req.URL.Path, "/v2/")
	switch {
	case rest == "":
		return
	case strings.Contains(rest, "/manifests/"):
		w.Header().Set("Content-Type", r.mt)
		w.Header().Set("Docker-Content-Digest", "sha256:"+sha256Of(r.manifest))
		w.Header().Set("Content-Length", strconv.Itoa(len(r.manifest)))
		if req.Method != http.MethodHead {
			w.Write(r.manifest)
		}
		return
	}
	_, d, _ := strings.Cut(rest, "/blobs/")
	b, ok := r.blobs[d]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if !r.layers[d] || req.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if req.Method != http.MethodHead {
			w.Write(b)
		}
		return
	}
	r.mu.Lock()
	r.gets[d]++
	r.mu.Unlock()
	from := 0
	if rg := req.Header.Get("Range"); rg != "" {
		fmt.Sscanf(rg, "bytes=%d-", &from)
		if from < 0 || from >= len(b) {
			from = 0
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(b)-1, len(b)))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)-from))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	}
	// Fewer bytes than the Content-Length: the server closes the
	// connection after them.
	w.Write(b[from : from+r.keep(len(b)-from)])
}

// Through srun: the step fails in bounded time, naming the registry as
// failing (not unreachable) with what to do, and none of containers/image's
// retry notes; the layer is asked for a bounded number of times (the
// daemon's attempts, each with containers/image's one resume); nothing is
// left in the node's cache.
func TestRegistryEmptyBodies(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	for _, tc := range []struct {
		name string
		keep func(int) int
	}{
		{"empty", func(int) int { return 0 }},
		{"cut short", func(n int) int { return n / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := startFailingRegistry(t, tc.keep)
			image := reg.host + "/faults/layers@sha256:" + sha256Of(reg.manifest)
			start := time.Now()
			r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+image, "true")
			took := time.Since(start)
			t.Logf("after %s, GETs of each layer %v, the user sees: %s", took.Round(100*time.Millisecond), reg.layerGets(), r.stderr)
			if r.code == 0 {
				t.Fatalf("the step ran: %s", r)
			}
			for _, want := range []string{
				"registry failing: registry " + reg.host + " answered with an empty or cut-short body",
				"retry later, or tell its admin",
			} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("srun's error lacks %q:\n%s", want, r.stderr)
				}
			}
			for _, bad := range []string{"unreachable", "heuristic", "tuning data"} {
				if strings.Contains(r.stderr, bad) {
					t.Errorf("srun's error says %q:\n%s", bad, r.stderr)
				}
			}
			// At most 3 attempts (registry_attempts' default), each
			// resumed once by containers/image, for each layer; at
			// least one layer asked for.
			total := 0
			for d, n := range reg.layerGets() {
				total += n
				if n > 3*2 {
					t.Errorf("layer %s was asked for %d times, want at most 6", d, n)
				}
			}
			if total == 0 {
				t.Error("no layer was asked for")
			}
			if took > time.Minute {
				t.Errorf("the step took %s to fail", took)
			}
			left := onNode(t, node, "", `ls -A "$1" | wc -l`, cluster["LAB"]+"/nodelocal/images/tmp")
			if n := strings.TrimSpace(left.stdout); n != "0" {
				t.Errorf("the cache's tmp holds %s entries after the failed pull", n)
			}
			checkNothingLeft(t, node)
		})
	}
}
