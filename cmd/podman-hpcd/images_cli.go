package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// The client commands that manage the node's cache and list its
// containers, each with its own options: synopsis and help.
var imageCommands = map[string]struct{ synopsis, about string }{
	"pull": {"pull [--socket PATH] REF", `
Pull REF into this node's cache, asking the registry now (a tag is looked up
again, even within tag_ttl), and print its digest. REF is any
--container-image reference; your registry credentials (auth.json) are sent
with it.`},
	"images": {"images [--socket PATH]", `
List this node's cached images (yours; root sees all).`},
	"rmi": {"rmi [--socket PATH] REF", `
Remove REF from this node's cache.`},
	"prune": {"prune [--socket PATH] [--all]", `
Evict images by the cache's size and age limits (cache_max_size,
cache_max_age; --all: every image no container uses) and list those removed.
Images kept mounted after their last container (image_linger) count as
unused: root's prune unmounts them all, yours only those of images no one
else uses.`},
	"ps": {"ps [--socket PATH]", `
List this node's containers, parked ones too (yours; root sees all).`},
	"rm": {"rm [--socket PATH] --job JOBID | --name NAME [--uid UID]", `
Remove a job's containers on this node (root: the job epilog's safety net),
or your container_scope=global named container NAME.`},
}

// imageCmd runs the client commands that manage the node's cache and list
// its containers. They run as the user, so the user's own auth.json is
// read here and sent; the daemon identifies the user by the socket.
func imageCmd(cmd string, args []string, stdout, stderr io.Writer) error {
	fl := newFlags(cmd, imageCommands[cmd].synopsis, imageCommands[cmd].about, stdout, stderr)
	socket := fl.socketFlag()
	var all *bool
	var job, name, uid *string
	switch cmd {
	case "prune":
		all = fl.Bool("all", false, "remove every image no container uses, not only those beyond the limits")
	case "rm":
		job = fl.String("job", "", "the job whose containers go (root)")
		name = fl.String("name", "", "your container_scope=global named container NAME goes")
		uid = fl.String("uid", "", "with --name, root: whose container")
	}
	n := 0 // arguments: REF for pull and rmi, none for the others
	if cmd == "pull" || cmd == "rmi" {
		n = 1
	}
	pos, err := fl.parse(args, n, n)
	if err != nil {
		return err
	}
	var req *wire.Message
	switch cmd {
	case "pull", "rmi":
		ref := pos[0]
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
		case *job != "" && *name != "":
			return fl.usageError("--job or --name, not both")
		case *job == "" && *name == "":
			return fl.usageError("--job JOBID or --name NAME needed")
		case *uid != "" && *name == "":
			return fl.usageError("--uid goes with --name")
		case *job != "":
			req = wire.New(wire.Rm, "job", *job)
		default:
			req = wire.New(wire.Rm, "name", *name)
			if *uid != "" {
				req.Add("uid", *uid)
			}
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
// daemon's message. Every value it returns or shows has its control
// characters escaped (escapeReply).
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
		escapeReply(reply)
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
