package source

import (
	"strings"
	"testing"
)

func TestPathRefNamespaces(t *testing.T) {
	t.Parallel()
	got := newPathRef(squashfsTransport{}, "/a/b/c.sqsh", "").PolicyConfigurationNamespaces()
	if strings.Join(got, " ") != "/a/b/c.sqsh /a/b /a" {
		t.Errorf("namespaces %q", got)
	}
	if got := newPathRef(squashfsTransport{}, "/", "").PolicyConfigurationNamespaces(); len(got) != 0 {
		t.Errorf("namespaces of / %q", got)
	}
}
