package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// credHelperOnPath installs docker-credential-NAME first in PATH: a helper
// that records that it ran (as whom) in a marker file and answers with
// the given credentials, as a cloud helper handing out the node's would.
func credHelperOnPath(t *testing.T, name, user, password string) (marker string) {
	t.Helper()
	dir := t.TempDir()
	marker = filepath.Join(dir, "ran")
	script := "#!/bin/sh\nid -u >>" + marker + "\ncat >/dev/null\n" +
		`printf '{"ServerURL":"x","Username":"` + user + `","Secret":"` + password + `"}'` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return marker
}

// A credHelpers entry in a user's auth.json is never run by the daemon:
// a public image still pulls, a private one fails with a message that
// says why, and the helper (which would have had the right password)
// never ran.
func TestCredentialHelpersNotRun(t *testing.T) {
	marker := credHelperOnPath(t, "phpctest", "alice", "a-pw")
	pub := newFakeRegistry(t)
	pubRef := pub.add("public/app", "1", newTestImage(t, baseConfig, baseLayers()...))
	priv := newFakeRegistry(t)
	privRef := priv.add("private/app", "1", newTestImage(t, baseConfig, []imagetest.TarEntry{{Name: "other", Body: "x"}}))
	priv.users = map[string]string{"alice": "a-pw"}
	priv.acl = map[string][]string{"private/app": {"alice"}} // the fake takes "" with no password
	c := openTestCache(t, []string{pub.host, priv.host}, nil)
	auth, _ := json.Marshal(map[string]any{
		"auths":       map[string]any{},
		"credHelpers": map[string]string{pub.host: "phpctest", priv.host: "phpctest"},
		"credsStore":  "phpctest",
	})
	var mu sync.Mutex
	var notes []string
	o := PullOptions{UID: 1000, GID: 1000, AuthJSON: auth, Progress: func(p Progress) {
		if p.Phase == "note" {
			mu.Lock()
			notes = append(notes, p.Message)
			mu.Unlock()
		}
	}}
	if _, err := c.Get(context.Background(), pubRef, o); err != nil {
		t.Fatalf("public image: %v", err)
	}
	_, err := c.Get(context.Background(), privRef, o)
	if !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("private image: %v, want image.ErrUnauthorized", err)
	}
	assertOneLine(t, err, privRef, "unauthorized", "credential helpers (credsStore/credHelpers) in your auth file are not run on the node", "under auths")
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("the credential helper ran (as uid %s)", strings.TrimSpace(string(b)))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 2 || notes[0] != source.HelpersNote {
		t.Errorf("notes %q, want the helpers note once per Get", notes)
	}
	// The same credentials under auths work.
	if _, err := c.Get(context.Background(), privRef, PullOptions{UID: 1000, AuthJSON: authJSON(priv.host, "alice", "a-pw")}); err != nil {
		t.Errorf("with auths: %v", err)
	}
}

// Root's own credentials (its auth files under $HOME, $XDG_RUNTIME_DIR,
// $DOCKER_CONFIG, /run/containers/0) are never used for a user's pull,
// whether the user sent an auth file or not.
func TestRootCredentialsNotUsed(t *testing.T) {
	reg := newFakeRegistry(t)
	ref := reg.add("private/app", "1", newTestImage(t, baseConfig, baseLayers()...))
	reg.users = map[string]string{"root": "root-pw"}
	reg.acl = map[string][]string{"private/app": {"root"}}
	c := openTestCache(t, []string{reg.host}, nil)
	rootAuth := authJSON(reg.host, "root", "root-pw")
	home, xdg, docker := t.TempDir(), t.TempDir(), t.TempDir()
	for _, p := range []string{
		filepath.Join(home, ".docker/config.json"), filepath.Join(home, ".config/containers/auth.json"),
		filepath.Join(xdg, "containers/auth.json"), filepath.Join(docker, "config.json"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, rootAuth, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("DOCKER_CONFIG", docker)
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(docker, "config.json"))
	for _, auth := range [][]byte{nil, []byte(`{"auths":{}}`), authJSON("other.example", "u", "p")} {
		if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1000, AuthJSON: auth}); !errors.Is(err, image.ErrUnauthorized) {
			t.Errorf("auth %s: %v, want image.ErrUnauthorized (root's credentials used?)", auth, err)
		}
	}
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1000, AuthJSON: rootAuth}); err != nil {
		t.Errorf("with the credentials sent: %v", err)
	}
}

// A registries.conf that names credential helpers would run them as root
// for every user: Open refuses it.
func TestOpenRefusesRegistriesCredentialHelpers(t *testing.T) {
	imagetest.RequireRoot(t)
	policy, _, dropins := testConfig(t, nil, "")
	reg := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(reg, []byte(`credential-helpers = ["containers-auth.json", "ecr-login"]`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{Dir: filepath.Join(t.TempDir(), "c"), PolicyPath: policy,
		RegistriesConf: reg, RegistriesConfDir: dropins})
	if err == nil || !strings.Contains(err.Error(), "credential-helpers") || !strings.Contains(err.Error(), "docker-credential-ecr-login") {
		t.Fatalf("Open: %v, want a refusal naming the helper", err)
	}
}
