//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// helloRPM is the local package in the rpm image (test/images/rpm.sh): a
// program, a file rpm gives to daemon, and a %post that chowns.
const helloRPM = "/srv/podman-hpc-rpms/podman-hpc-hello-1.0-1.noarch.rpm"

// rpmCheck runs what the package installed and asks rpm about it: the
// file rpm gave to daemon and the directory %post chowned stay the user's
// (fake root's chown succeeds without effect).
const rpmCheck = `podman-hpc-hello && cat /var/lib/podman-hpc-hello/state &&
stat -c %u /var/lib/podman-hpc-hello/owned /var/lib/podman-hpc-hello && rpm -q podman-hpc-hello`

// rpmWant is what rpmCheck prints, as fake root.
const rpmWant = "hello from podman-hpc-hello\ninstalled\n0\n0\npodman-hpc-hello-1.0-1.noarch\n"

// dnfInstall installs the local package with dnf: no repository is
// configured, so dnf resolves it against the image's rpm database alone.
const dnfInstall = `dnf -q -y install ` + helloRPM

// Under --container-remap-root, dnf and rpm install a local package as fake
// root in a writable container, as under enroot: rpm's chown of the files
// and the %post's chown succeed without effect.
func TestDnfInstallAsFakeRoot(t *testing.T) {
	for name, install := range map[string]string{"dnf": dnfInstall, "rpm": "rpm -i " + helloRPM} {
		t.Run(name, func(t *testing.T) {
			r := asUser(t, "srun", "-N1", "--container-image="+cluster["RPM_IMAGE"], "--container-remap-root", "--container-writable",
				"sh", "-c", install+" && "+rpmCheck)
			mustSucceed(t, r)
			if !strings.HasSuffix(r.stdout, rpmWant) {
				t.Errorf("%s as fake root: want it to end with %q:\n%s", name, rpmWant, r)
			}
			if strings.Contains(r.stdout+r.stderr, "error:") || strings.Contains(r.stderr, "Error") {
				t.Errorf("%s complained:\n%s", name, r)
			}
			checkNothingLeft(t, nodes()[0])
		})
	}
}

// In a named container the installed package stays for the job's next step.
// Without remap-root the user owns the root, but dnf wants root, and says so;
// rpm installs as the user, and the %post's chown to daemon fails: the
// namespace maps one id, and only fake root's chown succeeds without effect.
func TestDnfInstallInNamedContainer(t *testing.T) {
	script := `srun --container-image=` + cluster["RPM_IMAGE"] + ` --container-name=dnf --container-remap-root sh -c '` + dnfInstall + ` >/dev/null'; echo installed=$?
srun --container-name=dnf sh -c '` + rpmCheck + `'
srun --container-image=` + cluster["RPM_IMAGE"] + ` --container-writable sh -c '` + dnfInstall + ` 2>&1'; echo plain=$?
srun --container-image=` + cluster["RPM_IMAGE"] + ` --container-writable rpm -i ` + helloRPM
	r := asUser(t, "salloc", "-N1", "sh", "-c", script)
	mustSucceed(t, r)
	if want := "installed=0\n" + rpmWant; !strings.HasPrefix(r.stdout, want) || !strings.HasSuffix(r.stdout, "\nplain=1\n") {
		t.Errorf("named container: want %q, then dnf refusing the user:\n%s", want, r)
	}
	if !strings.Contains(r.stdout, "Error: This command has to be run with superuser privileges") {
		t.Errorf("dnf as the user does not say it needs root:\n%s", r)
	}
	if !strings.Contains(r.stderr, "chown: changing ownership of '/var/lib/podman-hpc-hello': Invalid argument") {
		t.Errorf("rpm as the user: want the %%post's chown to fail (one id mapped):\n%s", r)
	}
	allocationEnded(t, r)
	checkNothingLeft(t, nodes()[0])
}
