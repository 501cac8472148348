package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The tasks join the container's namespaces first (their owner, the
// container's user namespace, is out of reach from the tasks' own), then
// their own user namespace, then their own UTS and mount namespaces; the
// container's user, UTS and mount namespaces are closed.
func TestTasksOrder(t *testing.T) {
	t.Parallel()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		names, own, want []string
	}{
		{[]string{"user", "mnt"}, []string{"user", "mnt"}, []string{"user", "mnt"}},
		{[]string{"user", "ipc", "uts", "net", "mnt"}, []string{"user", "uts", "mnt"}, []string{"ipc", "net", "user", "uts", "mnt"}},
		{[]string{"user", "net", "mnt"}, []string{"user", "mnt"}, []string{"net", "user", "mnt"}},
	} {
		var files []*os.File
		for _, n := range tc.names {
			files = append(files, open("container-"+n))
		}
		own := map[string]*os.File{}
		for _, n := range tc.own {
			own[n] = open("own-" + n)
		}
		gotF, gotN := tasksOrder(files, tc.names, own)
		if !slices.Equal(gotN, tc.want) {
			t.Errorf("%v: order %v, want %v", tc.names, gotN, tc.want)
			continue
		}
		for i, n := range gotN {
			from := "container-"
			if slices.Contains(tc.own, n) {
				from = "own-"
			}
			if filepath.Base(gotF[i].Name()) != from+n {
				t.Errorf("%v: %s is %s, want %s", tc.names, n, gotF[i].Name(), from+n)
			}
		}
		for i, n := range tc.names {
			if _, err := files[i].Stat(); slices.Contains(tc.own, n) != (err != nil) {
				t.Errorf("%v: the container's %s closed: %v", tc.names, n, err != nil)
			}
		}
		closeAll(gotF)
	}
}
