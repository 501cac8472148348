//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// In an #SBATCH line, REGISTRY#IMAGE is written with the '#' escaped, as
// pyxis documents.
func TestSbatchEscapedHash(t *testing.T) {
	ref := strings.Replace(cluster["SMALL_IMAGE"], "/", `\#`, 1)
	script := "#!/bin/sh\n#SBATCH --container-image=" + ref + "\n#SBATCH -N1\ngrep ^ID= /etc/os-release\n"
	id, out := sbatch(t, script)
	if strings.TrimSpace(out) != "ID=podman-hpc-small" {
		t.Errorf("job %s (%s): %q", id, ref, out)
	}
}
