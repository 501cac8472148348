//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A pilot enables containers on some partitions only (plugstack.conf
// partitions=; the test cluster's is "debug"): on another partition a
// container step fails with the reason, and plain steps run as ever.
func TestPilotPartitions(t *testing.T) {
	node := nodes()[0]
	r := asUser(t, "srun", "-p", "nocontainers", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true")
	if r.code == 0 || !strings.Contains(r.stderr, "containers are not enabled on partition nocontainers (only on debug, for now)") {
		t.Errorf("a container step on the other partition:\n%s", r)
	}
	r = asUser(t, "srun", "-p", "nocontainers", "-N1", "-w", node, "sh", "-c", "echo plain")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "plain") {
		t.Errorf("a plain step on the other partition:\n%s", r)
	}
	mustSucceed(t, asUser(t, "srun", "-p", "debug", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true"))
	// srun -p a,b: Slurm 22.05's step environment names both partitions,
	// not the one the job runs on; containers run only if every one has
	// them. Where Slurm names the one it got (24.11), that one decides.
	for _, list := range []string{"debug,nocontainers", "nocontainers,debug"} {
		r = asUser(t, "srun", "-p", list, "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", "echo $SLURM_JOB_PARTITION")
		refusedList := r.code != 0 && strings.Contains(r.stderr, "containers are enabled only on partitions debug, and this job may run on any of "+list)
		refusedOne := r.code != 0 && strings.Contains(r.stderr, "containers are not enabled on partition nocontainers (only on debug, for now)")
		if !refusedList && !refusedOne && (r.code != 0 || r.stdout != "debug\n") {
			t.Errorf("a container step on partitions %s: neither refused for its partitions nor run on debug:\n%s", list, r)
		}
	}
	checkNothingLeft(t, node)
}

// pyxisStub is enough of a SPANK plugin for Slurm to load it as pyxis.
const pyxisStub = `#include <slurm/spank.h>
SPANK_PLUGIN(pyxis, 1)
int slurm_spank_init(spank_t sp, int ac, char **av) { return 0; }
`

// With pyxis loaded beside it, the plugin stops srun with one message
// naming both, whichever plugstack.conf line comes first.
func TestPyxisBesidePluginRefused(t *testing.T) {
	dir := readableTempDir(t)
	so := filepath.Join(dir, "spank_pyxis.so")
	src := filepath.Join(dir, "pyxis.c")
	os.WriteFile(src, []byte(pyxisStub), 0o644)
	cc := []string{"-shared", "-fPIC", "-o", so, src}
	if strings.HasPrefix(cluster["SLURM_VERSION"], "24.11") {
		// Slurm loads only plugins of its own release.
		cc = append(cc, "-I", filepath.Join("..", "..", "build", "slurm-24.11", "include"))
	}
	if out, err := exec.Command("gcc", cc...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	os.Chmod(so, 0o755)
	conf, err := os.ReadFile(cluster["SLURM_CONF"])
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join(filepath.Dir(cluster["SLURM_CONF"]), "plugstack.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for name, lines := range map[string]string{
		"pyxis first": "required " + so + "\n" + string(ours),
		"pyxis last":  string(ours) + "required " + so + "\n",
	} {
		stack := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".plugstack.conf")
		os.WriteFile(stack, []byte(lines), 0o644)
		slurmConf := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".slurm.conf")
		re := regexp.MustCompile(`(?m)^PlugStackConfig=.*$`)
		os.WriteFile(slurmConf, []byte(re.ReplaceAllString(string(conf), "PlugStackConfig="+stack)), 0o644)
		r := runEnv(t, []string{"SLURM_CONF=" + slurmConf}, "runuser", "-u", cluster["TEST_USER"], "--", "env", "SLURM_CONF="+slurmConf,
			"srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "true")
		if r.code == 0 || !strings.Contains(r.stderr, "spank_pyxis.so (pyxis) is loaded here too") {
			t.Errorf("%s: srun with pyxis beside the plugin:\n%s", name, r)
		}
	}
}
