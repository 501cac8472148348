//go:build e2e

package e2e

import (
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
