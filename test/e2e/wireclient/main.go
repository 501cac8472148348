// Command wireclient sends one request to a podman-hpcd socket the way a
// hostile client would, for the end-to-end suite's attacks: any message
// type and any fields, from whichever user runs it.
//
//	wireclient -socket PATH -type N [key=value ...]
//
// It prints the reply's type and fields, one per line ("type 65",
// "message=..."), skipping PROGRESS messages, and exits 0 once a final
// reply came.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func main() {
	socket := flag.String("socket", "", "the daemon's socket")
	typ := flag.Int("type", int(wire.Hello), "message type")
	timeout := flag.Duration("timeout", time.Minute, "give up after")
	flag.Parse()
	m := wire.New(wire.Type(*typ))
	for _, kv := range flag.Args() {
		k, v, _ := strings.Cut(kv, "=")
		m.Add(k, v)
	}
	c, err := net.DialTimeout("unix", *socket, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wireclient:", err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(*timeout))
	if err := wire.Write(c, m); err != nil {
		fmt.Fprintln(os.Stderr, "wireclient: send:", err)
		os.Exit(1)
	}
	for {
		r, err := wire.Read(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "wireclient: read:", err)
			os.Exit(1)
		}
		if r.Type == wire.Progress {
			continue
		}
		fmt.Printf("type %d\n", r.Type)
		for _, f := range r.Fields {
			fmt.Printf("%s=%s\n", f.Key, f.Value)
		}
		return
	}
}
