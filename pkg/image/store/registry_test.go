package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// testImage is an OCI image built in memory from tar fixtures.
type testImage struct {
	config   []byte
	layers   [][]byte // gzip blobs, bottom first
	plain    [][]byte // the same, uncompressed
	manifest []byte
	digest   digest.Digest
}

func newTestImage(t testing.TB, cfg ImageConfig, layers ...[]imagetest.TarEntry) *testImage {
	t.Helper()
	im := &testImage{}
	var diffIDs []digest.Digest
	var descs []imgspecv1.Descriptor
	for _, l := range layers {
		plain := imagetest.LayerTar(t, l...)
		gz := imagetest.GzipBytes(t, plain)
		diffIDs = append(diffIDs, digest.FromBytes(plain))
		im.layers = append(im.layers, gz)
		im.plain = append(im.plain, plain)
		descs = append(descs, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz), Size: int64(len(gz))})
	}
	var err error
	im.config, err = json.Marshal(imgspecv1.Image{
		Platform: imgspecv1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: imgspecv1.ImageConfig{Env: cfg.Env, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd,
			WorkingDir: cfg.WorkingDir, User: cfg.User},
		RootFS: imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	im.manifest, err = json.Marshal(imgspecv1.Manifest{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: digest.FromBytes(im.config), Size: int64(len(im.config))},
		Layers:    descs,
	})
	if err != nil {
		t.Fatal(err)
	}
	im.digest = digest.FromBytes(im.manifest)
	return im
}

func (im *testImage) blobs() map[digest.Digest][]byte {
	m := map[digest.Digest][]byte{digest.FromBytes(im.config): im.config, im.digest: im.manifest}
	for _, l := range im.layers {
		m[digest.FromBytes(l)] = l
	}
	return m
}

// writeLayout writes im as an OCI layout in dir, tagged tag.
func (im *testImage) writeLayout(t testing.TB, dir, tag string) {
	t.Helper()
	for d, b := range im.blobs() {
		p := filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(imgspecv1.Index{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{MediaType: imgspecv1.MediaTypeImageManifest, Digest: im.digest,
			Size: int64(len(im.manifest)), Annotations: map[string]string{imgspecv1.AnnotationRefName: tag}}},
	})
	for name, b := range map[string][]byte{"index.json": idx, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeRegistry serves images over the registry API from memory, counts
// requests and injects faults.
type fakeRegistry struct {
	srv  *httptest.Server
	host string

	mu           sync.Mutex
	manifests    map[string]digest.Digest // "repo:tag" -> digest
	blobs        map[digest.Digest][]byte
	manifestGets int
	blobGets     map[digest.Digest]int
	users        map[string]string   // basic auth: user -> password; nil: anonymous
	acl          map[string][]string // repo -> users allowed (with users set)
	corrupt      map[digest.Digest]bool
	long         map[digest.Digest]bool // served with 1 MiB more
	stall        map[digest.Digest]bool
	blobDelay    time.Duration
	// only: repo -> the only manifests and blobs it holds (a repository
	// not named holds all of them)
	only map[string]map[digest.Digest]bool
	// repoBlobGets: repo -> GETs of its blobs
	repoBlobGets map[string]int
}

func newFakeRegistry(t testing.TB) *fakeRegistry {
	r := &fakeRegistry{manifests: map[string]digest.Digest{}, blobs: map[digest.Digest][]byte{},
		blobGets: map[digest.Digest]int{}, corrupt: map[digest.Digest]bool{}, long: map[digest.Digest]bool{},
		stall: map[digest.Digest]bool{}, only: map[string]map[digest.Digest]bool{}, repoBlobGets: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *fakeRegistry) add(repo, tag string, im *testImage) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for d, b := range im.blobs() {
		r.blobs[d] = b
	}
	r.manifests[repo+":"+tag] = im.digest
	return r.host + "/" + repo + ":" + tag
}

// addIndex serves a multi-platform image: an OCI index over images, one
// per "os/arch".
func (r *fakeRegistry) addIndex(repo, tag string, images map[string]*testImage) (string, digest.Digest) {
	idx := imgspecv1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	for platform, im := range images {
		os, arch, _ := strings.Cut(platform, "/")
		idx.Manifests = append(idx.Manifests, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest,
			Digest: im.digest, Size: int64(len(im.manifest)), Platform: &imgspecv1.Platform{OS: os, Architecture: arch}})
		r.add(repo, im.digest.Encoded(), im)
	}
	b, _ := json.Marshal(idx)
	r.mu.Lock()
	defer r.mu.Unlock()
	d := digest.FromBytes(b)
	r.blobs[d] = b
	r.manifests[repo+":"+tag] = d
	return r.host + "/" + repo + ":" + tag, d
}

// addManifestOnly has repo hold im's manifest alone, under tag: the
// bytes of another user's manifest, served without its blobs.
func (r *fakeRegistry) addManifestOnly(repo, tag string, im *testImage) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[im.digest] = im.manifest
	r.manifests[repo+":"+tag] = im.digest
	r.only[repo] = map[digest.Digest]bool{im.digest: true}
	return r.host + "/" + repo + ":" + tag
}

// repoGets is how many GETs of repo's blobs the registry served or
// refused.
func (r *fakeRegistry) repoGets(repo string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repoBlobGets[repo]
}

func (r *fakeRegistry) counts(d digest.Digest) (manifests, blobs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifestGets, r.blobGets[d]
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	users, acl := r.users, r.acl
	r.mu.Unlock()
	user := ""
	if users != nil {
		u, p, ok := req.BasicAuth()
		if !ok || users[u] != p {
			w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		user = u
	}
	rest := strings.TrimPrefix(req.URL.Path, "/v2/")
	if rest == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
		}
	}
	if users != nil && acl != nil && !contains(acl[repo], user) {
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the repository denied")
		return
	}
	r.mu.Lock()
	var d digest.Digest
	switch kind {
	case "manifests":
		r.manifestGets++
		d = digest.Digest(ref)
		if d.Validate() != nil {
			d = r.manifests[repo+":"+ref]
		}
	case "blobs":
		d = digest.Digest(ref)
		r.blobGets[d]++
		if req.Method == http.MethodGet {
			r.repoBlobGets[repo]++
		}
	}
	b, ok := r.blobs[d]
	if only := r.only[repo]; only != nil && !only[d] {
		ok = false
	}
	corrupt, stall, delay := r.corrupt[d], r.stall[d], r.blobDelay
	if r.long[d] {
		b = append(bytes.Clone(b), make([]byte, 1<<20)...)
	}
	r.mu.Unlock()
	if !ok {
		if kind == "manifests" {
			registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		} else {
			registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
		}
		return
	}
	if kind == "manifests" {
		var m struct{ MediaType string }
		_ = json.Unmarshal(b, &m)
		w.Header().Set("Content-Type", m.MediaType)
		w.Header().Set("Docker-Content-Digest", d.String())
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if req.Method == http.MethodHead {
		return
	}
	if kind == "blobs" {
		time.Sleep(delay)
		if corrupt {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0xff
		}
		if stall {
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			<-req.Context().Done()
			return
		}
	}
	w.Write(b)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// authJSON is a containers-auth.json for one registry.
func authJSON(host, user, password string) []byte {
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host,
		base64.StdEncoding.EncodeToString([]byte(user+":"+password))))
}

// testConfig writes a policy.json accepting anything and a registries.conf
// marking hosts insecure (plain HTTP), with extra lines appended.
func testConfig(t testing.TB, hosts []string, extra string) (policy, registries, dropins string) {
	t.Helper()
	dir := t.TempDir()
	policy = filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(extra + "\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "[[registry]]\nlocation = %q\ninsecure = true\n", h)
	}
	registries = filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(registries, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	dropins = filepath.Join(dir, "registries.conf.d")
	if err := os.Mkdir(dropins, 0o755); err != nil {
		t.Fatal(err)
	}
	return policy, registries, dropins
}

// openTestCache opens a cache in a temp dir that trusts hosts over HTTP.
func openTestCache(t testing.TB, hosts []string, mod func(*Options)) *Cache {
	t.Helper()
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	imagetest.RequireBinary(t, "unsquashfs")
	policy, registries, dropins := testConfig(t, hosts, "")
	o := Options{Dir: filepath.Join(t.TempDir(), "cache"), PolicyPath: policy,
		RegistriesConf: registries, RegistriesConfDir: dropins,
		RegistryTimeout: 5 * time.Second, RegistryAttempts: 2, Compression: "zstd:1",
		retryDelay: 10 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDockerRegistry runs Debian's docker-registry on a free loopback
// port with its storage in a temp dir, optionally with htpasswd auth, and
// returns its host:port. It is stopped by PID at cleanup.
func startDockerRegistry(t testing.TB, htpasswd string) string {
	t.Helper()
	imagetest.RequireBinary(t, "docker-registry")
	dir := t.TempDir()
	host := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"+
		"storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"+
		"http:\n  addr: %s\n", filepath.Join(dir, "data"), host)
	if htpasswd != "" {
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not start: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// push uploads im to a registry as repo:tag with the plain registry API.
func push(t testing.TB, host, user, password, repo, tag string, im *testImage) string {
	t.Helper()
	do := func(method, url, ctype string, body []byte, want int) *http.Response {
		req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
		}
		return resp
	}
	base := "http://" + host + "/v2/" + repo
	for d, b := range im.blobs() {
		if d == im.digest {
			continue
		}
		resp := do("POST", base+"/blobs/uploads/", "", nil, http.StatusAccepted)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = "http://" + host + loc
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		do("PUT", loc+sep+"digest="+d.String(), "application/octet-stream", b, http.StatusCreated)
	}
	do("PUT", base+"/manifests/"+tag, imgspecv1.MediaTypeImageManifest, im.manifest, http.StatusCreated)
	return host + "/" + repo + ":" + tag
}
