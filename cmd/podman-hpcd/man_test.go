package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// commands are the commands "podman-hpcd help" lists.
func commands(t *testing.T) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	if rc := run([]string{"help"}, &out, &errOut); rc != 0 {
		t.Fatalf("help: exit %d: %s", rc, errOut.String())
	}
	_, list, ok := strings.Cut(out.String(), "\nCommands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	var cmds []string
	for _, l := range strings.Split(list, "\n") {
		if name, ok := strings.CutPrefix(l, "  "); ok && name != "" && name[0] != ' ' {
			cmds = append(cmds, strings.Fields(name)[0])
		}
	}
	if !ok || len(cmds) < 10 {
		t.Fatalf("help lists no commands (%q):\n%s", cmds, out.String())
	}
	return cmds
}

// commandFlags are the options "podman-hpcd help CMD" lists.
func commandFlags(t *testing.T, cmd string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	run([]string{"help", cmd}, &out, &errOut)
	var flags []string
	for _, l := range strings.Split(out.String()+errOut.String(), "\n") {
		if f, ok := strings.CutPrefix(l, "  -"); ok {
			flags = append(flags, strings.Fields(f)[0])
		}
	}
	return flags
}

var manSection = regexp.MustCompile(`(?m)^## (\S+)\n`)

// podman-hpcd(8) has a section for every command podman-hpcd help lists,
// naming each of its options, and none for a command that does not exist.
func TestManPageDocumentsEveryCommand(t *testing.T) {
	t.Parallel()
	const page = "../../docs/man/podman-hpcd.8.md"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(b), "\n# COMMANDS\n")
	body, _, _ = strings.Cut(body, "\n# ")
	sections := map[string]string{}
	idx := manSection.FindAllStringSubmatchIndex(body, -1)
	for i, m := range idx {
		end := len(body)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		sections[body[m[2]:m[3]]] = body[m[1]:end]
	}
	cmds := commands(t)
	for _, c := range cmds {
		text, ok := sections[c]
		if !ok {
			t.Errorf("%s has no section \"## %s\" under COMMANDS", page, c)
			continue
		}
		for _, f := range commandFlags(t, c) {
			want := "**--" + f + "**"
			if len(f) == 1 {
				want = "**-" + f + "**"
			}
			if !strings.Contains(text, want) {
				t.Errorf("%s: the section of %s does not name its option %s", page, c, want)
			}
		}
	}
	for c := range sections {
		if !slices.Contains(cmds, c) {
			t.Errorf("%s documents %q, which podman-hpcd help does not list", page, c)
		}
	}
}
