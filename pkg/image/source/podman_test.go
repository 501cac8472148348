package source

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestSubIDs(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("alice:100000:65536\n1001:200000:10\nbob:300000:5\nalice:1000:5\nalice:x:1\n"), 0o644)
	for _, tc := range []struct {
		id   uint32
		user string
		want string
	}{
		{1001, "alice", "[{0 1001 1} {1 100000 65536} {65537 200000 10}]"}, // 1000:5 holds 1001 itself: left out
		{1001, "", "[{0 1001 1} {1 200000 10}]"},
		{1002, "carol", "[{0 1002 1}]"},
	} {
		got, err := subIDs(f, tc.id, tc.user)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("subIDs(%d, %q) = %v, %v; want %s", tc.id, tc.user, got, err, tc.want)
		}
	}
	if got, err := subIDs(filepath.Join(t.TempDir(), "none"), 7, "x"); err != nil || fmt.Sprint(got) != "[{0 7 1}]" {
		t.Errorf("no file: %v, %v", got, err)
	}
}

func TestPodmanMessage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"time=\"x\" level=warning msg=\"/ is not a shared mount\"\nError: localhost/x: image not known\n": "localhost/x: image not known",
		"time=\"x\" level=error msg=\"stat /root/.config: permission denied\"\n":                          "stat /root/.config: permission denied",
		"plain failure\n": "plain failure",
		"":                "",
	} {
		if got := podmanMessage(in); got != want {
			t.Errorf("podmanMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
