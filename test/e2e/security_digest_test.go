//go:build e2e

package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Security of the image cache's keys (issue 21, item 4): a user who holds
// only the bytes of another user's manifest (a few hundred bytes, from a CI
// log or `skopeo inspect --raw`) must not get that user's cached image, by
// naming them as a squashfs file or as an archive without the layers.

// otherUser is the second unprivileged user: user B of these tests.
const otherUser = nssUser

// privateDir is a directory of its own, mode 0700, owned by name, in a
// directory everyone may enter.
func privateDir(t *testing.T, parent, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s: run make deps", name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// giveTo writes b as name's file p, readable by name only.
func giveTo(t *testing.T, name, p string, b []byte) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// asOther runs a command as user B.
func asOther(t *testing.T, name string, args ...string) result {
	t.Helper()
	requireRoot(t)
	full := append([]string{"-u", otherUser, "--", "env", "SLURM_CONF=" + cluster["SLURM_CONF"], name}, args...)
	return run(t, "runuser", full...)
}

// privateImage is user A's image: an OCI archive, in A's 0700 directory,
// of the small image with a /secret of its own (so that no node has it
// cached yet). It returns the archive's reference, the secret, and the
// raw manifest and config of the image (what B is assumed to hold).
func privateImage(t *testing.T, parent string) (ref, secret string, manifest, config []byte) {
	t.Helper()
	requireRoot(t)
	secret = fmt.Sprintf("secret-%d", time.Now().UnixNano())
	layout := strings.TrimSuffix(strings.TrimPrefix(imageWithTree(t, func(tree string) {
		if err := os.WriteFile(filepath.Join(tree, "secret"), []byte(secret+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}), "oci:"), ":latest")
	manifest, config = manifestOf(t, layout)
	dir := privateDir(t, parent, cluster["TEST_USER"])
	archive := filepath.Join(dir, "app.tar")
	mustSucceed(t, run(t, "tar", "-C", layout, "-cf", archive, "."))
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	giveTo(t, cluster["TEST_USER"], archive, b)
	// Nobody but A and root may read the image from now on.
	mustSucceed(t, run(t, "chmod", "-R", "go-rwx", filepath.Dir(layout)))
	return "oci-archive:" + archive, secret, manifest, config
}

// manifestOf returns the raw manifest and config of an OCI layout's only
// image.
func manifestOf(t *testing.T, layout string) (manifest, config []byte) {
	t.Helper()
	blob := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var idx struct{ Manifests []struct{ Digest string } }
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &idx)
	}
	if err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s/index.json: %v, %d manifests", layout, err, len(idx.Manifests))
	}
	manifest = blob(idx.Manifests[0].Digest)
	var m struct{ Config struct{ Digest string } }
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	return manifest, blob(m.Config.Digest)
}

// sha256Hex is the digest of b, as the OCI layout names its blob.
func sha256Hex(t *testing.T, b []byte) string {
	t.Helper()
	cmd := exec.Command("sha256sum")
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// layoutArchive is an OCI archive holding an index of one manifest, and
// the blobs given (none of the image's layers).
func layoutArchive(t *testing.T, manifest []byte, blobs ...[]byte) []byte {
	t.Helper()
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      "sha256:" + sha256Hex(t, manifest),
			"size":        len(manifest),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "latest"},
		}},
	})
	files := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": idx}
	for _, b := range append([][]byte{manifest}, blobs...) {
		files["blobs/sha256/"+sha256Hex(t, b)] = b
	}
	var out strings.Builder
	tw := tar.NewWriter(&out)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return []byte(out.String())
}

// refusal is the one line of srun's output that says why the image was
// refused, "" if there is none.
func refusal(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "failed to import docker image") {
			return l
		}
	}
	return ""
}

// A cached private image, run by A from an archive in A's 0700 directory,
// and B with only the manifest's bytes, saved as a file and named as a
// squashfs image: B is refused (the file is no squashfs), and never reads
// A's files. A file's digest and a manifest's are in separate key spaces.
func TestSecurityManifestAsFile(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	parent := readableTempDir(t)
	ref, secret, manifest, _ := privateImage(t, parent)
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+ref, "cat", "/secret")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, secret) {
		t.Fatalf("A's image lacks its secret:\n%s", r)
	}
	archive := strings.TrimPrefix(ref, "oci-archive:")
	if r := asOther(t, "cat", archive); r.code == 0 {
		t.Fatalf("B reads A's archive: the test needs it private")
	}

	mine := filepath.Join(privateDir(t, parent, otherUser), "m.sqsh")
	giveTo(t, otherUser, mine, manifest)
	r = asOther(t, "srun", "-N1", "-w", node, "--container-image="+mine, "cat", "/secret")
	if strings.Contains(r.stdout, secret) || r.code == 0 {
		t.Fatalf("B ran A's image through a file holding its manifest:\n%s", r)
	}
	line := refusal(r.stderr)
	if line == "" || !strings.Contains(line, mine) || !strings.Contains(line, "not a usable squashfs image") {
		t.Errorf("no one-line refusal naming the file and why:\n%s", r)
	}
	t.Logf("B sees: %s", line)
	checkNothingLeft(t, node)
}

// An OCI archive holding A's manifest (and its config) but none of its
// layers is refused with that reason: from a node's cache, and from the
// site image store on a node that never had the image (which copied the
// whole image out of the store for B). Nothing is copied for B; B's own
// copy of the whole archive runs the image without a new pull.
func TestSecurityManifestOnlyArchive(t *testing.T) {
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
			parent := readableTempDir(t)
			ref, secret, manifest, config := privateImage(t, parent)
			r := asUser(t, "srun", "-N1", "-w", ns[0], "--container-image="+ref, "cat", "/secret")
			mustSucceed(t, r)
			if !strings.Contains(r.stdout, secret) {
				t.Fatalf("A's image lacks its secret:\n%s", r)
			}
			// Without a store B tries the node that has the image; with
			// one, a node that never had it.
			node := ns[0]
			if tc.shared {
				node = ns[1]
			}
			off := len(daemonLog(t, node))
			dir := privateDir(t, parent, otherUser)
			for name, blobs := range map[string][][]byte{"manifest": nil, "manifest and config": {config}} {
				archive := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".tar")
				giveTo(t, otherUser, archive, layoutArchive(t, manifest, blobs...))
				r := asOther(t, "srun", "-N1", "-w", node, "--container-image=oci-archive:"+archive, "cat", "/secret")
				if strings.Contains(r.stdout, secret) || r.code == 0 {
					t.Fatalf("%s: B ran A's image from an archive without its layers:\n%s", name, r)
				}
				line := refusal(r.stderr)
				if !strings.Contains(line, archive) || !strings.Contains(line, "lacks the image's layers") {
					t.Errorf("%s: no one-line refusal saying the archive lacks the image's layers:\n%s", name, r)
				}
				t.Logf("B sees: %s", line)
			}
			log := daemonLog(t, node)[off:]
			if strings.Contains(log, "image copied from the site image store") || strings.Contains(log, "image pulled") {
				t.Errorf("%s copied or pulled the image for B:\n%s", node, log)
			}
			if tc.shared {
				if out := podmanHpcd(t, node, "images").stdout; strings.Contains(out, sha256Hex(t, manifest)[:12]) {
					t.Errorf("%s cached the image for B:\n%s", node, out)
				}
			}
			checkNothingLeft(t, node)

			// B's own copy of the whole archive runs, from the node's cache
			// or the store: not pulled again.
			whole, err := os.ReadFile(strings.TrimPrefix(ref, "oci-archive:"))
			if err != nil {
				t.Fatal(err)
			}
			copied := filepath.Join(dir, "whole.tar")
			giveTo(t, otherUser, copied, whole)
			off = len(daemonLog(t, node))
			r = asOther(t, "srun", "-N1", "-w", node, "--container-image=oci-archive:"+copied, "cat", "/secret")
			mustSucceed(t, r)
			if !strings.Contains(r.stdout, secret) {
				t.Errorf("B's whole archive did not run the image:\n%s", r)
			}
			if log := daemonLog(t, node)[off:]; strings.Contains(log, "image pulled") {
				t.Errorf("%s pulled the image again for B's whole archive:\n%s", node, log)
			}
		})
	}
}
