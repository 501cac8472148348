package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// knownKeys are the keys the daemon accepts, as its "unknown key" error
// lists them (the list an admin who mistypes a key is shown).
func knownKeys(t *testing.T) []string {
	t.Helper()
	var c Config
	err := c.set("no-such-key", "")
	if err == nil {
		t.Fatal("an unknown key was accepted")
	}
	_, known, ok := strings.Cut(err.Error(), "(known: ")
	known, _, ok2 := strings.Cut(known, ")")
	keys := strings.Split(known, ", ")
	if !ok || !ok2 || len(keys) < 20 {
		t.Fatalf("no list of keys in %q", err)
	}
	for _, k := range keys {
		if err := c.set(k, ""); err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Fatalf("the list names %q, which the daemon does not accept", k)
		}
	}
	return keys
}

// manKey is a key's entry in podman-hpcd.conf(5): "**KEY** = DEFAULT" at the
// start of a line, the term of its definition.
var manKey = regexp.MustCompile(`(?m)^\*\*([a-z0-9_]+)\*\* = \S`)

// podman-hpcd.conf(5) has an entry, with its default, for every key the
// daemon accepts, and none for a key it does not.
func TestManPageDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	const page = "../../docs/man/podman-hpcd.conf.5.md"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range manKey.FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	keys := knownKeys(t)
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("%s has no entry \"**%s** = DEFAULT\" for the key %s", page, k, k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("%s documents %s, a key the daemon does not accept", page, k)
		}
	}
}
