// Package metrics is podman-hpcd's Prometheus metrics, through the official
// Go client, served in the text format on the admin's opt-in listener
// (config metrics_listen).
//
// It owns the metrics' names and labels. It promises: no label holds a
// user, a job or an image name (a listener on a node address leaks
// nothing of the node's users, and the series stay few); every method is
// safe on a nil *Metrics (a daemon without a listener counts nothing) and
// for concurrent use.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Error kinds, the values of podman_hpc_errors_total's kind label.
const (
	ErrContainer = "container" // a step's container could not be had
	ErrPull      = "pull"      // a pull failed (a step's or a user's)
	ErrSave      = "save"      // --container-save failed
	ErrRequest   = "request"   // a malformed, late or refused request
	ErrAccept    = "accept"    // the socket's accept failed (out of files)
)

// Metrics are the daemon's counters, histograms and gauges.
type Metrics struct {
	reg          *prometheus.Registry
	pulls        *prometheus.CounterVec
	pullBytes    prometheus.Counter
	pullSeconds  prometheus.Histogram
	hits, misses prometheus.Counter
	evictions    prometheus.Counter
	startSeconds prometheus.Histogram
	errs         *prometheus.CounterVec
	active       atomic.Pointer[func() int]
	ready        prometheus.Gauge
	checks       *prometheus.GaugeVec
}

// New returns the daemon's metrics, podman_hpc_build_info carrying version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.pulls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podman_hpc_pulls_total",
		Help: "Image pulls into the node's cache (downloads, and copies of users' files), by result (ok, failed)."}, []string{"result"})
	m.pulls.WithLabelValues("ok")
	m.pulls.WithLabelValues("failed")
	f(m.pulls)
	m.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "podman_hpc_pull_bytes_total",
		Help: "Bytes the pulls downloaded (layers)."})
	f(m.pullBytes)
	m.pullSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podman_hpc_pull_duration_seconds",
		Help: "How long pulls took, squashing included.", Buckets: []float64{1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}})
	f(m.pullSeconds)
	m.hits = prometheus.NewCounter(prometheus.CounterOpts{Name: "podman_hpc_cache_hits_total",
		Help: "Images asked for (by a step or a user) that the cache had."})
	f(m.hits)
	m.misses = prometheus.NewCounter(prometheus.CounterOpts{Name: "podman_hpc_cache_misses_total",
		Help: "Images asked for that had to be pulled."})
	f(m.misses)
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{Name: "podman_hpc_cache_evictions_total",
		Help: "Images the cache removed: by its size and age limits, and by prune."})
	f(m.evictions)
	m.startSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podman_hpc_container_start_seconds",
		Help:    "From a step's request to its container ready, pull included.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}})
	f(m.startSeconds)
	m.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podman_hpc_errors_total",
		Help: "Failures, by kind: container, pull, save, request, accept."}, []string{"kind"})
	for _, k := range []string{ErrContainer, ErrPull, ErrSave, ErrRequest, ErrAccept} {
		m.errs.WithLabelValues(k)
	}
	f(m.errs)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podman_hpc_active_containers",
		Help: "Containers on the node now (parked global ones included)."}, func() float64 {
		if fn := m.active.Load(); fn != nil {
			return float64((*fn)())
		}
		return 0
	}))
	m.ready = prometheus.NewGauge(prometheus.GaugeOpts{Name: "podman_hpc_node_ready",
		Help: "1 when the node can run containers (every required check of podman-hpcd preflight passed at the daemon's start), 0 when it cannot: podman_hpc_node_check_ok says which check failed, podman-hpcd status why."})
	f(m.ready)
	m.checks = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "podman_hpc_node_check_ok",
		Help: "Each check of the node's features at the daemon's start (podman-hpcd preflight): 1 passed, 0 failed or not tried."}, []string{"check"})
	f(m.checks)
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "podman_hpc_build_info",
		Help: "1, labelled with the daemon's version.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	f(info)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetActive makes fn the source of podman_hpc_active_containers.
func (m *Metrics) SetActive(fn func() int) {
	if m != nil {
		m.active.Store(&fn)
	}
}

// SetNodeReady records whether the node can run containers, and each
// check's result (by check id: podman_hpc_node_check_ok's label).
func (m *Metrics) SetNodeReady(ready bool, checks map[string]bool) {
	if m == nil {
		return
	}
	m.ready.Set(b2f(ready))
	m.checks.Reset()
	for id, ok := range checks {
		m.checks.WithLabelValues(id).Set(b2f(ok))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Pulled counts one pull, its downloaded bytes and its duration.
func (m *Metrics) Pulled(bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.pulls.WithLabelValues("failed").Inc()
		m.errs.WithLabelValues(ErrPull).Inc()
		return
	}
	m.pulls.WithLabelValues("ok").Inc()
	m.pullBytes.Add(float64(bytes))
	m.pullSeconds.Observe(d.Seconds())
}

// CacheHit counts an image the cache had; CacheMiss one it pulled.
func (m *Metrics) CacheHit() {
	if m != nil {
		m.hits.Inc()
	}
}

// CacheMiss counts an image that had to be pulled.
func (m *Metrics) CacheMiss() {
	if m != nil {
		m.misses.Inc()
	}
}

// Evicted counts n images the cache removed.
func (m *Metrics) Evicted(n int) {
	if m != nil && n > 0 {
		m.evictions.Add(float64(n))
	}
}

// ContainerStarted observes a step's container start latency.
func (m *Metrics) ContainerStarted(d time.Duration) {
	if m != nil {
		m.startSeconds.Observe(d.Seconds())
	}
}

// Error counts a failure of kind (one of the Err constants).
func (m *Metrics) Error(kind string) {
	if m != nil {
		m.errs.WithLabelValues(kind).Inc()
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Listen opens the metrics listener on addr (config metrics_listen).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w; pick a free port or remove the key", addr, err)
	}
	return ln, nil
}

// Serve answers GET /metrics on ln until ctx is done.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
	}
}
