package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The tasks join the container's own namespaces first (their owner, the
// container's user namespace, is out of reach from the nested one), then
// the nested user namespace, then the nested UTS and mount namespaces;
// the container's user, UTS and mount namespaces are closed.
func TestNestedOrder(t *testing.T) {
	t.Parallel()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		names, nested, want []string
	}{
		{[]string{"user", "mnt"}, []string{"user", "mnt"}, []string{"user", "mnt"}},
		{[]string{"user", "ipc", "uts", "net", "mnt"}, []string{"user", "uts", "mnt"}, []string{"ipc", "net", "user", "uts", "mnt"}},
		{[]string{"user", "net", "mnt"}, []string{"user", "mnt"}, []string{"net", "user", "mnt"}},
	} {
		var files []*os.File
		for _, n := range tc.names {
			files = append(files, open("container-"+n))
		}
		nested := map[string]*os.File{}
		for _, n := range tc.nested {
			nested[n] = open("nested-" + n)
		}
		gotF, gotN := nestedOrder(files, tc.names, nested)
		if !slices.Equal(gotN, tc.want) {
			t.Errorf("%v: order %v, want %v", tc.names, gotN, tc.want)
			continue
		}
		for i, n := range gotN {
			from := "container-"
			if slices.Contains(tc.nested, n) {
				from = "nested-"
			}
			if filepath.Base(gotF[i].Name()) != from+n {
				t.Errorf("%v: %s is %s, want %s", tc.names, n, gotF[i].Name(), from+n)
			}
		}
		for i, n := range tc.names {
			if _, err := files[i].Stat(); slices.Contains(tc.nested, n) != (err != nil) {
				t.Errorf("%v: the container's %s closed: %v", tc.names, n, err != nil)
			}
		}
		closeAll(gotF)
	}
}
