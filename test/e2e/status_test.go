//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// podman-hpcd status answers an admin's first questions: version, runtime,
// cache size and limits, images, running containers, last errors; a user
// sees the node's facts and only their own containers and errors.
func TestStatusForRootAndUser(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	// A container of the test user's, and a failure of root's.
	job, done := stepInBackground(t, node, "status-step", "--container-image="+cluster["SMALL_IMAGE"], "sleep", "5")
	// A digest: a missing tag fails srun before the node (digest_test.go).
	bad := srun(t, "-N1", "-w", node, "--container-image="+cluster["REGISTRY"]+"/podman-hpc/no-such-image@sha256:"+strings.Repeat("0", 64), "true")
	if bad.code == 0 {
		t.Fatalf("a step of a missing image succeeded: %s", bad)
	}
	var root result
	for i := 0; i < 50; i++ {
		root = podmanHpcd(t, node, "status")
		mustSucceed(t, root)
		if strings.Contains(root.stdout, "phpc-"+job+"-0") {
			break
		}
	}
	for _, re := range []string{
		`(?m)^podman-hpcd \S+ on ` + node + `: up \S+, pid \d+, protocol 1$`,
		`(?m)^runtime: \S*(crun|runc)$`,
		`(?m)^cache: \S+, \d+ images, \S+; limits: total \S+, per image \S+, unused .+$`,
		`(?m)^images:$`,
		`(?m)^  \S*podman-hpc/small:latest\S*\s+sha256:`,
		`(?m)^containers:$`,
		`(?m)^  phpc-` + job + `-0\s+-\s+` + job + `\s+0\s+` + cluster["TEST_USER"] + `\s`,
		`(?m)^last errors:$`,
		`(?m)^  \S+\s+container\s+root\s+job \d+ step \d+: failed to import docker image: \S+no-such-image@sha256:0+: `,
	} {
		if !regexp.MustCompile(re).MatchString(root.stdout) {
			t.Errorf("root's status lacks %s:\n%s", re, root.stdout)
		}
	}
	user := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--",
		cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	mustSucceed(t, user)
	if !strings.Contains(user.stdout, "phpc-"+job+"-0") || !regexp.MustCompile(`(?m)^runtime: `).MatchString(user.stdout) {
		t.Errorf("the user's status lacks their container or the runtime:\n%s", user.stdout)
	}
	if strings.Contains(user.stdout, "no-such-image") {
		t.Errorf("the user sees root's error:\n%s", user.stdout)
	}
	mustSucceed(t, <-done)
}
