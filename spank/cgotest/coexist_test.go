package cgotest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// partitions= limits containers to some partitions; a job of another
// partition (or of none the plugin is told) gets none.
func TestConfigPartitions(t *testing.T) {
	t.Parallel()
	if c, err := ParseConfig("partitions=gpu,pilot-1"); err != nil || c.Partitions != "gpu,pilot-1" {
		t.Fatalf("partitions: %+v, %v", c, err)
	}
	for _, bad := range []string{"partitions=", "partitions=a,,b", "partitions=a,", "partitions=,a", "partitions=a b", "partitions=a;rm"} {
		if _, err := ParseConfig(bad); err == nil || !strings.Contains(err.Error(), "comma-separated list of partition names") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	for _, tc := range []struct {
		partition string
		args      []string
		want      bool
	}{
		{"debug", nil, true},
		{"", nil, true},
		{"gpu", []string{"partitions=gpu,pilot"}, true},
		{"pilot", []string{"partitions=gpu,pilot"}, true},
		{"pil", []string{"partitions=gpu,pilot"}, false},
		{"gpu2", []string{"partitions=gpu,pilot"}, false},
		{"debug", []string{"partitions=gpu"}, false},
		{"", []string{"partitions=gpu"}, false},
		// srun -p a,b: the job's environment lists them all.
		{"gpu,pilot", []string{"partitions=gpu,pilot"}, true},
		{"pilot,gpu", []string{"partitions=gpu,pilot"}, true},
		{"gpu,debug", []string{"partitions=gpu,pilot"}, false},
		{"debug,gpu", []string{"partitions=gpu,pilot"}, false},
		{"gpu,", []string{"partitions=gpu,pilot"}, false},
		{",gpu", []string{"partitions=gpu,pilot"}, false},
		{"a,b", nil, true},
	} {
		if got, err := PartitionEnabled(tc.partition, tc.args...); err != nil || got != tc.want {
			t.Errorf("partition %q with %q: %v, %v; want %v", tc.partition, tc.args, got, err, tc.want)
		}
	}
}

// pyxis loaded beside the plugin is found by its file name, whatever
// directory it is in.
func TestPyxisLoaded(t *testing.T) {
	if name, ok := PyxisLoaded(); ok {
		t.Fatalf("pyxis found before any was loaded: %s", name)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	so := filepath.Join(t.TempDir(), "spank_pyxis.so")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", so, "-x", "c", "-", "-nostdlib").CombinedOutput(); err != nil {
		// An empty translation unit from stdin.
		t.Fatalf("gcc: %v: %s", err, out)
	}
	if err := Dlopen(so); err != nil {
		t.Fatal(err)
	}
	if name, ok := PyxisLoaded(); !ok || name != "spank_pyxis.so" {
		t.Fatalf("after loading %s: %q, %v", so, name, ok)
	}
}
