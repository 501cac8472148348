package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// imageCmd runs the client commands that manage the node's cache and list
// its containers. They run as the user, so the user's own auth.json is read
// here and sent; the daemon identifies the user by the socket.
func imageCmd(cmd string, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	socket := fl.String("socket", config.DefaultSocket, "the daemon's socket")
	all := fl.Bool("all", false, "prune: remove every image no container uses")
	job := fl.String("job", "", "rm: the job whose containers go (root; the job epilog's safety net)")
	name := fl.String("name", "", "rm: your container_scope=global named container NAME goes")
	uid := fl.String("uid", "", "rm --name: root: whose container")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var req *wire.Message
	switch cmd {
	case "pull", "rmi":
		if fl.NArg() != 1 {
			return fmt.Errorf("usage: podman-hpcd %s [--socket PATH] REF", cmd)
		}
		ref := fl.Arg(0)
		if strings.HasPrefix(ref, ".") {
			if abs, err := filepath.Abs(ref); err == nil {
				ref = abs
			}
		}
		t := wire.Pull
		if cmd == "rmi" {
			t = wire.Rmi
		}
		req = wire.New(t, "ref", ref)
		if cmd == "pull" {
			if auth := readAuthFile(); auth != nil {
				req.Add("auth", string(auth))
			}
			// Where podman:// finds the caller's storage; podman runs as them.
			if home, err := os.UserHomeDir(); err == nil {
				req.Add("home", home)
			}
		}
	case "images":
		req = wire.New(wire.Images)
	case "prune":
		req = wire.New(wire.Prune, "all", map[bool]string{true: "1", false: "0"}[*all])
	case "ps":
		req = wire.New(wire.Ps)
	case "rm":
		switch {
		case *job != "" && *name == "":
			req = wire.New(wire.Rm, "job", *job)
		case *name != "" && *job == "":
			req = wire.New(wire.Rm, "name", *name)
			if *uid != "" {
				req.Add("uid", *uid)
			}
		default:
			return fmt.Errorf("usage: podman-hpcd rm [--socket PATH] --job JOBID | --name NAME [--uid UID]")
		}
	}
	reply, err := callWithProgress(*socket, req, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "pull":
		d, _ := reply.Get("digest")
		fmt.Fprintln(stdout, d)
	case "images", "prune", "ps":
		printTable(stdout, reply)
	}
	return nil
}

// printTable prints the reply's "header" and "row" fields (tab-separated).
func printTable(w io.Writer, reply *wire.Message) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if h, ok := reply.Get("header"); ok {
		fmt.Fprintln(tw, h)
	}
	for _, r := range reply.All("row") {
		fmt.Fprintln(tw, r)
	}
	tw.Flush()
}

// readAuthFile finds the user's registry credentials where the plugin
// looks (wire.AuthFiles: REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, ~/.config,
// ~/.docker), first found first.
func readAuthFile() []byte {
	for _, a := range wire.AuthFiles {
		dir := os.Getenv(a.Var)
		if dir == "" {
			continue
		}
		if b, err := os.ReadFile(dir + a.Suffix); err == nil && len(b) > 0 {
			return b
		}
	}
	return nil
}

// callWithProgress sends one request and returns the final reply, showing
// progress lines on w; an Error reply is returned as an error carrying the
// daemon's message.
func callWithProgress(socket string, req *wire.Message, w io.Writer) (*wire.Message, error) {
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
		msg, _ := reply.Get("message")
		switch reply.Type {
		case wire.Progress:
			fmt.Fprintln(w, msg)
		case wire.Error:
			return nil, errors.New(msg)
		default:
			return reply, nil
		}
	}
}
