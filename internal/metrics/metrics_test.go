package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMetricsText(t *testing.T) {
	m := New("v1.2")
	m.SetActive(func() int { return 3 })
	m.Pulled(1000, 2*time.Second, nil)
	m.Pulled(0, time.Second, errors.New("unauthorized"))
	m.CacheHit()
	m.CacheHit()
	m.CacheMiss()
	m.Evicted(2)
	m.ContainerStarted(300 * time.Millisecond)
	m.Error(ErrContainer)
	m.SetNodeReady(true, map[string]bool{"overlay": false})
	m.SetNodeReady(false, map[string]bool{"state_dir_acl": false, "runtime": true})

	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Serve(ctx, ln, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q, want the text format", ct)
	}
	body := string(b)
	for _, want := range []string{
		`podman_hpc_pulls_total{result="ok"} 1`,
		`podman_hpc_pulls_total{result="failed"} 1`,
		`podman_hpc_pull_bytes_total 1000`,
		`podman_hpc_pull_duration_seconds_count 1`,
		`podman_hpc_pull_duration_seconds_sum 2`,
		`podman_hpc_cache_hits_total 2`,
		`podman_hpc_cache_misses_total 1`,
		`podman_hpc_cache_evictions_total 2`,
		`podman_hpc_container_start_seconds_bucket{le="0.5"} 1`,
		`podman_hpc_container_start_seconds_bucket{le="0.25"} 0`,
		`podman_hpc_errors_total{kind="container"} 1`,
		`podman_hpc_errors_total{kind="pull"} 1`,
		`podman_hpc_errors_total{kind="save"} 0`,
		`podman_hpc_active_containers 3`,
		`podman_hpc_build_info{version="v1.2"} 1`,
		"# TYPE podman_hpc_container_start_seconds histogram",
		// The last readiness, alone.
		`podman_hpc_node_ready 0`,
		`podman_hpc_node_check_ok{check="runtime"} 1`,
		`podman_hpc_node_check_ok{check="state_dir_acl"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in the metrics", want)
		}
	}
	if strings.Contains(body, `check="overlay"`) {
		t.Error("a check of an earlier readiness is still shown")
	}
	// Only GET /metrics.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %v, %v", resp.Status, err)
	}
}

// A daemon without a listener has no metrics: every method is a no-op.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SetActive(func() int { return 1 })
	m.Pulled(1, time.Second, nil)
	m.CacheHit()
	m.CacheMiss()
	m.Evicted(1)
	m.ContainerStarted(time.Second)
	m.Error(ErrPull)
	m.SetNodeReady(true, map[string]bool{"runtime": true})
}

func TestListenBusy(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if err == nil || !strings.HasPrefix(err.Error(), "metrics_listen "+ln.Addr().String()+": ") || !strings.HasSuffix(err.Error(), "; pick a free port or remove the key") {
		t.Errorf("busy port: %v", err)
	}
}
