package cgotest

import (
	"strings"
	"testing"
)

// The job's pin list: an entry per image, found by the exact reference
// (not a prefix of another), refused when it would not parse back.
func TestPins(t *testing.T) {
	t.Parallel()
	l, ok := PinsAdd("", "r/a:1", "r/a:1@sha256:aa", 4096)
	if !ok || l != "r/a:1=r/a:1@sha256:aa" {
		t.Fatalf("add to empty: %q %v", l, ok)
	}
	if l, ok = PinsAdd(l, "r/a:10", "r/a:10@sha256:bb", 4096); !ok {
		t.Fatal("second add failed")
	}
	for ref, want := range map[string]string{"r/a:1": "r/a:1@sha256:aa", "r/a:10": "r/a:10@sha256:bb"} {
		if got, ok := PinsLookup(l, ref); !ok || got != want {
			t.Errorf("lookup %q = %q %v, want %q", ref, got, ok, want)
		}
	}
	for _, ref := range []string{"r/a", "r/a:", "a:1", ""} {
		if got, ok := PinsLookup(l, ref); ok {
			t.Errorf("lookup %q found %q", ref, got)
		}
	}
	for _, c := range [][2]string{{"r a:1", "x"}, {"r=a:1", "x"}, {"r/a:1", "x y"}, {"", "x"}, {"r/a:1", ""}} {
		if got, ok := PinsAdd("", c[0], c[1], 4096); ok {
			t.Errorf("add %q=%q accepted: %q", c[0], c[1], got)
		}
	}
	if _, ok := PinsAdd(strings.Repeat("x", 100), "r/a:1", "r/a:1@sha256:aa", 64); ok {
		t.Error("an overlong list was accepted")
	}
}

// The resolve helper's paths: defaults, and absolute paths only.
func TestConfigResolveHelper(t *testing.T) {
	t.Parallel()
	bin, conf, err := ResolveHelper()
	if err != nil || bin != "/usr/bin/podman-hpcd" || conf != "/etc/podman-hpc/podman-hpcd.conf" {
		t.Fatalf("defaults %q %q %v", bin, conf, err)
	}
	bin, conf, err = ResolveHelper("podman_hpcd=/opt/bin/podman-hpcd", "daemon_config=/opt/etc/d.conf")
	if err != nil || bin != "/opt/bin/podman-hpcd" || conf != "/opt/etc/d.conf" {
		t.Errorf("got %q %q %v", bin, conf, err)
	}
	if _, _, err := ResolveHelper("podman_hpcd=podman-hpcd"); err == nil || !strings.Contains(err.Error(), "must be an absolute path") {
		t.Errorf("relative path: %v", err)
	}
}
