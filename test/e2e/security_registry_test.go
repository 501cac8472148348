//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A registry's word for another user's image (issue 21, item 4, the rest):
// a user who runs a registry of their own, or has a repository of their own
// on a shared one, serves the bytes of another user's private manifest
// there, without its layers. The cache must not take that registry's
// confirmation for the right to the image it holds: only a source the image
// is known by (the repository it was pulled from) is taken at its word;
// any other must serve the layers.

// testRegistry is a registry the test runs on the cluster's TEST_REGISTRY
// address (a plain-HTTP location in the nodes' registries.conf), serving
// what each repository holds to the users its ACL names (basic auth), and
// counting the GETs of each repository's blobs.
type testRegistry struct {
	host string

	mu       sync.Mutex
	users    map[string]string            // user -> password
	acl      map[string][]string          // repo -> users
	tags     map[string]string            // "repo:tag" -> digest
	blobs    map[string]map[string][]byte // repo -> digest -> bytes (manifests too)
	types    map[string]string            // manifest digest -> media type
	blobGets map[string]int               // repo -> GETs of its blobs
}

func startTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	addr := cluster["TEST_REGISTRY"]
	if addr == "" {
		t.Skip("the test cluster has no TEST_REGISTRY: rerun make cluster")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	r := &testRegistry{host: addr, users: map[string]string{}, acl: map[string][]string{},
		tags: map[string]string{}, blobs: map[string]map[string][]byte{}, types: map[string]string{},
		blobGets: map[string]int{}}
	srv := &http.Server{Handler: r}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r
}

// put has repo hold blobs (and the manifest, under tag if it is not "").
func (r *testRegistry) put(repo, tag string, manifest []byte, mediaType string, blobs ...[]byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blobs[repo] == nil {
		r.blobs[repo] = map[string][]byte{}
	}
	for _, b := range append([][]byte{manifest}, blobs...) {
		r.blobs[repo]["sha256:"+sha256Of(b)] = b
	}
	d := "sha256:" + sha256Of(manifest)
	r.types[d] = mediaType
	if tag != "" {
		r.tags[repo+":"+tag] = d
	}
	return d
}

func (r *testRegistry) allow(repo string, users ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acl[repo] = append(r.acl[repo], users...)
}

func (r *testRegistry) gets(repo string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[repo]
}

// authFile writes an auth.json for user (a new account on the registry)
// into dir, user's: the path.
func (r *testRegistry) authFile(t *testing.T, user, dir string) string {
	t.Helper()
	pw := fmt.Sprintf("pw-%d", time.Now().UnixNano())
	r.mu.Lock()
	r.users[user] = pw
	r.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		r.host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))}}})
	p := filepath.Join(dir, "auth.json")
	giveTo(t, user, p, b)
	return p
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fail := func(status int, code string) {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, strings.ToLower(code))
	}
	u, p, ok := req.BasicAuth()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok || r.users[u] == "" || r.users[u] != p {
		fail(http.StatusUnauthorized, "UNAUTHORIZED")
		return
	}
	rest := strings.TrimPrefix(req.URL.Path, "/v2/")
	if rest == "" {
		return
	}
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
		}
	}
	allowed := false
	for _, a := range r.acl[repo] {
		allowed = allowed || a == u
	}
	if !allowed {
		fail(http.StatusUnauthorized, "DENIED")
		return
	}
	d := ref
	if kind == "manifests" && !strings.HasPrefix(ref, "sha256:") {
		d = r.tags[repo+":"+ref]
	}
	b, found := r.blobs[repo][d]
	if kind == "blobs" && req.Method == http.MethodGet {
		r.blobGets[repo]++
	}
	switch {
	case !found && kind == "manifests":
		fail(http.StatusNotFound, "MANIFEST_UNKNOWN")
		return
	case !found:
		fail(http.StatusNotFound, "BLOB_UNKNOWN")
		return
	case kind == "manifests":
		w.Header().Set("Content-Type", r.types[d])
		w.Header().Set("Docker-Content-Digest", d)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if req.Method != http.MethodHead {
		w.Write(b)
	}
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// privateLayout is an OCI layout of the small image with a /secret of its
// own (no node has it yet): the secret, the manifest, its media type and
// every blob it names.
func privateLayout(t *testing.T) (secret string, manifest []byte, mediaType string, blobs [][]byte) {
	t.Helper()
	secret = fmt.Sprintf("secret-%d", time.Now().UnixNano())
	layout := strings.TrimSuffix(strings.TrimPrefix(imageWithTree(t, func(tree string) {
		if err := os.WriteFile(filepath.Join(tree, "secret"), []byte(secret+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}), "oci:"), ":latest")
	manifest, config := manifestOf(t, layout)
	var m struct {
		MediaType string
		Layers    []struct{ Digest string }
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	mediaType = m.MediaType
	if mediaType == "" {
		mediaType = "application/vnd.oci.image.manifest.v1+json"
	}
	blobs = [][]byte{config}
	for _, l := range m.Layers {
		b, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	os.RemoveAll(filepath.Dir(layout))
	return secret, manifest, mediaType, blobs
}

// A's private image, pulled from A's repository; B serves its manifest
// alone from a repository of B's own on the same registry, by digest and
// by a tag: B is refused with the reason, and nothing is copied or pulled
// for B. B's repository holding the whole image gets B the image from the
// node's cache, after its layers were read (not pulled again). With a site
// image store, on a node that never had the image: B's manifest copies
// nothing out of the store, and A's own pull there, from the repository
// the image came from, copies it without a single blob fetched.
func TestSecurityRegistryManifestAlone(t *testing.T) {
	requireRoot(t)
	ns := nodes()
	for _, tc := range []struct {
		name   string
		shared bool
	}{
		{"node cache", false},
		{"site store", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.shared && len(ns) < 2 {
				t.Skip("needs 2 nodes")
			}
			if tc.shared {
				withSharedStore(t, filepath.Join(t.TempDir(), "store"))
			}
			reg := startTestRegistry(t)
			parent := readableTempDir(t)
			victim, attacker := cluster["TEST_USER"], otherUser
			authA := reg.authFile(t, victim, privateDir(t, parent, victim))
			dirB := privateDir(t, parent, attacker)
			authB := reg.authFile(t, attacker, dirB)
			secret, manifest, mt, blobs := privateLayout(t)
			reg.allow("a/private", victim)
			reg.put("a/private", "1", manifest, mt, blobs...)
			reg.allow("b/mine", attacker)
			d := reg.put("b/mine", "t", manifest, mt) // the manifest alone
			reg.allow("b/whole", attacker)
			reg.put("b/whole", "1", manifest, mt, blobs...)

			asA := func(node, img string) result {
				return asUser(t, "env", "REGISTRY_AUTH_FILE="+authA, "srun", "-N1", "-w", node, "--container-image="+img, "cat", "/secret")
			}
			asB := func(node, img string) result {
				return asOther(t, "env", "REGISTRY_AUTH_FILE="+authB, "srun", "-N1", "-w", node, "--container-image="+img, "cat", "/secret")
			}
			r := asA(ns[0], reg.host+"/a/private:1")
			mustSucceed(t, r)
			if !strings.Contains(r.stdout, secret) {
				t.Fatalf("A's image lacks its secret:\n%s", r)
			}
			if r := asB(ns[0], reg.host+"/a/private:1"); r.code == 0 || strings.Contains(r.stdout, secret) {
				t.Fatalf("B pulls from A's repository: the test needs it private:\n%s", r)
			}
			// Without a store B tries the node that has the image; with
			// one, a node that never had it.
			node := ns[0]
			if tc.shared {
				node = ns[1]
			}
			off := len(daemonLog(t, node))
			for _, img := range []string{reg.host + "/b/mine@" + d, reg.host + "/b/mine:t"} {
				r := asB(node, img)
				if strings.Contains(r.stdout, secret) || r.code == 0 {
					t.Fatalf("B ran A's image from a registry serving its manifest alone (%s):\n%s", img, r)
				}
				line := refusal(r.stderr)
				if !strings.Contains(line, img) || !strings.Contains(line, "lacks the image's layers") {
					t.Errorf("%s: no one-line refusal saying the registry lacks the image's layers:\n%s", img, r)
				}
				t.Logf("B sees: %s", line)
			}
			log := daemonLog(t, node)[off:]
			if strings.Contains(log, "image copied from the site image store") || strings.Contains(log, "image pulled") {
				t.Errorf("%s copied or pulled the image for B:\n%s", node, log)
			}
			if out := podmanHpcd(t, node, "images").stdout; tc.shared && strings.Contains(out, sha256Of(manifest)[:12]) {
				t.Errorf("%s cached the image for B:\n%s", node, out)
			}
			checkNothingLeft(t, node)

			if tc.shared {
				// A on the node that never had it, from A's repository:
				// the store's copy, no blob fetched.
				before := reg.gets("a/private")
				off = len(daemonLog(t, node))
				r := asA(node, reg.host+"/a/private:1")
				mustSucceed(t, r)
				if !strings.Contains(r.stdout, secret) {
					t.Errorf("A's image on %s lacks its secret:\n%s", node, r)
				}
				if n := reg.gets("a/private") - before; n != 0 {
					t.Errorf("A's pull on %s fetched %d blobs from the repository the image came from", node, n)
				}
				if log := daemonLog(t, node)[off:]; !strings.Contains(log, "image copied from the site image store") {
					t.Errorf("%s did not copy the image from the store for A:\n%s", node, log)
				}
				return
			}
			// B's repository holding the whole image: the cached image,
			// once its layers were read there.
			off = len(daemonLog(t, node))
			r = asB(node, reg.host+"/b/whole:1")
			mustSucceed(t, r)
			if !strings.Contains(r.stdout, secret) {
				t.Errorf("B's whole copy did not run the image:\n%s", r)
			}
			if n := reg.gets("b/whole"); n < len(blobs) {
				t.Errorf("B's whole copy was handed out after %d blob GETs, want %d at least", n, len(blobs))
			}
			if log := daemonLog(t, node)[off:]; strings.Contains(log, "image pulled") {
				t.Errorf("%s pulled the image again for B's whole copy:\n%s", node, log)
			}
		})
	}
}
