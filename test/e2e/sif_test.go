//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apptainer/sif/v2/pkg/sif"

	appsif "github.com/podman-hpc/podman-hpc/pkg/image/sif"
	"github.com/podman-hpc/podman-hpc/pkg/image/sif/siftest"
)

// Apptainer's SIF files as --container-image: made here with Apptainer's
// own library (siftest), their root a squashfs saved from the test
// images by --container-save (as every file root's, as apptainer build
// makes it). The test user's directories have names of their own: the
// user and their home are shared with other test clusters.

// apptainerTree is what apptainer build puts under /.singularity.d: the
// environment scripts (the base's, %environment's, 99-base's), the
// runscript, the labels and the definition file.
func apptainerTree(tree string) {
	d := filepath.Join(tree, ".singularity.d")
	os.MkdirAll(filepath.Join(d, "env"), 0o755)
	files := map[string]string{
		"env/01-base.sh":        "#!/bin/sh\n",
		"env/90-environment.sh": "#!/bin/sh\nexport FROM_SIF=yes\nexport SIF_EARLIER=\"from-$FROM_SIF\"\n",
		"env/99-base.sh": "#!/bin/sh\nif [ -z \"$LD_LIBRARY_PATH\" ]; then LD_LIBRARY_PATH=/.singularity.d/libs; " +
			"else LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH:/.singularity.d/libs\"; fi\nPS1=\"Apptainer> \"\nexport LD_LIBRARY_PATH PS1\n",
		"runscript":   "#!/bin/sh\necho runscript-output\nexport RAN_RUNSCRIPT=yes\nexec \"$@\"\n",
		"labels.json": "{\n\t\"org.label-schema.usage\": \"podman-hpc e2e\"\n}\n",
		"Singularity": "Bootstrap: docker\nFrom: podman-hpc/small\n\n%environment\n    export FROM_SIF=yes\n",
	}
	for name, body := range files {
		os.WriteFile(filepath.Join(d, name), []byte(body), 0o755)
	}
}

// sifFrom saves img (with tree's files added, when given) as a squashfs
// and wraps it in dir/NAME.sif, the test user's, with the definition file
// and labels before the root as apptainer build lays them out.
func sifFrom(t *testing.T, dir, name, img string, tree func(string)) string {
	t.Helper()
	if tree != nil {
		img = imageWithTree(t, tree)
	}
	sqfs := filepath.Join(dir, name+".root.sqsh")
	mustSucceed(t, asUser(t, "srun", "-N1", "--container-image="+img, "--container-save="+sqfs, "true"))
	out := filepath.Join(dir, name+".sif")
	if err := siftest.WriteSquashfs(out, sqfs); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, run(t, "chown", cluster["TEST_USER"]+":", out))
	os.Remove(sqfs)
	return out
}

// A SIF runs as Apptainer runs it: its root, the environment its
// /.singularity.d/env scripts export (in order, the image's values winning
// unless --container-env names them), the labels and definition file at
// their places, the runscript as the entrypoint.
func TestSIFImage(t *testing.T) {
	dir := userDir(t, fmt.Sprintf("e2e-sif-%d", time.Now().UnixNano()))
	app := sifFrom(t, dir, "app", cluster["SMALL_IMAGE"], apptainerTree)
	show := `grep ^ID= /etc/os-release; echo "env:$FROM_SIF:$SIF_EARLIER:$LD_LIBRARY_PATH:$PS1:${RAN_RUNSCRIPT:-no}:PWD=$PWD"; ` +
		`grep -c podman-hpc /.singularity.d/labels.json; head -1 /.singularity.d/Singularity; echo "$APPTAINER_NAME:$SINGULARITY_CONTAINER"`
	r := asUser(t, "env", "FROM_SIF=host", "srun", "-N1", "--container-image="+app, "sh", "-c", show)
	mustSucceed(t, r)
	t.Logf("%s", r.stdout)
	for _, want := range []string{"ID=podman-hpc-small\n", "env:yes:from-yes:/.singularity.d/libs:Apptainer> :no:PWD=/\n", "1\nBootstrap: docker\n", "app.sif:" + app + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q:\n%s", want, r)
		}
	}
	// --container-env names it: the host's value wins, as --env's would.
	r = asUser(t, "env", "FROM_SIF=host", "srun", "-N1", "--container-env=FROM_SIF", "--container-image="+app, "sh", "-c", `echo "env:$FROM_SIF"`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "env:host\n") {
		t.Errorf("--container-env=FROM_SIF: %s", r)
	}
	// The runscript where pyxis runs an ENTRYPOINT: what it exports
	// reaches the tasks, its output is the entrypoint's log.
	r = asUser(t, "srun", "-N1", "--container-entrypoint", "--container-entrypoint-log", "--container-image="+app, "sh", "-c", `echo "ran:$RAN_RUNSCRIPT:$FROM_SIF"`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "ran:yes:yes\n") || !strings.Contains(r.stdout+r.stderr, "runscript-output") {
		t.Errorf("--container-entrypoint did not run the runscript:\n%s", r)
	}
	checkNothingLeft(t, nodes()[0])
}

// What pyxis's options do with any image, they do with a SIF: a named
// container keeps its writes, --container-save saves it, remap-root and a
// writable root, a relative path (srun and #SBATCH), the environment
// applied in each.
func TestSIFOptions(t *testing.T) {
	dir := userDir(t, fmt.Sprintf("e2e-sif-opts-%d", time.Now().UnixNano()))
	app := sifFrom(t, dir, "app", cluster["SMALL_IMAGE"], apptainerTree)
	job := func(script string) string {
		t.Helper()
		id, out := sbatchAs(t, dir, script)
		if !strings.Contains(out, "ok\n") {
			t.Errorf("job %s:\n%s", id, out)
		}
		return out
	}
	// One job: a named container's writes seen by its next step; a save.
	job(`#!/bin/sh
#SBATCH -N1
srun --container-image=` + app + ` --container-name=sif sh -c 'echo kept >/kept'
srun --container-name=sif sh -c 'cat /kept; echo "$FROM_SIF"' | tr '\n' ' ' | grep -q '^kept yes' && echo ok
srun --container-image=` + app + ` --container-writable --container-save=` + dir + `/saved.sqsh sh -c 'echo saved >/saved-file'
`)
	r := asUser(t, "srun", "-N1", "--container-image="+dir+"/saved.sqsh", "cat", "/saved-file", "/.singularity.d/labels.json")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "saved\n") || !strings.Contains(r.stdout, "podman-hpc e2e") {
		t.Errorf("the saved squashfs lacks the step's write or the labels:\n%s", r)
	}
	// Remap-root and a writable root.
	r = asUser(t, "srun", "-N1", "--container-remap-root", "--container-writable", "--container-image="+app,
		"sh", "-c", `id -u; touch /written && echo "w:$FROM_SIF"`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "0\nw:yes\n") {
		t.Errorf("remap-root, writable:\n%s", r)
	}
	// A relative path, with srun and in #SBATCH.
	r = asUserIn(t, dir, "srun", "-N1", "--container-image=./app.sif", "sh", "-c", `echo "rel:$FROM_SIF:$APPTAINER_CONTAINER"`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "rel:yes:"+app+"\n") {
		t.Errorf("--container-image=./app.sif:\n%s", r)
	}
	out := job("#!/bin/sh\n#SBATCH -N1\n#SBATCH --container-image=./app.sif\necho \"batch:$FROM_SIF\"; grep ^ID= /etc/os-release && echo ok\n")
	if !strings.Contains(out, "batch:yes\nID=podman-hpc-small\n") {
		t.Errorf("#SBATCH --container-image=./app.sif:\n%s", out)
	}
	// enroot's import of it: its root, as a squashfs file.
	mustSucceed(t, run(t, cluster["NODE_EXEC"], nodes()[0], "runuser", "-u", cluster["TEST_USER"], "--",
		cluster["PODMAN_HPCD"], "import", "--socket", cluster["PODMAN_HPCD_SOCKET"], "-o", dir+"/imported.sqsh", app))
	b, _ := os.ReadFile(app)
	root, err := appsif.FindRoot(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dir + "/imported.sqsh"); !bytes.Equal(got, b[root.Offset:root.Offset+root.Size]) {
		t.Errorf("podman-hpcd import of a SIF wrote %d bytes, not its root partition's %d", len(got), root.Size)
	}
	checkNothingLeft(t, nodes()[0])
}

// sbatchAs submits script as the test user from dir and returns the job's
// id and output once it has ended.
func sbatchAs(t *testing.T, dir, script string) (string, string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "job.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "job.out"))
	r := asUserIn(t, dir, "sbatch", "--parsable", "-o", "job.out", "job.sh")
	mustSucceed(t, r)
	id := strings.TrimSpace(r.stdout)
	waitJob(t, id)
	b, _ := os.ReadFile(filepath.Join(dir, "job.out"))
	return id, string(b)
}

// Open MPI over PMIx from a SIF, ranks on two nodes.
func TestSIFMPIRing(t *testing.T) {
	dir := userDir(t, fmt.Sprintf("e2e-sif-mpi-%d", time.Now().UnixNano()))
	mpi := sifFrom(t, dir, "mpi", cluster["MPI_IMAGE"], nil)
	r := asUser(t, "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix", "--container-image="+mpi, cluster["MPI_RING"])
	checkRing(t, r, 4, "Open MPI")
}

// A SIF that is not one we run, or that a user crafted: each fails at
// once with its reason, as the test user, and nothing is left behind.
func TestSecuritySIFHostile(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-sif-bad-%d", time.Now().UnixNano()))
	good := filepath.Join(dir, "good.sif")
	sqfs := squashfsWith(t, readableTempDir(t), nil)
	if err := siftest.WriteSquashfs(good, sqfs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	// The root's descriptor is the third (deffile, labels, root); its
	// Offset at +17, its Size at +25.
	d := int(binary.LittleEndian.Uint64(b[96:])) + 2*int(binary.LittleEndian.Uint64(b[104:])/binary.LittleEndian.Uint64(b[88:]))
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		mustSucceed(t, run(t, "chown", cluster["TEST_USER"]+":", p))
		return p
	}
	patched := func(name string, at int, v int64) string {
		bb := bytes.Clone(b)
		binary.LittleEndian.PutUint64(bb[at:], uint64(v))
		return write(name, bb)
	}
	made := func(name string, objs ...siftest.Object) string {
		p := filepath.Join(t.TempDir(), name)
		if err := siftest.Write(p, objs...); err != nil {
			t.Fatal(err)
		}
		bb, _ := os.ReadFile(p)
		return write(name, bb)
	}
	secret := filepath.Join(t.TempDir(), "secret.sif") // root's, 0600
	os.WriteFile(secret, b, 0o600)
	os.Chmod(filepath.Dir(secret), 0o755)
	mustSucceed(t, asUser(t, "sh", "-c", `cd "$1" && ln -s "$2" link.sif && mkfifo fifo.sif && cp good.sif mine.sif && chmod 000 mine.sif`, "sh", dir, secret))
	for _, c := range []struct{ path, want string }{
		{made("ext3.sif", siftest.Root(sif.FsExt3, strings.NewReader("ext3"))), "its root file system is ext3, not squashfs"},
		{made("overlay.sif", siftest.Overlay(strings.NewReader("ext3"))), "no root file system partition, only an overlay"},
		{made("encrypted.sif", siftest.Root(sif.FsEncryptedSquashfs, strings.NewReader("x"))), "its root file system is encrypted"},
		{write("corrupt.sif", b[:len(b)/2]), "not a usable squashfs image: SIF"},
		{patched("outside.sif", d+17, int64(len(b))), "lies outside the file"},
		{patched("huge.sif", d+25, 1<<62), "lies outside the file"},
		{patched("many.sif", 88, 1<<40), "declares 1099511627776 descriptors"},
		{filepath.Join(dir, "link.sif"), "permission denied"},
		{filepath.Join(dir, "mine.sif"), "permission denied"},
		{filepath.Join(dir, "fifo.sif"), "not a regular file"},
	} {
		r := asUser(t, "srun", "-N1", "--container-image="+c.path, "true")
		mustFailWith(t, r, c.want)
	}
	checkNothingLeft(t, nodes()[0])
}

// A SIF its owner rewrites in place while steps read it, between one the
// node runs and one whose root holds a device node: a step runs the good
// image or fails with a reason, never gets the device node.
func TestSecuritySIFRewritten(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-sif-race-%d", time.Now().UnixNano()))
	good := sifFrom(t, dir, "good", cluster["SMALL_IMAGE"], nil)
	bad := filepath.Join(t.TempDir(), "bad.sif")
	if err := siftest.WriteSquashfs(bad, squashfsWith(t, readableTempDir(t), nil, "-p", "dev d 755 0 0", "-p", "dev/sda b 666 0 0 8 0")); err != nil {
		t.Fatal(err)
	}
	versions := [2][]byte{}
	versions[0], _ = os.ReadFile(good)
	versions[1], _ = os.ReadFile(bad)
	p := filepath.Join(dir, "app.sif")
	os.WriteFile(p, versions[0], 0o644)
	mustSucceed(t, run(t, "chown", cluster["TEST_USER"]+":", p))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return
			}
			v := versions[i%2]
			for off := 0; off < len(v); off += 1 << 16 {
				f.WriteAt(v[off:min(off+1<<16, len(v))], int64(off))
			}
			f.Close()
		}
	}()
	ran := 0
	for range 6 {
		r := asUser(t, "srun", "-N1", "--container-image="+p, "sh", "-c", "ls /dev/sda 2>&1; grep ^ID= /etc/os-release")
		if r.code == 0 {
			ran++
			if !strings.Contains(r.stdout, "ID=podman-hpc-small") {
				t.Errorf("ran something else than the good image:\n%s", r)
			}
			continue
		}
		if !strings.Contains(r.stderr, "unsafe squashfs file") && !strings.Contains(r.stderr, "not a usable squashfs image") &&
			!strings.Contains(r.stderr, "unsupported image") && !strings.Contains(r.stderr, "No such file") {
			t.Errorf("failed without a reason:\n%s", r)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d of 6 steps ran", ran)
	checkNothingLeft(t, nodes()[0])
}

// A daemon restart (an upgrade) adopts a SIF's named container with the
// environment its scripts made: a step after the restart has it.
func TestSIFRestartAdopts(t *testing.T) {
	node := nodes()[0]
	dir := readableTempDir(t)
	os.Chmod(dir, 0o777)
	app := sifFrom(t, dir, "app", cluster["SMALL_IMAGE"], apptainerTree)
	script := `#!/bin/sh
srun --container-image=` + app + ` --container-name=up --container-mounts=` + dir + `:` + dir + ` sh -c 'touch ` + dir + `/started; sleep 3; echo "during:$FROM_SIF"' >during 2>&1 &
while [ ! -e started ]; do sleep 0.1; done
touch ready
while [ ! -e restarted ]; do sleep 0.1; done
srun --overlap --container-name=up sh -c 'echo "after:$FROM_SIF:$APPTAINER_NAME"' >after 2>&1
wait
echo done >finished
`
	path := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", filepath.Join(dir, "job.out"), "-D", dir, path)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	t.Cleanup(func() { run(t, "scancel", job) })
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	waitFor := func(name string) {
		t.Helper()
		// The file first: the job may end as soon as it is written.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return
			}
			if jobEnded(t, job) {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					return
				}
				break
			}
		}
		t.Fatalf("job %s: no %s; its output: %s; during: %s; after: %s", job, name, read("job.out"), read("during"), read("after"))
	}
	waitFor("ready")
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	adopted := false
	for deadline := time.Now().Add(10 * time.Second); !adopted && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		adopted = strings.Contains(daemonLog(t, node), "container adopted from the previous daemon")
	}
	if !adopted {
		t.Errorf("the new daemon adopted nothing")
	}
	os.WriteFile(filepath.Join(dir, "restarted"), nil, 0o644)
	waitFor("finished")
	if got := read("during"); got != "during:yes" {
		t.Errorf("the step running across the restart: %q", got)
	}
	if got := read("after"); got != "after:yes:app.sif" {
		t.Errorf("a step in the adopted container: %q, want after:yes:app.sif", got)
	}
	waitJob(t, job)
	checkNothingLeft(t, node)
}
