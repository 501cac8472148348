//go:build e2e

package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricValue reads one sample of the Prometheus text format (-1: absent).
func metricValue(text, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// With metrics_listen, each node's daemon serves Prometheus metrics on the
// node's loopback: a pull and its bytes, a hit, the start latency, a failed
// pull counted as an error, the containers running.
func TestMetrics(t *testing.T) {
	withDaemonConfig(t, "metrics_listen = 127.0.0.1:9464\ncache_max_age = 0")
	node := nodes()[0]
	scrape := func() string {
		t.Helper()
		r := run(t, cluster["NODE_EXEC"], node, "curl", "-sf", "http://127.0.0.1:9464/metrics")
		mustSucceed(t, r)
		return r.stdout
	}
	before := scrape()
	// A fresh image for this node: a miss and a pull; then a hit.
	podmanHpcd(t, node, "rmi", cluster["SMALL_IMAGE"])
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true"))
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true"))
	// A digest: a missing tag fails srun before the node (digest_test.go).
	if r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["REGISTRY"]+"/podman-hpc/no-such-image@sha256:"+strings.Repeat("0", 64), "true"); r.code == 0 {
		t.Fatalf("a step of a missing image succeeded: %s", r)
	}
	_, done := stepInBackground(t, node, "metrics-step", "--container-image="+cluster["SMALL_IMAGE"], "sleep", "3")
	// Running once the step's container is ready, not when Slurm says so.
	after := scrape()
	// The step's own start counted too: another container (a kept one,
	// one being removed) may be what active counts first.
	started := func() bool {
		return metricValue(after, "podman_hpc_container_start_seconds_count")-metricValue(before, "podman_hpc_container_start_seconds_count") >= 3
	}
	for i := 0; i < 50 && (metricValue(after, "podman_hpc_active_containers") < 1 || !started()); i++ {
		time.Sleep(100 * time.Millisecond)
		after = scrape()
	}
	mustSucceed(t, <-done)

	delta := func(series string) float64 { return metricValue(after, series) - metricValue(before, series) }
	for series, atLeast := range map[string]float64{
		`podman_hpc_pulls_total{result="ok"}`:       1,
		`podman_hpc_pulls_total{result="failed"}`:   1,
		`podman_hpc_pull_bytes_total`:               1000,
		`podman_hpc_pull_duration_seconds_count`:    1,
		`podman_hpc_cache_misses_total`:             1,
		`podman_hpc_cache_hits_total`:               2,
		`podman_hpc_container_start_seconds_count`:  3,
		`podman_hpc_errors_total{kind="container"}`: 1,
		`podman_hpc_errors_total{kind="pull"}`:      1,
	} {
		if d := delta(series); d < atLeast {
			t.Errorf("%s grew by %v, want at least %v", series, d, atLeast)
		}
	}
	if v := metricValue(after, "podman_hpc_active_containers"); v < 1 {
		t.Errorf("podman_hpc_active_containers = %v while a step runs", v)
	}
	if !strings.Contains(after, "# TYPE podman_hpc_container_start_seconds histogram") {
		t.Error("the start latency is not a histogram")
	}
	// No user or image in any label.
	if strings.Contains(after, cluster["TEST_USER"]) || strings.Contains(after, "podman-hpc/small") {
		t.Error("the metrics name a user or an image")
	}
	// Only on the node's loopback: not on the node's address.
	addr := regexpFind(run(t, cluster["NODE_EXEC"], node, "ip", "-4", "-o", "addr", "show", "scope", "global").stdout, `inet [0-9.]+`)
	if addr == "" {
		t.Fatal("the node has no address")
	}
	if r := run(t, cluster["NODE_EXEC"], node, "curl", "-sf", "http://"+strings.TrimPrefix(addr, "inet ")+":9464/metrics"); r.code == 0 {
		t.Errorf("metrics answered on the node's address %s", addr)
	}
}
