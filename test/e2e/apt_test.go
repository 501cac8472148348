//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// aptInstall updates apt's lists from the apt image's own file:
// repository and installs podman-hpc-hello from it: apt's whole path
// offline (its methods and their drop to _apt, dpkg, a maintainer script
// that chowns), then runs what it installed.
const aptInstall = `apt-get -q update && apt-get -q install -y podman-hpc-hello && podman-hpc-hello &&
cat /var/lib/podman-hpc-hello/state && stat -c %u /var/lib/podman-hpc-hello && dpkg -s podman-hpc-hello | grep ^Status`

// aptWant is what aptInstall prints last, as fake root.
const aptWant = "hello from podman-hpc-hello\ninstalled\n0\nStatus: install ok installed\n"

// aptComplaint is a line of apt's about its sandbox or ids ("W: Download is
// performed unsandboxed as root", "setgroups 65534 failed", "Could not switch
// group"), or any error.
var aptComplaint = regexp.MustCompile(`(?m)^(E:|W:.*(sandbox|unsandboxed|setgroups|seteuid|setegid|switch|chown|chmod)).*`)

// Under --container-remap-root, apt-get install works as fake root in a
// writable container, as under enroot: apt's drop to _apt and the package's
// chown succeed without effect, the image's _apt directories are the user's.
func TestAptInstallAsFakeRoot(t *testing.T) {
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["APT_IMAGE"], "--container-remap-root", "--container-writable", "sh", "-c", aptInstall)
	mustSucceed(t, r)
	if !strings.HasSuffix(r.stdout, aptWant) {
		t.Errorf("apt-get install as fake root: want it to end with %q:\n%s", aptWant, r)
	}
	if m := aptComplaint.FindAllString(r.stdout+r.stderr, -1); len(m) > 0 {
		t.Errorf("apt complained: %q", m)
	}
	checkNothingLeft(t, nodes()[0])
}

// In a named container the installed package stays for the job's next step.
// Without remap-root the user owns the root and apt's lists (apt-get update
// works), but dpkg wants root, and says so, as under enroot without --root.
func TestAptInstallInNamedContainer(t *testing.T) {
	script := `srun --container-image=` + cluster["APT_IMAGE"] + ` --container-name=apt --container-remap-root sh -c '{ ` + aptInstall + `; } >/dev/null' && echo installed=$?
srun --container-name=apt podman-hpc-hello
srun --container-image=` + cluster["APT_IMAGE"] + ` --container-writable sh -c 'apt-get -q update >/dev/null && apt-get -q install -y podman-hpc-hello 2>&1 | grep dpkg:'; echo plain=$?`
	r := asUser(t, "salloc", "-N1", "sh", "-c", script)
	mustSucceed(t, r)
	if want := "installed=0\nhello from podman-hpc-hello\n"; !strings.HasPrefix(r.stdout, want) || !strings.HasSuffix(r.stdout, "plain=0\n") {
		t.Errorf("named container: want %q, then dpkg refusing the user:\n%s", want, r)
	}
	if !strings.Contains(r.stdout+r.stderr, "dpkg: error: requested operation requires superuser privilege") {
		t.Errorf("dpkg as the user does not say it needs root:\n%s", r)
	}
	allocationEnded(t, r)
	checkNothingLeft(t, nodes()[0])
}

// allocationEnded waits until the job of salloc's result r has ended (its
// epilog removes its named containers), so that the next test finds the
// nodes idle.
func allocationEnded(t *testing.T, r result) {
	t.Helper()
	job := strings.TrimPrefix(regexpFind(r.stderr, `Granted job allocation \d+`), "Granted job allocation ")
	if job == "" {
		t.Fatalf("no job allocation in salloc's output:\n%s", r)
	}
	for deadline := time.Now().Add(time.Minute); !jobEnded(t, job); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end in a minute", job)
		}
	}
}
