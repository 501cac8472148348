package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func statusCmd(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	socket := fl.String("socket", config.DefaultSocket, "the daemon's socket")
	if err := fl.Parse(args); err != nil {
		return err
	}
	reply, err := callWithProgress(*socket, wire.New(wire.Hello, "client", "cli"), io.Discard)
	if err != nil {
		return err
	}
	get := func(k string) string { v, _ := reply.Get(k); return v }
	fmt.Fprintf(stdout, "podman-hpcd %s on %s: up %s, pid %s, protocol %s\n",
		get("version"), get("node"), get("uptime"), get("pid"), get("protocol"))
	return nil
}
