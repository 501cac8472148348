//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pytorchImage is the small image with PYTORCH_VERSION set, as NGC's
// PyTorch images have it, and what else umoci config's args say.
func pytorchImage(t *testing.T, config ...string) string {
	t.Helper()
	return imageWithTree(t, func(tree string) {
		os.WriteFile(filepath.Join(tree, "pytorch-version"), []byte("2.4.0\n"), 0o644)
	}, append([]string{"--config.env=PYTORCH_VERSION=2.4.0"}, config...)...)
}

// An image with PyTorch gets torch.distributed's variables in every task,
// as under pyxis (enroot's PyTorch hook): RANK and LOCAL_RANK from
// SLURM_PROCID and SLURM_LOCALID, WORLD_SIZE from SLURM_NTASKS, MASTER_ADDR
// the step's first node, MASTER_PORT derived from the job id; what the
// image sets itself stays, and --container-env keeps the host's.
func TestPyTorchVariables(t *testing.T) {
	show := []string{"sh", "-c", `echo "$SLURM_PROCID ${RANK-unset} $SLURM_LOCALID ${LOCAL_RANK-unset} ${WORLD_SIZE-unset} ${MASTER_ADDR-unset} ${MASTER_PORT-unset} $SLURM_JOB_ID $SLURM_STEP_NODELIST"`}
	img := pytorchImage(t)
	r := srun(t, append([]string{"-N2", "--ntasks-per-node=2", "--container-image=" + img}, show...)...)
	mustSucceed(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 tasks:\n%s", r)
	}
	var first string
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 9 {
			t.Fatalf("task line %q", line)
		}
		if first == "" {
			first = strings.Fields(run(t, "scontrol", "show", "hostnames", f[8]).stdout)[0]
		}
		job, _ := strconv.Atoi(f[7])
		port := strconv.Itoa(job%4536 + 61000)
		if f[1] != f[0] || f[3] != f[2] || f[4] != "4" || f[5] != first || f[6] != port {
			t.Errorf("task %s: RANK %s LOCAL_RANK %s (local id %s) WORLD_SIZE %s MASTER_ADDR %s MASTER_PORT %s; want %s, %s, 4, %s, %s",
				f[0], f[1], f[3], f[2], f[4], f[5], f[6], f[0], f[2], first, port)
		}
	}
	// The image's own MASTER_ADDR wins; the host's MASTER_PORT wins where
	// --container-env names it.
	img = pytorchImage(t, "--config.env=MASTER_ADDR=rendezvous.example")
	r = runEnv(t, []string{"MASTER_PORT=29500"}, "srun", append([]string{"-N1", "--container-image=" + img, "--container-env=MASTER_PORT"}, show...)...)
	mustSucceed(t, r)
	if f := strings.Fields(r.stdout); len(f) != 9 || f[5] != "rendezvous.example" || f[6] != "29500" || f[1] != "0" {
		t.Errorf("image's MASTER_ADDR, host's MASTER_PORT by --container-env: %q", r.stdout)
	}
	// Without PyTorch in the image, none is set.
	r = srun(t, append([]string{"-N1", "--container-image=" + cluster["SMALL_IMAGE"]}, show...)...)
	mustSucceed(t, r)
	if f := strings.Fields(r.stdout); len(f) != 9 || f[1] != "unset" || f[3] != "unset" || f[4] != "unset" || f[5] != "unset" || f[6] != "unset" {
		t.Errorf("an image without PYTORCH_VERSION: %q", r.stdout)
	}
}
