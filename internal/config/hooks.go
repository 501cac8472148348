package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/hooks"
)

// hooksKeys are the config keys of OCI hooks and the built-in modules.
var hooksKeys = []string{"hooks_dirs", "modules", "gpu_cdi", "mpi_libs", "mpi_dependency_libs", "mpi_devices", "mpi_env", "mpi_abi_check", "pmi_dirs"}

// moduleNames are the built-in modules, in the order they are applied.
var moduleNames = []string{"gpu", "ib", "mpi", "pmi"}

// Hooks is the hooks part of Config; contrib/slurm/podman-hpcd.conf
// documents each key.
type Hooks struct {
	Dirs    []string // hooks.d directories, later ones masking earlier ones
	Modules []string // the built-in modules this node offers
	GPUCDI  bool     // the gpu module uses the node's CDI spec when there is one
	// The mpi module: host libraries (paths or patterns) and what they need.
	MPILibs, MPIDependencyLibs, MPIDevices []string
	MPIEnv                                 []string // NAME=VALUE for the tasks
	MPIABICheck                            hooks.ABICheck
	PMIDirs                                []string // the step's PMIx directories (%j, %s, %u, %n)
}

func defaultHooks() Hooks {
	return Hooks{
		Dirs:        slices.Clone(hooks.DefaultDirs),
		Modules:     []string{"gpu", "ib", "pmi"},
		GPUCDI:      true,
		MPIABICheck: hooks.ABIMajor,
		PMIDirs:     slices.Clone(hooks.DefaultPMIDirs),
	}
}

// splitList reads "a, b,,c" as [a b c].
func splitList(value string) []string {
	var out []string
	for _, s := range strings.Split(value, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// set applies one key; known is false for a key that is not a hooks key.
func (h *Hooks) set(key, value string) (known bool, err error) {
	list := splitList(value)
	switch key {
	case "hooks_dirs", "mpi_libs", "mpi_dependency_libs", "mpi_devices", "pmi_dirs":
		for _, p := range list {
			if !filepath.IsAbs(p) {
				return true, fmt.Errorf("%s: %q is not an absolute path", key, p)
			}
			if _, err := filepath.Match(p, ""); err != nil {
				return true, fmt.Errorf("%s: %q: bad pattern", key, p)
			}
		}
		switch key {
		case "hooks_dirs":
			h.Dirs = list
		case "mpi_libs":
			h.MPILibs = list
		case "mpi_dependency_libs":
			h.MPIDependencyLibs = list
		case "pmi_dirs":
			h.PMIDirs = append([]string{}, list...) // empty: none, not the defaults
		default:
			h.MPIDevices = list
		}
	case "modules":
		for _, m := range list {
			if !slices.Contains(moduleNames, m) {
				return true, fmt.Errorf("modules: unknown module %q (known: %s)", m, strings.Join(moduleNames, ", "))
			}
		}
		h.Modules = list
	case "gpu_cdi":
		if value != "yes" && value != "no" {
			return true, fmt.Errorf("gpu_cdi %q: want yes or no", value)
		}
		h.GPUCDI = value == "yes"
	case "mpi_env":
		for _, e := range list {
			if name, _, ok := strings.Cut(e, "="); !ok || !isEnvName(name) {
				return true, fmt.Errorf("mpi_env: %q is not NAME=VALUE", e)
			}
		}
		h.MPIEnv = list
	case "mpi_abi_check":
		c, err := hooks.ParseABICheck(value)
		if err != nil {
			return true, fmt.Errorf("mpi_abi_check %w", err)
		}
		h.MPIABICheck = c
	default:
		return false, nil
	}
	return true, nil
}

func isEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// Enabled returns the enabled modules, configured, in moduleNames' order.
func (h Hooks) Enabled() []hooks.Module {
	var out []hooks.Module
	for _, name := range moduleNames {
		if !slices.Contains(h.Modules, name) {
			continue
		}
		switch name {
		case "gpu":
			out = append(out, hooks.GPU{NoCDI: !h.GPUCDI})
		case "ib":
			out = append(out, hooks.IB{})
		case "mpi":
			out = append(out, hooks.MPI{Libs: h.MPILibs, DependencyLibs: h.MPIDependencyLibs, Devices: h.MPIDevices, Env: h.MPIEnv, Check: h.MPIABICheck})
		case "pmi":
			out = append(out, hooks.PMI{Dirs: h.PMIDirs})
		}
	}
	return out
}
