package cgotest

import (
	"os"
	"strings"
	"testing"
)

// The plugstack snippet make install writes documents every key the
// plugin knows, each with its default (a value the plugin takes, or none), and its
// line names the daemon's binary (podman_hpcd=): without it, a PREFIX
// other than /usr loses the one digest per job.
func TestPlugstackSnippet(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../contrib/slurm/plugstack.conf.d/podman-hpc.conf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfig("no-such-key=1")
	_, known, _ := strings.Cut(err.Error(), "(known keys: ")
	known, _, _ = strings.Cut(known, ")")
	keys := strings.Split(known, ", ")
	if len(keys) < 9 {
		t.Fatalf("known keys %q", keys)
	}
	documented := map[string]string{}
	var line []string
	for _, l := range strings.Split(string(b), "\n") {
		if kv, ok := strings.CutPrefix(l, "#   "); ok {
			if k, v, ok := strings.Cut(strings.Fields(kv)[0], "="); ok {
				documented[k] = v
			}
		} else if strings.HasPrefix(l, "required ") {
			line = strings.Fields(l)
		}
	}
	for _, k := range keys {
		v, ok := documented[k]
		if !ok {
			t.Errorf("the snippet's comment lacks %s=", k)
			continue
		}
		// "partitions=": no value is the default, not a value to give.
		if _, err := ParseConfig(k + "=" + v); v != "" && err != nil {
			t.Errorf("the snippet's %s=%s: %v", k, v, err)
		}
	}
	if len(documented) != len(keys) {
		t.Errorf("the snippet documents %d keys, the plugin knows %d (%s)", len(documented), len(keys), known)
	}
	if len(line) != 3 || line[1] != "@LIBDIR@/slurm/spank_podman_hpc.so" || line[2] != "podman_hpcd=@BINDIR@/podman-hpcd" {
		t.Errorf("the required line: %q", line)
	}
}
