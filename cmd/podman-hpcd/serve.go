package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/logging"
	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/internal/server"
	"github.com/podman-hpc/podman-hpc/pkg/timerslack"
)

func serveCmd(args []string, stdout, stderr io.Writer) error {
	// Coarse sleeps for the daemon's threads, Go's 20 µs monitor among
	// them. First, before any thread that starts children exists: those
	// put the node's slack back on themselves, and this would undo it.
	timerslack.Coarsen(timerslack.Daemon)
	fl := newFlags("serve", "serve [--config FILE] [--socket PATH]", `
Run the daemon: as root, under systemd with socket activation
(podman-hpcd.socket), or listening on --socket PATH.`, stdout, stderr)
	configPath := fl.String("config", config.DefaultPath, "config file")
	socket := fl.String("socket", "", "listen on this Unix socket when systemd passes none (overrides the config's socket)")
	if _, err := fl.parse(args, 0, 0); err != nil {
		return err
	}
	explicit := false
	fl.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	// A config the daemon cannot work with (an unknown key, a runtime not
	// installed, a full cache disk) stops it here, every problem named.
	cfg, warnings, err := loadConfig(*configPath, explicit)
	if err != nil {
		return err
	}
	if *socket != "" {
		cfg.Socket = *socket
	}
	log := logging.New(stderr, logging.Options{Level: cfg.LogLevel, JSON: cfg.LogFormat == "json", Journal: onJournal(stderr)})
	logging.CaptureLogrus(log)
	for _, w := range warnings {
		log.Warn("config: " + w)
	}

	ln, cleanup, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer cleanup()
	// What the daemon was started with beyond stdio (systemd's sockets,
	// now ours, or a launcher's stray descriptors) reaches none of its
	// children: the runtime, mksquashfs, a user's helper.
	closeOnExecAbove(2)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.PprofSocket != "" {
		// Off by default: an admin profiling the node turns it on.
		pln, err := listenPprof(cfg.PprofSocket)
		if err != nil {
			return err
		}
		go servePprof(ctx, pln, log)
		log.Info("pprof", "socket", cfg.PprofSocket)
	}
	var m *metrics.Metrics
	if cfg.MetricsListen != "" {
		mln, err := metrics.Listen(cfg.MetricsListen)
		if err != nil {
			return err
		}
		m = metrics.New(version)
		go m.Serve(ctx, mln, log)
		log.Info("metrics", "listen", mln.Addr().String())
	}
	// A node that cannot run containers (a runtime that fails its probe,
	// say) still serves: status works, and container requests get the
	// reason.
	o := server.Options{Log: log, Version: version, Metrics: m}
	n, err := node.Open(ctx, node.Options{Config: cfg, Log: log, WidenAfter: newProcs().widenAfter, Metrics: m})
	o.Unavailable = err
	m.SetNodeReady(err == nil, checkResults(n))
	if n != nil {
		defer n.Close()
		o.Images, o.Status = n, n
		m.SetActive(func() int { return len(n.Containers()) })
		if err == nil {
			o.Containers = n
			// Jobs that ended while no daemon ran: their containers,
			// adopted above, go now.
			n.EndRecordedJobs(ctx, node.EndedJobsDir(ln.Addr().String()))
		}
		if cfg.CacheMaxAge > 0 {
			// Age only evicts when something looks: look now and then.
			go n.PruneEvery(ctx, min(cfg.CacheMaxAge/4, time.Hour))
		}
	}
	srv := server.New(o)
	log.Info("serving", "socket", ln.Addr().String(), "version", version, "pid", os.Getpid(), "gomaxprocs", runtime.GOMAXPROCS(0))
	// Ready only once the listener accepts, and only on a node that can
	// run containers; a notify failure (no systemd) is not fatal.
	if _, err := daemon.SdNotify(false, notifyState(o.Unavailable)); err != nil {
		log.Warn("sd_notify failed", "err", err)
	}
	err = srv.Serve(ctx, ln)
	log.Info("stopped", "err", err)
	return err
}

// notifyState is what the daemon tells systemd once it serves. READY only
// when the node can run containers: one that cannot (unavailable says
// why) serves status and gives the plugin the reason, but its unit stays
// "activating" with the reason as its status line, until systemd's start
// timeout fails it and Restart= starts it again, checking the node anew.
// A unit that is active is then a node that can run containers.
func notifyState(unavailable error) string {
	if unavailable == nil {
		return daemon.SdNotifyReady + "\nSTATUS=ready: containers can run"
	}
	why := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, unavailable.Error())
	const max = 1000 // systemctl status shows one line
	if len(why) > max {
		why = why[:max] + "..."
	}
	return "STATUS=not ready: " + why
}

// checkResults are the node's checks (node.Preflight) by id, for the
// metrics; a node whose image cache did not open has that alone.
func checkResults(n *node.Node) map[string]bool {
	if n == nil {
		return map[string]bool{"image_cache": false}
	}
	out := map[string]bool{"image_cache": true}
	if r := n.Preflight(); r != nil {
		for _, c := range r.Checks {
			out[c.ID] = c.OK()
		}
	}
	return out
}

// listen takes the socket systemd passed (socket activation), or creates
// path. The cleanup removes a socket file we created.
func listen(path string) (net.Listener, func(), error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	for _, ln := range lns {
		if ln != nil {
			return ln, func() { ln.Close() }, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create socket directory: %w", err)
	}
	// A socket left by a killed daemon would make Listen fail; refuse to
	// remove anything that is not a socket.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("listen on %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, nil, fmt.Errorf("listen on %s: another podman-hpcd is already serving there", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	// Anyone may connect: each request is authorised by the caller's
	// credentials (SO_PEERCRED), not by the socket's mode.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, func() { ln.Close() }, nil
}

// closeOnExecAbove marks every open descriptor above fd close-on-exec.
func closeOnExecAbove(fd int) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > fd {
			unix.CloseOnExec(n)
		}
	}
}
