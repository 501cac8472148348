//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entrypointImage makes an OCI layout of the small image whose entrypoint
// is script.
func entrypointImage(t *testing.T, script string) string {
	t.Helper()
	return imageWithTree(t, func(tree string) {
		if err := os.WriteFile(filepath.Join(tree, "entrypoint.sh"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}, "--config.entrypoint", "/entrypoint.sh")
}

// --container-entrypoint runs the image's entrypoint first: what it exports
// reaches the tasks, its output shows with --container-entrypoint-log, and
// one that does not run the command is a clear error.
func TestContainerEntrypoint(t *testing.T) {
	img := entrypointImage(t, "#!/bin/sh\necho \"entrypoint ran\"\nexport FROM_ENTRYPOINT=yes\nexec \"$@\"\n")
	show := []string{"sh", "-c", "echo FROM_ENTRYPOINT=$FROM_ENTRYPOINT"}
	r := srun(t, append([]string{"-N1", "--container-image=" + img, "--container-entrypoint", "--container-entrypoint-log"}, show...)...)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "FROM_ENTRYPOINT=yes") || !strings.Contains(r.stderr, "podman-hpc: entrypoint: entrypoint ran") {
		t.Errorf("with the entrypoint:\n%s", r)
	}
	r = srun(t, append([]string{"-N1", "--container-image=" + img}, show...)...)
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "=yes") || strings.Contains(r.stderr, "entrypoint ran") {
		t.Errorf("the entrypoint ran without --container-entrypoint:\n%s", r)
	}
	// What the entrypoint's shell itself exports (its PWD) is not the
	// image's: the tasks keep their own.
	cd := entrypointImage(t, "#!/bin/sh\ncd /tmp && export PWD && exec \"$@\"\n")
	r = srun(t, "-N1", "--chdir=/", "--container-image="+cd, "--container-entrypoint", "env")
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "PWD=/tmp") {
		t.Errorf("the entrypoint's shell's PWD reached the task:\n%s", r)
	}
	// The image's code first runs with the mounts as the tasks find them:
	// a bind of the user's nosuid and nodev already.
	dir := userDir(t, "e2e-entrypoint-seal")
	seal := entrypointImage(t, "#!/bin/sh\nexport MARK_OPTS=\"$(awk '$5 == \"/mark\" {print $6}' /proc/self/mountinfo)\"\nexec \"$@\"\n")
	r = asUser(t, "srun", "-N1", "--container-image="+seal, "--container-entrypoint", "--container-mounts="+dir+":/mark", "sh", "-c", "echo $MARK_OPTS")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "nosuid") || !strings.Contains(r.stdout, "nodev") {
		t.Errorf("the entrypoint ran with the user's bind not yet nosuid, nodev: %q\n%s", r.stdout, r)
	}
	bad := entrypointImage(t, "#!/bin/sh\necho broken entrypoint\nexit 3\n")
	r = srun(t, "-N1", "--container-image="+bad, "--container-entrypoint", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "the image's entrypoint exited before running the command (try --no-container-entrypoint)") ||
		!strings.Contains(r.stderr, "broken entrypoint") {
		t.Errorf("a failing entrypoint:\n%s", r)
	}
}

// An entrypoint that exports more environment than the plugin's answer
// carries fails the step with the cause and the fix, in srun's output, not
// with "no answer from podman-hpcd".
func TestContainerEntrypointHugeEnvironment(t *testing.T) {
	// 20 variables of 64 KiB: 1.3 MB, under execve's limits, over the wire's.
	img := entrypointImage(t, "#!/bin/sh\nx=x\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do x=$x$x; done\n"+
		"for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do export BIG$i=$x; done\nexec \"$@\"\n")
	r := srun(t, "-N1", "--container-image="+img, "--container-entrypoint", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "the environment the image's entrypoint left is ") ||
		!strings.Contains(r.stderr, " the plugin takes; export fewer or shorter variables (try --no-container-entrypoint)") ||
		strings.Contains(r.stderr, "no answer from podman-hpcd") {
		t.Errorf("an entrypoint that exports 1.3 MB:\n%s", r)
	}
	// The same image without its entrypoint runs.
	r = srun(t, "-N1", "--container-image="+img, "true")
	mustSucceed(t, r)
}
