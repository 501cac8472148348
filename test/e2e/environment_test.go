//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The host's LANG, LANGUAGE and LC_ALL stay outside (an image without the
// host's locales otherwise prints "Setting locale failed" from perl and
// others) unless --container-env names them, as under pyxis.
func TestHostLocaleNotPassed(t *testing.T) {
	show := `echo "LANG=${LANG-unset} LANGUAGE=${LANGUAGE-unset} LC_ALL=${LC_ALL-unset} LC_TIME=${LC_TIME-unset}"`
	host := []string{"LANG=xx_XX.UTF-8", "LANGUAGE=xx", "LC_ALL=yy_YY.UTF-8", "LC_TIME=C"}
	srunArgs := []string{"-N1", "--container-image=" + cluster["SMALL_IMAGE"]}
	r := runEnv(t, host, "srun", append(srunArgs, "sh", "-c", show)...)
	mustSucceed(t, r)
	if got := strings.TrimSpace(r.stdout); got != "LANG=unset LANGUAGE=unset LC_ALL=unset LC_TIME=C" {
		t.Errorf("without --container-env: %q", got)
	}
	r = runEnv(t, host, "srun", append(srunArgs, "--container-env=LANG,LC_ALL", "sh", "-c", show)...)
	mustSucceed(t, r)
	if got := strings.TrimSpace(r.stdout); got != "LANG=xx_XX.UTF-8 LANGUAGE=unset LC_ALL=yy_YY.UTF-8 LC_TIME=C" {
		t.Errorf("with --container-env=LANG,LC_ALL: %q", got)
	}
}

// Slurm's PMIx server names its components; the tasks also get them as the
// MCA variables a container's PMIx client reads (as enroot's hook sets).
func TestPMIxComponentsAsMCAVariables(t *testing.T) {
	show := `for v in SECURITY_MODE:psec GDS_MODULE:gds PTL_MODULE:ptl; do eval "a=\${PMIX_${v%%:*}-}; b=\${PMIX_MCA_${v##*:}-}"; echo "${v%%:*}=$a mca=$b"; done`
	r := srun(t, "-N1", "--mpi=pmix", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", show)
	mustSucceed(t, r)
	set := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		name, rest, _ := strings.Cut(line, "=")
		val, mca, _ := strings.Cut(rest, " mca=")
		if val != "" {
			set++
			if mca != val {
				t.Errorf("PMIX_%s=%q but its MCA variable is %q", name, val, mca)
			}
		}
	}
	if set == 0 {
		t.Fatalf("Slurm's mpi/pmix set none of PMIX_SECURITY_MODE, PMIX_GDS_MODULE, PMIX_PTL_MODULE:\n%s", r)
	}
}

// A trailing comma in --container-env is an error, in srun, as in pyxis.
func TestContainerEnvTrailingComma(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-env=PATH,", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "--container-env: empty variable name") {
		t.Errorf("not refused with the reason:\n%s", r)
	}
}

// --container-mount-home binds the home the job runs with ($HOME, not the
// account's), opened as the user, at its path (and HOME says so), or at
// /root under --container-remap-root; a $HOME the user may not read is not
// bound.
func TestMountHomeIsTheJobsHOME(t *testing.T) {
	requireRoot(t)
	home := userDir(t, "e2e-other-home")
	mustSucceed(t, asUser(t, "sh", "-c", `echo mine >"$1/marker"`, "sh", home))
	img := "--container-image=" + cluster["SMALL_IMAGE"]
	r := asUser(t, "env", "HOME="+home, "srun", "-N1", img, "--container-mount-home", "sh", "-c", `echo "$HOME"; cat "$HOME/marker"`)
	mustSucceed(t, r)
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != home || got[1] != "mine" {
		t.Errorf("HOME=%s: got %q", home, got)
	}
	r = asUser(t, "env", "HOME="+home, "srun", "-N1", img, "--container-mount-home", "--container-remap-root", "sh", "-c", `echo "$HOME"; cat /root/marker`)
	mustSucceed(t, r)
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "/root" || got[1] != "mine" {
		t.Errorf("HOME=%s under --container-remap-root: got %q", home, got)
	}
	// A directory of root's that the user cannot reach (t.TempDir is
	// root's, mode 0700): opened as the user, it is not bound.
	secret := filepath.Join(t.TempDir(), "home")
	if err := os.WriteFile(filepath.Join(filepath.Dir(secret), "s"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(secret, 0o755); err != nil {
		t.Fatal(err)
	}
	r = asUser(t, "env", "HOME="+secret, "srun", "-N1", img, "--container-mount-home", "cat", secret+"/../s")
	if r.code == 0 || strings.Contains(r.stdout, "secret") || !strings.Contains(r.stderr, secret+": permission denied (as user "+cluster["TEST_USER"]+")") {
		t.Errorf("HOME=%s (root's, out of the user's reach) was bound for the user:\n%s", secret, r)
	}
	checkNothingLeft(t, nodes()[0])
}
