package node

import (
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/podman-hpc/podman-hpc/pkg/hooks"
)

// The containers' init is this test binary (initBinary): run as the
// daemon's "init" (cmd/podman-hpcd), it waits for a signal. So does the
// hooks' timer (hooks_run.go).
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if len(os.Args) == 2 && os.Args[0] == initPath && os.Args[1] == "init" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		<-sig
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == hooks.TimedCommand {
		os.Exit(hooks.RunTimed(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
