package cgotest

import (
	"debug/elf"
	"os"
	"strings"
	"testing"
)

// The built plugin exports only what Slurm looks up, and carries no Go
// runtime: a Go runtime in srun or slurmstepd breaks on fork and cannot setns
// into mount namespaces.
func TestPluginIsCOnlyAndExportsOnlySpankSymbols(t *testing.T) {
	const so = "../../bin/spank_podman_hpc.so"
	if _, err := os.Stat(so); err != nil {
		t.Skipf("%s not built (make build): %v", so, err)
	}
	f, err := elf.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	exported := 0
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF || elf.ST_BIND(s.Info) == elf.STB_LOCAL {
			continue
		}
		exported++
		if !strings.HasPrefix(s.Name, "slurm_spank_") && !strings.HasPrefix(s.Name, "plugin_") {
			t.Errorf("exports %q; only slurm_spank_* and plugin_* may leave the plugin", s.Name)
		}
	}
	if exported < 5 {
		t.Errorf("only %d exported symbols; slurm_spank_init and plugin_name must be there", exported)
	}
	for _, sec := range []string{".go.buildinfo", ".gopclntab", ".note.go.buildid"} {
		if f.Section(sec) != nil {
			t.Errorf("plugin has section %s: Go code was linked in", sec)
		}
	}
	libs, _ := f.ImportedLibraries()
	for _, l := range libs {
		if !strings.HasPrefix(l, "libc.so") {
			t.Errorf("plugin needs %s; it should need only libc", l)
		}
	}
	bind, _ := f.DynValue(elf.DT_FLAGS_1)
	if len(bind) == 0 || bind[0]&uint64(elf.DF_1_NOW) == 0 {
		t.Error("plugin not linked with -z now (full RELRO)")
	}
}
