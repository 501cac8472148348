package source

import (
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/types"
)

// A short name means Docker Hub when registries.conf names no search
// registry and no alias for it, as under enroot; a site's registries.conf
// still wins.
func TestShortNameDefaultsToDockerHub(t *testing.T) {
	for name, tc := range map[string]struct{ conf, short, want string }{
		"nothing said":         {"# empty\n", "redis:5.0.8", "docker.io/library/redis:5.0.8"},
		"no tag":               {"# empty\n", "redis", "docker.io/library/redis:latest"},
		"a user's image":       {"# empty\n", "alice/app:1", "docker.io/alice/app:1"},
		"the site's registry":  {"unqualified-search-registries = [\"reg.example.org\"]\n", "redis:5.0.8", "reg.example.org/redis:5.0.8"},
		"the site's alias":     {"[aliases]\n\"redis\" = \"quay.io/mirror/redis\"\n", "redis:5.0.8", "quay.io/mirror/redis:5.0.8"},
		"the image docker:TAG": {"# empty\n", "docker:26.1.0-dind-rootless", "docker.io/library/docker:26.1.0-dind-rootless"},
	} {
		t.Run(name, func(t *testing.T) {
			sys := &types.SystemContext{SystemRegistriesConfPath: filepath.Join(t.TempDir(), "registries.conf"),
				SystemRegistriesConfDirPath: t.TempDir()}
			if err := os.WriteFile(sys.SystemRegistriesConfPath, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ShortCandidates(sys, tc.short)
			if err != nil || got.String() != tc.want {
				t.Errorf("%s: %v, %v; want %s", tc.short, got, err, tc.want)
			}
		})
	}
}
