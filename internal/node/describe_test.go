package node

import (
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

func TestDescribeDownloadProgress(t *testing.T) {
	for _, tc := range []struct {
		p    store.Progress
		want string
	}{
		{store.Progress{Phase: "downloading"}, "app:1: downloading"},
		{store.Progress{Phase: "downloading", Done: 1 << 20, Total: 4 << 20}, "app:1: downloaded 1.0 of 4.0 MB"},
		{store.Progress{Phase: "downloading", Message: "waiting for a pull slot"}, "app:1: waiting for a pull slot"},
	} {
		if got := describe("app:1", tc.p); got != tc.want {
			t.Errorf("describe(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}
