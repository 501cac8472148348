//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The cluster runs the Slurm that build/cluster.env names.
func TestClusterRunsItsSlurm(t *testing.T) {
	want := cluster["SLURM_VERSION"]
	if want == "" {
		t.Fatal("build/cluster.env names no SLURM_VERSION")
	}
	for _, cmd := range []string{"srun", "sbatch", "scontrol"} {
		r := run(t, cmd, "--version")
		mustSucceed(t, r)
		if got := strings.TrimSpace(r.stdout); got != "slurm "+want && got != "slurm-wlm "+want {
			t.Errorf("%s --version: %q, want Slurm %s", cmd, got, want)
		}
	}
	r := run(t, "scontrol", "show", "node", nodes()[0])
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "Version="+want) {
		t.Errorf("%s's slurmd is not Slurm %s:\n%s", nodes()[0], want, r.stdout)
	}
}

// A plugin built for another Slurm release refuses to load, naming both
// releases and the fix: srun (which loads the plugstack first) fails before
// any job exists.
func TestPluginOfAnotherSlurmRefused(t *testing.T) {
	other := cluster["OTHER_PLUGIN"]
	if _, err := os.Stat(other); err != nil {
		t.Skipf("no plugin built for another Slurm here (%v); make build SLURM=24.11 builds one", err)
	}
	conf, err := os.ReadFile(cluster["SLURM_CONF"])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugstack := filepath.Join(dir, "plugstack.conf")
	if err := os.WriteFile(plugstack, []byte("required "+other+" socket="+cluster["PODMAN_HPCD_SOCKET"]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf = regexp.MustCompile(`(?m)^PlugStackConfig=.*$`).ReplaceAll(conf, []byte("PlugStackConfig="+plugstack))
	slurmConf := filepath.Join(dir, "slurm.conf")
	if err := os.WriteFile(slurmConf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runEnv(t, []string{"SLURM_CONF=" + slurmConf}, "srun", "-N1", "true")
	if r.code == 0 {
		t.Fatalf("srun ran with a plugin built for another Slurm:\n%s", r)
	}
	running := strings.Join(strings.Split(cluster["SLURM_VERSION"], ".")[:2], ".")
	want := regexp.MustCompile(`podman-hpc: this plugin was built for Slurm (\d+\.\d+) but runs in Slurm ` + regexp.QuoteMeta(running) + `; rebuild it \(make\)`)
	m := want.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("stderr lacks %q:\n%s", want, r)
	}
	if m[1] == running {
		t.Errorf("the other plugin claims to be built for the running Slurm %s", running)
	}
}
