package node

import "testing"

// The entrypoint's output goes to the plugin as a C string: a NUL (a
// binary written to stdout) would make the whole answer unsendable.
func TestEntrypointLogWithoutNULs(t *testing.T) {
	if got := withoutNULs("sh\x00ort\n"); got != "short\n" {
		t.Errorf("got %q", got)
	}
}
