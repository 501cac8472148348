package oci

import (
	"reflect"
	"testing"
)

func TestPropagationOptions(t *testing.T) {
	t.Parallel()
	got := PropagationOptions([]string{"ro", "rbind", "unbindable", "nosuid", "rshared", "rprivate", "slave"})
	if want := []string{"unbindable", "rshared", "rprivate", "slave"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := PropagationOptions([]string{"ro", "nodev"}); got != nil {
		t.Errorf("no propagation type: %q", got)
	}
	// Nothing to set needs no namespace.
	if err := SetPropagation(nil, nil); err != nil {
		t.Error(err)
	}
}
