package cgotest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// manTerms are the terms of a man page's definitions in one section ("#
// NAME"): each "**X**" in a line that begins with "**" and is followed by
// its definition, a line that begins with ": " (go-md2man's .TP).
func manTerms(t *testing.T, page, section string) []string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(b), "\n# "+section+"\n")
	if !ok {
		t.Fatalf("%s has no section %s", page, section)
	}
	body, _, _ = strings.Cut(body, "\n# ")
	var terms []string
	bold := regexp.MustCompile(`\*\*([^*]+)\*\*`)
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "**") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], ": ") {
			for _, m := range bold.FindAllStringSubmatch(l, -1) {
				terms = append(terms, m[1])
			}
		}
	}
	return terms
}

// pluginSource is the C source the plugin's tables are in.
func pluginSource(t *testing.T, table, end string) string {
	t.Helper()
	b, err := os.ReadFile("../podman_hpc.c")
	if err != nil {
		t.Fatal(err)
	}
	_, s, ok := strings.Cut(string(b), table)
	s, _, ok2 := strings.Cut(s, end)
	if !ok || !ok2 {
		t.Fatalf("podman_hpc.c has no %q ... %q", table, end)
	}
	return s
}

const manPage = "../../docs/man/podman-hpc.1.md"

// podman-hpc(1) defines every option of the plugin's options[] table, and
// no option the plugin does not register.
func TestManPageDocumentsEveryOption(t *testing.T) {
	t.Parallel()
	var options []string
	for _, m := range regexp.MustCompile(`(?m)^\s*\{ "([a-z-]+)",`).FindAllStringSubmatch(
		pluginSource(t, "static struct spank_option options[] = {", "SPANK_OPTIONS_TABLE_END"), -1) {
		options = append(options, "--"+m[1])
	}
	if len(options) < 15 {
		t.Fatalf("options[] holds %q", options)
	}
	var documented []string
	for _, term := range manTerms(t, manPage, "OPTIONS") {
		if name, _, _ := strings.Cut(term, "="); strings.HasPrefix(name, "--") {
			documented = append(documented, name)
		}
	}
	for _, o := range options {
		if !slices.Contains(documented, o) {
			t.Errorf("%s does not define %s (OPTIONS: a line beginning \"**%s\")", manPage, o, o)
		}
	}
	for _, o := range documented {
		if !slices.Contains(options, o) {
			t.Errorf("%s defines %s, which the plugin does not register", manPage, o)
		}
	}
}

// podman-hpc(1) defines every environment form of an option the plugin
// reads: PODMAN_HPC_CONTAINER_*, and PYXIS_CONTAINER_* for pyxis's.
func TestManPageDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	var vars []string
	for _, m := range regexp.MustCompile(`(?m)^\s*\{ "([A-Z_]+)", \w+, \w+, ([01]) \},`).FindAllStringSubmatch(
		pluginSource(t, "static const struct env_option env_options[] = {", "{ NULL"), -1) {
		vars = append(vars, "PODMAN_HPC_"+m[1])
		if m[2] == "0" {
			vars = append(vars, "PYXIS_"+m[1])
		}
	}
	if len(vars) < 20 {
		t.Fatalf("env_options[] holds %q", vars)
	}
	documented := manTerms(t, manPage, "ENVIRONMENT")
	for _, v := range vars {
		if !slices.Contains(documented, v) {
			t.Errorf("%s does not define %s (ENVIRONMENT: a line beginning \"**\" naming **%s**)", manPage, v, v)
		}
	}
	for _, v := range documented {
		if strings.Contains(v, "_CONTAINER_") && !slices.Contains(vars, v) {
			t.Errorf("%s defines %s, which the plugin does not read", manPage, v)
		}
	}
}

// podman-hpc(1) defines every plugstack.conf key the plugin knows
// (KNOWN_KEYS, as its "unknown key" error lists them), with its default.
func TestManPageDocumentsEveryPlugstackKey(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig("no-such-key=1")
	if err == nil {
		t.Fatal("an unknown key was accepted")
	}
	_, known, _ := strings.Cut(err.Error(), "(known keys: ")
	known, _, _ = strings.Cut(known, ")")
	keys := strings.Split(known, ", ")
	if len(keys) < 9 {
		t.Fatalf("known keys %q", keys)
	}
	b, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "\n# PLUGSTACK.CONF\n")
	section, _, _ = strings.Cut(section, "\n# ")
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^\*\*([a-z_]+)\*\*=\S`).FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("%s does not define the plugstack key %s (PLUGSTACK.CONF: \"**%s**=DEFAULT\")", manPage, k, k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("%s defines the plugstack key %s, which the plugin does not know", manPage, k)
		}
	}
}
