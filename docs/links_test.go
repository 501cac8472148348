// Package docs holds the guides and the man pages' sources; its test checks
// that the relative links of README.md and docs/ lead somewhere.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

var (
	link       = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)
	codeSpan   = regexp.MustCompile("`[^`]*`")
	headingRe  = regexp.MustCompile(`^#{1,6} +(.+?) *#*$`)
	fenceStart = "```"
)

// lines are a markdown file's lines, those of fenced code blocks blank.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fenced := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), fenceStart) {
			fenced = !fenced
		}
		if fenced || strings.HasPrefix(strings.TrimSpace(l), fenceStart) {
			l = "" // kept as a blank line: the line numbers stay the file's
		}
		out = append(out, l)
	}
	return out
}

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces as hyphens.
func slug(heading string) string {
	heading = strings.ReplaceAll(heading, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors are the headings' anchors of a markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	a := map[string]bool{}
	for _, l := range lines(t, path) {
		if m := headingRe.FindStringSubmatch(l); m != nil {
			a[slug(m[1])] = true
		}
	}
	return a
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]string{
		"Is this node able to run containers? (preflight and health checks)":       "is-this-node-able-to-run-containers-preflight-and-health-checks",
		"The node's cache, from a shell":                                           "the-nodes-cache-from-a-shell",
		"slurm.conf":                                                               "slurmconf",
		"Moving a site from pyxis, one partition at a time":                        "moving-a-site-from-pyxis-one-partition-at-a-time",
		"Scale (make bench's `scale` entry, test/bench/scale.sh; build/scale.png)": "scale-make-benchs-scale-entry-testbenchscalesh-buildscalepng",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}

// Every relative link in README.md and docs/ (the guides, the man pages'
// sources) names a file or directory that exists and, after a '#', a heading
// of that file.
func TestRelativeLinks(t *testing.T) {
	t.Parallel()
	files := []string{"../README.md"}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found only %q", files)
	}
	checked := 0
	for _, f := range files {
		for n, l := range lines(t, f) {
			for _, m := range link.FindAllStringSubmatch(codeSpan.ReplaceAllString(l, ""), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				path, frag, _ := strings.Cut(target, "#")
				dest := f
				if path != "" {
					dest = filepath.Join(filepath.Dir(f), path)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link %q: %v", f, n+1, target, err)
						continue
					}
				}
				if frag != "" && strings.HasSuffix(dest, ".md") && !anchors(t, dest)[frag] {
					t.Errorf("%s:%d: link %q: %s has no heading #%s", f, n+1, target, dest, frag)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked only %d links", checked)
	}
}
