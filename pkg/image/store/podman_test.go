package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// hangingPodman is a podman that, as a hostile mount_program would, starts
// a background process and never ends; both carry marker in their argv.
func hangingPodman(t *testing.T, marker string) string {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skipf("%q not found in PATH", "bash")
	}
	dir := publicDir(t, 0o755)
	bin := filepath.Join(dir, "podman")
	script := fmt.Sprintf("#!/bin/bash\n(exec -a %s-child sleep 1000) &\nexec -a %s-main sleep 1000\n", marker, marker)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// markedProcesses lists the host's processes whose argv holds marker.
func markedProcesses(marker string) []string {
	out, _ := exec.Command("pgrep", "-af", marker).Output()
	var l []string
	for _, s := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if s != "" && !strings.Contains(s, "pgrep") {
			l = append(l, s)
		}
	}
	return l
}

// podman:// ends at HelperTimeout, with every process podman started:
// status sees it as "exporting" meanwhile, and the user is told the cause.
func TestPodmanExportDeadline(t *testing.T) {
	imagetest.RequireBinary(t, "pgrep")
	marker := fmt.Sprintf("phpc-test-hang-%d", time.Now().UnixNano())
	podman := hangingPodman(t, marker)
	c := openTestCache(t, nil, func(o *Options) { o.Podman, o.HelperTimeout = podman, 2*time.Second })
	home := publicDir(t, 0o755)

	var mu sync.Mutex
	var phases []string
	seen := make(chan struct{}, 1)
	go func() {
		for range 100 {
			if len(markedProcesses(marker)) == 2 {
				seen <- struct{}{}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := c.Get(context.Background(), "podman://localhost/app:1", PullOptions{UID: nobody, GID: nobody, Home: home,
		Progress: func(p Progress) { mu.Lock(); phases = append(phases, p.Phase); mu.Unlock() }})
	took := time.Since(start)
	if !errors.Is(err, image.ErrHelperTimeout) || !strings.Contains(err.Error(), "helper_timeout") {
		t.Fatalf("Get: %v; want image.ErrHelperTimeout naming helper_timeout", err)
	}
	assertOneLine(t, err, "podman://localhost/app:1", "stopped after its deadline")
	if took > 10*time.Second {
		t.Errorf("Get took %s with a 2s deadline", took)
	}
	select {
	case <-seen:
	default:
		t.Errorf("podman's two processes never ran")
	}
	if left := markedProcesses(marker); len(left) != 0 {
		t.Errorf("left running after the deadline: %q", left)
	}
	mu.Lock()
	defer mu.Unlock()
	if !contains(phases, "exporting") {
		t.Errorf("phases %q: no exporting", phases)
	}
}

// A caller that gives up stops the export at once, processes and all.
func TestPodmanExportCancelled(t *testing.T) {
	imagetest.RequireBinary(t, "pgrep")
	marker := fmt.Sprintf("phpc-test-cancel-%d", time.Now().UnixNano())
	podman := hangingPodman(t, marker)
	c := openTestCache(t, nil, func(o *Options) { o.Podman, o.HelperTimeout = podman, time.Hour })
	home := publicDir(t, 0o755)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		for range 100 {
			if len(markedProcesses(marker)) == 2 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel(errors.New("the step went away"))
	}()
	_, err := c.Get(ctx, "podman://localhost/app:1", PullOptions{UID: nobody, GID: nobody, Home: home})
	if err == nil || !strings.Contains(err.Error(), "the step went away") {
		t.Fatalf("Get: %v; want the caller's cause", err)
	}
	// The flight ends a moment after its last caller left.
	deadline := time.Now().Add(5 * time.Second)
	for len(markedProcesses(marker)) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := markedProcesses(marker); len(left) != 0 {
		t.Errorf("left running after the caller left: %q", left)
	}
}
