package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func serveCmd(args []string, stderr io.Writer) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configPath := fl.String("config", DefaultConfigPath, "config file")
	socket := fl.String("socket", "", "listen on this Unix socket when systemd passes none (overrides the config's socket)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	explicit := false
	fl.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := loadConfig(*configPath, explicit)
	if err != nil {
		return err
	}
	if *socket != "" {
		cfg.Socket = *socket
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	ln, cleanup, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer cleanup()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	mgr, store, noMgr := setupContainers(ctx, cfg, log)
	if store != nil {
		defer store.cache.Close()
		store.procs = newProcs()
	}
	srv := newServer(log, mgr, store, noMgr)
	if store != nil && cfg.CacheMaxAge > 0 {
		// Age only evicts when something looks: look now and then.
		go store.pruneEvery(ctx, min(cfg.CacheMaxAge/4, time.Hour), log)
	}
	log.Info("serving", "socket", ln.Addr().String(), "version", version, "pid", os.Getpid(), "gomaxprocs", runtime.GOMAXPROCS(0))
	// Ready only once the listener accepts; a notify failure (no systemd) is not fatal.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	err = srv.serve(ctx, ln)
	log.Info("stopped", "err", err)
	return err
}

// setupContainers prepares what containers need. A node that cannot run them
// (no working runtime, say) still serves: status works, and container
// requests get the reason.
func setupContainers(ctx context.Context, cfg Config, log *slog.Logger) (*manager, *squashStore, error) {
	store, err := openImageStore(ctx, cfg, log)
	if err != nil {
		log.Error("image cache", "err", err)
		return nil, nil, err
	}
	// Traversable (see create: a remapped root reaches the root file
	// system as the user), never listable.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, store, fmt.Errorf("state directory: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return nil, store, fmt.Errorf("state directory: %w", err)
	}
	unmounted := unmountStale(cfg.StateDir, log)
	rt, err := pickRuntime(ctx, cfg)
	if err != nil {
		log.Error("no OCI runtime", "err", err)
		return nil, store, err
	}
	mgr := newManager(log, rt, store, cfg)
	mgr.cleanStale(ctx, unmounted)
	log.Info("containers ready", "runtime", rt.Command, "runtime_args", strings.Join(rt.Args, " "), "runtime_own_mount_namespace", rt.NS != nil, "state_dir", cfg.StateDir, "cache_dir", cfg.CacheDir)
	return mgr, store, nil
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

// errClosed reports whether err is the listener being closed at shutdown.
func errClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
