package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func statusCmd(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	socket := fl.String("socket", DefaultSocket, "the daemon's socket")
	if err := fl.Parse(args); err != nil {
		return err
	}
	reply, err := call(*socket, wire.New(wire.Hello, "client", "cli"))
	if err != nil {
		return err
	}
	get := func(k string) string { v, _ := reply.Get(k); return v }
	fmt.Fprintf(stdout, "podman-hpcd %s on %s: up %s, pid %s, protocol %s\n",
		get("version"), get("node"), get("uptime"), get("pid"), get("protocol"))
	return nil
}

// call sends one request and returns the final reply; an Error reply is
// returned as an error carrying the daemon's message.
func call(socket string, req *wire.Message) (*wire.Message, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot reach podman-hpcd at %s: %w; is it running? (systemctl start podman-hpcd.socket)", socket, err)
	}
	defer c.Close()
	if err := wire.Write(c, req); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	for {
		reply, err := wire.Read(c)
		if err != nil {
			return nil, fmt.Errorf("read reply from %s: %w", socket, err)
		}
		switch reply.Type {
		case wire.Progress:
			continue
		case wire.Error:
			msg, _ := reply.Get("message")
			return nil, fmt.Errorf("%s", msg)
		default:
			return reply, nil
		}
	}
}
