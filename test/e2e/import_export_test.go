//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// podman-hpcd import writes an image as a squashfs file of the user's, under
// enroot's default name in the working directory, or at -o (relative to the
// working directory); it refuses to replace a file unless -f; the file runs
// as --container-image.
func TestImport(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-import-%d", time.Now().UnixNano()))
	home := userHome(t)
	node := nodes()[0]
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	// enroot's spelling: REGISTRY#IMAGE, named IMAGE+TAG.sqsh.
	ref := "docker://" + strings.Replace(cluster["SMALL_IMAGE"], "/", "#", 1)
	r := clientAsUser(t, node, dir, home, "import", ref)
	mustSucceed(t, r)
	file := filepath.Join(dir, "podman-hpc+small+latest.sqsh")
	if strings.TrimSpace(r.stdout) != file {
		t.Errorf("import printed %q, want %q", r.stdout, file)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("import wrote no %s: %v", file, err)
	}
	if fileUID(fi) != uid || fi.Size() == 0 {
		t.Errorf("%s: owner %s, size %d; want the user's (%s), not empty", file, fileUID(fi), fi.Size(), uid)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+file, "grep", "^ID=", "/etc/os-release")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "ID=podman-hpc-small") {
		t.Errorf("the imported file runs %q", r.stdout)
	}

	r = clientAsUser(t, node, dir, home, "import", ref)
	if r.code == 0 || !strings.Contains(r.stderr, file+": file exists: remove it, or use -f to replace it") {
		t.Errorf("a second import over the file: %s", r)
	}
	mustSucceed(t, asUser(t, "mkdir", filepath.Join(dir, "sub")))
	mustSucceed(t, clientAsUser(t, node, dir, home, "import", ref, "-o", "sub/x.sqsh"))
	mustSucceed(t, clientAsUser(t, node, dir, home, "import", "-f", "-o", "sub/x.sqsh", ref))
	if _, err := os.Stat(filepath.Join(dir, "sub", "x.sqsh")); err != nil {
		t.Errorf("-o sub/x.sqsh (relative to the working directory): %v", err)
	}
}

// The file is created by the user: never through a symlink (to a file of
// root's), never where the user may not write; a missing image leaves no
// file.
func TestImportRefused(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-import-bad-%d", time.Now().UnixNano()))
	home := userHome(t)
	node := nodes()[0]
	target := filepath.Join(t.TempDir(), "roots-file")
	os.WriteFile(target, []byte("root's\n"), 0o644)
	mustSucceed(t, asUser(t, "ln", "-s", target, filepath.Join(dir, "link.sqsh")))
	for _, tc := range []struct{ args []string }{
		{[]string{"import", "-f", "-o", "link.sqsh", cluster["SMALL_IMAGE"]}},
		{[]string{"import", "-o", "/root/x.sqsh", cluster["SMALL_IMAGE"]}},
		{[]string{"import", "-o", "missing.sqsh", cluster["REGISTRY"] + "/podman-hpc/does-not-exist:1"}},
	} {
		r := clientAsUser(t, node, dir, home, tc.args...)
		t.Logf("%q: user sees: %s", tc.args, strings.TrimSpace(r.stderr))
		if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 || !strings.HasPrefix(r.stderr, "podman-hpcd: import: ") {
			t.Errorf("%q: %s", tc.args, r)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "root's\n" {
		t.Errorf("root's file through the user's symlink now holds %d bytes", len(b))
	}
	for _, p := range []string{"/root/x.sqsh", filepath.Join(dir, "missing.sqsh")} {
		if _, err := os.Lstat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s written", p)
		}
	}
}

// podman-hpcd export writes a running job's container, with its writes: a
// named one (NAME, default file NAME.sqsh) and a step's own (JOBID.STEPID);
// from inside the job (SLURM_JOB_ID picks the job); the files run as images.
// Another user's container is not theirs to export.
func TestExport(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-export-%d", time.Now().UnixNano()))
	img := cluster["SMALL_IMAGE"]
	client := cluster["PODMAN_HPCD"] + " export --socket " + cluster["PODMAN_HPCD_SOCKET"]
	script := `#!/bin/sh
set -e
cd ` + dir + `
srun --container-image=` + img + ` --container-name=work --container-remap-root sh -c 'echo named-write >/written'
` + client + ` work
srun --container-image=` + img + ` --container-writable --container-remap-root sh -c 'echo step-write >/written; sleep 20' &
step=$!
for i in $(seq 100); do ` + client + ` -o step.sqsh -f "$SLURM_JOB_ID.1" 2>/dev/null && break; sleep 0.2; done
kill $step || true
wait || true
srun --container-image=` + dir + `/work.sqsh cat /written
srun --container-image=` + dir + `/step.sqsh cat /written
`
	path := filepath.Join(dir, "job.sh")
	os.WriteFile(path, []byte(script), 0o755)
	out := filepath.Join(dir, "job.out")
	if fi, err := os.Stat(dir); err == nil {
		st := fi.Sys().(*syscall.Stat_t)
		os.Chown(path, int(st.Uid), int(st.Gid))
	}
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", nodes()[0], "-o", out, "-D", dir, path)
	id := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	if r.code != 0 || id == "" {
		t.Fatalf("sbatch: %s", r)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !jobEnded(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end in 2 minutes", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(out)
	// In order, with whatever srun says between them ("Step created"
	// after a retry on a busy node).
	named, step := strings.Index(string(b), "named-write\n"), strings.Index(string(b), "step-write\n")
	if named < 0 || step < named {
		t.Errorf("the exported containers hold:\n%s", b)
	}
	for _, f := range []string{"work.sqsh", "step.sqsh"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fileUID(fi) != strings.TrimSpace(asUser(t, "id", "-u").stdout) {
			t.Errorf("%s: %v, not the user's", f, err)
		}
	}

	// Root's named container in a job of root's, while it runs.
	r = run(t, "sbatch", "--parsable", "-N1", "-w", nodes()[0], "-o", "/dev/null", "--wrap",
		"srun --container-image="+img+" --container-name=roots true && sleep 15")
	rootJob := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	if r.code != 0 || rootJob == "" {
		t.Fatalf("sbatch as root: %s", r)
	}
	t.Cleanup(func() { run(t, "scancel", rootJob) })
	for i := 0; !strings.Contains(podmanHpcd(t, nodes()[0], "ps").stdout, "roots"); i++ {
		if i == 100 {
			t.Fatalf("root's named container did not appear in ps")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r = clientAsUser(t, nodes()[0], dir, userHome(t), "export", "--job", rootJob, "roots")
	if r.code == 0 || !strings.Contains(r.stderr, `no container of yours named "roots"`) {
		t.Errorf("the user exported root's container: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "roots.sqsh")); err == nil {
		t.Errorf("roots.sqsh written")
	}
}
