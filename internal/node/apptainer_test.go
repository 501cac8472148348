package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// The prelude, as the image's shell runs it: the env scripts sourced in
// order (a later one sees what an earlier exported), a directory named
// *.sh skipped, and its arguments exec'd with the result. Run here by the
// host's sh over a copy of the prelude whose directory is a temporary one.
func TestApptainerPrelude(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"01-base.sh":        "export A=1\n",
		"90-environment.sh": "export B=\"$A-2\"\nC=unexported\n",
		"99-base.sh":        "export LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/.singularity.d/libs\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "50-dir.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	prelude := strings.ReplaceAll(apptainerPrelude, "/.singularity.d/env", dir)
	args := apptainerArgs()
	if args[0] != "/bin/sh" || args[2] != apptainerPrelude {
		t.Fatalf("args %q", args)
	}
	cmd := exec.Command("sh", "-c", prelude, args[3], "env")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=/opt/lib"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	env := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, want := range []string{"A=1", "B=1-2", "LD_LIBRARY_PATH=/opt/lib:/.singularity.d/libs"} {
		if !slices.Contains(env, want) {
			t.Errorf("no %s in %q", want, env)
		}
	}
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "C=") }) {
		t.Errorf("an unexported variable reached the command: %q", env)
	}
}

func TestWithApptainerVars(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Env: []string{"A=1"}}}
	if err := withApptainerVars("/data/img/./app.sif")(s); err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "APPTAINER_CONTAINER=/data/img/app.sif", "APPTAINER_NAME=app.sif",
		"SINGULARITY_CONTAINER=/data/img/app.sif", "SINGULARITY_NAME=app.sif"}
	if !slices.Equal(s.Process.Env, want) {
		t.Errorf("env %q, want %q", s.Process.Env, want)
	}
}

func TestWithoutShellVars(t *testing.T) {
	in := []string{"PWD=/", "A=1", "SHLVL=1", "_=/.podman-hpc/init", "OLDPWD=/x", "PWDX=keep"}
	got := withoutShellVars(in)
	if want := []string{"A=1", "PWDX=keep"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(in) != 6 {
		t.Error("the input was changed")
	}
}

// A SIF's container runs the prelude first, then the runscript when the
// entrypoint is asked for, then the init; an image that is not a SIF
// runs neither.
func TestApptainerArgsAndFirst(t *testing.T) {
	runscript := []string{"/.singularity.d/runscript"}
	for _, tc := range []struct {
		apptainer, entrypoint bool
		first                 bool
		what                  string
	}{
		{false, false, false, ""},
		{false, true, true, "the image's entrypoint"},
		{true, false, true, "environment scripts (/.singularity.d/env/*.sh)"},
		{true, true, true, "or its runscript"},
	} {
		c := &container{req: &wire.ContainerRequest{Entrypoint: tc.entrypoint}, img: &image{Apptainer: tc.apptainer, Entrypoint: runscript}}
		if c.runsFirst() != tc.first {
			t.Errorf("%+v: runsFirst %t", tc, !tc.first)
		}
		if !tc.first {
			continue
		}
		if what, hint := c.firstWhat(); !strings.Contains(what, tc.what) || tc.entrypoint != strings.Contains(hint, "--no-container-entrypoint") {
			t.Errorf("%+v: firstWhat %q %q", tc, what, hint)
		}
	}
}
