package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/node"
)

// preflightCmd checks, as root, every feature of the node that containers
// need, as the daemon uses it, on the config's directories (node.Preflight),
// one line a check, a fix under each failure. It fails when the node cannot
// run containers.
func preflightCmd(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configPath := fl.String("config", config.DefaultPath, "config file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("preflight: unexpected argument %q", fl.Arg(0))
	}
	if os.Geteuid() != 0 {
		return errors.New("preflight must run as root: it mounts and starts a container as the daemon does")
	}
	explicit := false
	fl.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, warnings, err := loadConfig(*configPath, explicit)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "podman-hpcd: warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := node.Preflight(ctx, cfg, log)
	failed := 0
	for _, c := range r.Checks {
		printCheck(stdout, c)
		if !c.Optional && c.Err != nil {
			failed++
		}
	}
	if !r.Ready() {
		return fmt.Errorf("%d of %d checks failed: this node cannot run containers", failed, len(r.Checks))
	}
	fmt.Fprintf(stdout, "%s: this node can run containers\n", *configPath)
	return nil
}

// printCheck writes one check: its result, what it tried and how long it
// took; a failure's error and fix under it.
func printCheck(w io.Writer, c node.Check) {
	switch {
	case c.Skipped != "":
		fmt.Fprintf(w, "skip  %s: %s\n", c.What, c.Skipped)
	case c.Err != nil:
		word := "FAIL"
		if c.Optional {
			word = "warn"
		}
		fmt.Fprintf(w, "%s  %s: %v\n      fix: %s\n", word, c.What, c.Err, c.Fix)
	default:
		detail := ""
		if c.Detail != "" {
			detail = ": " + c.Detail
		}
		fmt.Fprintf(w, "ok    %s%s (%.1f ms)\n", c.What, detail, float64(c.Took.Microseconds())/1000)
	}
}
