//go:build e2e

// Package e2e drives the real thing: srun and sbatch on the test cluster that
// test/cluster/up.sh brings up (make e2e does). One file per feature.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster is build/cluster.env, as written by test/cluster/up.sh.
var cluster map[string]string

func TestMain(m *testing.M) {
	// PHPC_LAB_ID selects a second test cluster (test/cluster/lib.sh).
	env, err := loadEnv("../../build/cluster" + os.Getenv("PHPC_LAB_ID") + ".env")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no test cluster (%v): run 'make e2e', or 'make cluster' first\n", err)
		os.Exit(1)
	}
	cluster = env
	// A cluster of another Slurm (make cluster SLURM=24.11) has its commands
	// in SLURM_BIN: srun, sbatch, scontrol... are those, for root and the
	// test user alike.
	if bin := cluster["SLURM_BIN"]; bin != "" {
		os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	os.Exit(m.Run())
}

func loadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env, sc.Err()
}

func nodes() []string { return strings.Fields(cluster["NODES"]) }

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// result is what a command printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs a command with the cluster's environment, for at most two minutes.
func run(t *testing.T, name string, args ...string) result {
	t.Helper()
	return runEnv(t, nil, name, args...)
}

// runEnv is run with more variables (NAME=VALUE) in the environment.
func runEnv(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// SIGTERM first: a killed salloc or srun would leave its job behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(append(os.Environ(), "SLURM_CONF="+cluster["SLURM_CONF"]), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %q timed out\n%s", name, args, r)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// mpichAcrossNodes is the environment of an MPICH step across test nodes.
// UCX (MPICH's netmod) takes ranks with one boot id for one machine's, and
// the test nodes share the kernel: it passes their messages through shared
// memory. Its cross-memory attach and /proc/PID/fd handover need the two
// processes in one user namespace, which two nodes' containers (as two
// machines) are not; System V shared memory needs only the same uid. Over
// TCP instead, Debian's MPICH 4.0.2 with UCX 1.13 now and then hangs in
// MPI_Finalize, with or without containers.
var mpichAcrossNodes = []string{"UCX_TLS=sysv,self"}

// srun runs srun as root.
func srun(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, "srun", args...)
}

// asUser runs a command as the unprivileged test user.
func asUser(t *testing.T, name string, args ...string) result {
	t.Helper()
	requireRoot(t)
	full := append([]string{"-u", cluster["TEST_USER"], "--", "env", "SLURM_CONF=" + cluster["SLURM_CONF"], name}, args...)
	return run(t, "runuser", full...)
}

// mustSucceed fails the test unless r exited 0.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("command failed: %s", r)
	}
}

// sbatch submits a script and waits for the job to end; it returns the job id
// and the job's output file.
func sbatch(t *testing.T, script string, args ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	path := filepath.Join(dir, "job.sh")
	out := filepath.Join(dir, "job.out")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"--parsable", "-o", out, "-D", dir}, args...)
	r := run(t, "sbatch", append(full, path)...)
	id := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	if r.code != 0 || id == "" {
		t.Fatalf("sbatch did not submit: %s", r)
	}
	// sbatch --wait polls every ten seconds; this polls every tenth.
	deadline := time.Now().Add(2 * time.Minute)
	for !jobEnded(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end in 2 minutes", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(out)
	return id, string(b)
}

// jobEnded reports whether Slurm says the job is over.
func jobEnded(t *testing.T, id string) bool {
	r := run(t, "scontrol", "show", "job", "-o", id)
	m := regexp.MustCompile(`JobState=(\S+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		return r.code != 0 // gone from slurmctld: ended long ago
	}
	switch m[1] {
	case "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED":
		return false
	}
	return true
}

// daemonLog returns a node's podman-hpcd log.
func daemonLog(t *testing.T, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fileUID is the owner of a file, as a decimal string.
func fileUID(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Uid), 10)
	}
	return "?"
}

func regexpFind(s, re string) string { return regexp.MustCompile(re).FindString(s) }

// checkNothingLeft fails the test unless, within five seconds, node has no
// container mount (in the node's mount namespace, or in the one the daemon
// may run its runtime from: any of its threads'), runtime container, bundle
// or init process left, and the host's device nodes are still root's:
// teardown follows slurmstepd's exit, a moment after srun returns.
func checkNothingLeft(t *testing.T, node string) {
	t.Helper()
	state := cluster["LAB"] + "/nodelocal/state"
	daemon := filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid")
	var got string
	for i := 0; i < 50; i++ {
		r := run(t, cluster["NODE_EXEC"], node, "sh", "-c",
			"grep -c ' "+state+"/' /proc/self/mountinfo; cat /proc/$(cat "+daemon+")/task/*/mountinfo | grep -c ' "+state+"/'; "+
				"ls "+state+"/runtime | wc -l; ls "+state+"/containers 2>/dev/null | wc -l; "+
				// Nodes share the host's PID namespace with other test
				// clusters: count only inits that see this one's files.
				"for p in $(pgrep -f '^/[.]podman-hpc/init'); do grep -qsF '"+cluster["LAB"]+"/' /proc/$p/mountinfo && echo $p; done | wc -l; "+
				"stat -c %u:%g /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty | grep -vc '^0:0$'; "+
				// Writable containers' file systems, and their loop devices.
				"ls "+writableDir()+" | wc -l; grep -lF '"+writableDir()+"/' /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l")
		if got = strings.Join(strings.Fields(r.stdout), " "); got == "0 0 0 0 0 0 0 0" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s: mounts (node, daemon), runtime containers, bundles, inits left, host devices not root's, writable layers, their loop devices: %q", node, got)
}

// writableDir is the nodes' writable_dir (test/cluster/up.sh).
func writableDir() string { return cluster["LAB"] + "/nodelocal/disk/writable" }

// readableTempDir is a temporary directory the test user may enter and read.
func readableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageWithTree makes an OCI layout of the small image with one more layer
// holding what build puts in a directory, and umoci config's arguments
// (--config.entrypoint ...) applied, readable by every user.
func imageWithTree(t *testing.T, build func(tree string), config ...string) string {
	t.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skipf("%q not found in PATH", "umoci")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	layout := filepath.Join(dir, "img")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", layout))
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	build(tree)
	entries, _ := os.ReadDir(tree)
	args := []string{"-C", tree, "-cf", filepath.Join(dir, "layer.tar")}
	for _, e := range entries {
		args = append(args, e.Name()) // not ".": the layer would set the root's mode
	}
	mustSucceed(t, run(t, "tar", args...))
	mustSucceed(t, run(t, "umoci", "raw", "add-layer", "--image", layout+":latest", filepath.Join(dir, "layer.tar")))
	if len(config) > 0 {
		mustSucceed(t, run(t, "umoci", append([]string{"config", "--image", layout + ":latest"}, config...)...))
	}
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", dir))
	return "oci:" + layout + ":latest"
}

// configWith returns the daemon config conf with lines ("key = value"
// each) in force: a key conf gives already is replaced (the daemon refuses
// a key given twice), the others are added.
func configWith(conf []byte, lines string) []byte {
	keys := map[string]bool{}
	for _, l := range strings.Split(lines, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok {
			keys[strings.TrimSpace(k)] = true
		}
	}
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(conf), "\n"), "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(strings.TrimSpace(l), "#") && keys[strings.TrimSpace(k)] {
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n") + "\n" + lines + "\n")
}
