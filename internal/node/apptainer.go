package node

import (
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// A SIF image (Apptainer's) is run as Apptainer runs it, within what a
// container here is: its environment is what its /.singularity.d/env/*.sh
// scripts export, sourced in order by the image's /bin/sh, as Apptainer's
// /.singularity.d/actions/exec does, once per container before the
// tasks start (they run as the image's entrypoint would, confined as the
// tasks are, and their result reaches the tasks as an image's ENV does:
// the image's values win unless --container-env names them, as
// Apptainer's own win unless --env names them). --container-entrypoint
// runs /.singularity.d/runscript after them (the image's Entrypoint),
// which, like any entrypoint here, must end by running its arguments.

// withApptainerVars adds to the container's first process the variables
// Apptainer sets in every container of a SIF, by which software (and the
// env scripts) tell they run in one: the image's path and name, under
// Apptainer's and Singularity's names. They reach the tasks with the rest.
func withApptainerVars(sif string) oci.SpecOpt {
	return func(s *specs.Spec) error {
		// The plugin sends a relative path joined to the job's directory
		// as it is (/home/u/./app.sif).
		sif := filepath.Clean(sif)
		name := filepath.Base(sif)
		s.Process.Env = append(s.Process.Env, "APPTAINER_CONTAINER="+sif, "APPTAINER_NAME="+name,
			"SINGULARITY_CONTAINER="+sif, "SINGULARITY_NAME="+name)
		return nil
	}
}

// apptainerPrelude sources the env scripts and runs its arguments. A
// script that is not a regular file is skipped, as Apptainer's actions
// do.
const apptainerPrelude = `for f in /.singularity.d/env/*.sh; do if [ -f "$f" ]; then . "$f"; fi; done; exec "$@"`

// apptainerArgs are the process arguments that run the prelude before
// what follows them.
func apptainerArgs() []string {
	return []string{"/bin/sh", "-c", apptainerPrelude, "podman-hpc-apptainer-env"}
}

// shellVars are what the shell running an entrypoint or the prelude itself
// exports (bash: PWD, SHLVL, _): the shell's, not the image's, and they
// would win over the tasks'.
var shellVars = []string{"PWD", "OLDPWD", "SHLVL", "_"}

// withoutShellVars is env without shellVars.
func withoutShellVars(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(e string) bool {
		name, _, _ := strings.Cut(e, "=")
		return slices.Contains(shellVars, name)
	})
}

// runsFirst: something of the image runs before the container's init
// (the image's entrypoint, a SIF's environment scripts), whose environment
// is then the tasks'.
func (c *container) runsFirst() bool {
	return c.req.Entrypoint || c.img.Apptainer
}

// firstWhat names what ran first, for errors, and the hint.
func (c *container) firstWhat() (string, string) {
	switch {
	case c.img.Apptainer && c.req.Entrypoint:
		return "the SIF's environment scripts (/.singularity.d/env/*.sh) or its runscript", " (try --no-container-entrypoint)"
	case c.img.Apptainer:
		return "the SIF's environment scripts (/.singularity.d/env/*.sh)", ""
	}
	return "the image's entrypoint", " (try --no-container-entrypoint)"
}
