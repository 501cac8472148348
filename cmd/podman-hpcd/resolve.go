package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// resolveCmd prints REF pinned to the digest its tag names now
// (NAME:TAG@sha256:...), or nothing for a reference that names no registry
// image. The plugin runs it as the user in srun, sbatch and salloc, once
// per job and image, and hands the answer to every node of the job.
//
// Where a podman-hpcd listens (a batch script's first node), it answers,
// and keeps the answer for the job (--job): every srun of the job on that
// node gets the same digest. Elsewhere (a login node without a daemon) the
// tag is resolved here, as the user, with the daemon's registries.conf.
func resolveCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("resolve", "resolve [--socket PATH] [--config FILE] [--job ID] REF", `
Print REF pinned to the digest its tag names now (NAME:TAG@sha256:...), or
nothing for a reference that names no registry image: the plugin's helper,
run as the user in srun and sbatch (one digest per job).`, stdout, stderr)
	socket := fl.socketFlag()
	cfgPath := fl.String("config", config.DefaultPath, "the daemon's config (for registries_conf), where no daemon runs")
	job := fl.String("job", "", "the job the digest is for")
	pos, err := fl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ref := pos[0]
	auth := readAuthFile()
	req := wire.New(wire.Pull, "ref", ref, "resolve", "1", "job", *job)
	if auth != nil {
		req.Add("auth", string(auth))
	}
	reply, err := callWithProgress(*socket, req, stderr)
	if err == nil {
		p, _ := reply.Get("pinned")
		if p != "" {
			fmt.Fprintln(stdout, p)
		}
		return nil
	}
	if !noDaemon(err) {
		return err
	}
	cfg, cerr := config.Load(*cfgPath, false)
	if cerr != nil {
		cfg = config.Default()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := source.Pin(ctx, ref, source.PinOptions{RegistriesConf: cfg.RegistriesConf, AuthJSON: auth})
	if err != nil {
		return err
	}
	if p != "" {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// noDaemon: nothing listens on the socket (not an error of the daemon's).
func noDaemon(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" &&
		(errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR))
}
