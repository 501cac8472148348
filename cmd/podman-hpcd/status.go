package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// statusCmd prints the daemon's status (STATUS): root sees the whole node,
// a user the node's facts and their own images, containers, pulls and
// errors. It fails (errCannotRun) when the node cannot run containers.
func statusCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("status", "status [--socket PATH]", `
Show the running daemon's version, runtime, cache and its limits, images,
containers, pulls in progress and last errors (yours; root sees all).`, stdout, stderr)
	socket := fl.socketFlag()
	if _, err := fl.parse(args, 0, 0); err != nil {
		return err
	}
	reply, err := callWithProgress(*socket, wire.New(wire.Status), io.Discard)
	if err != nil {
		return err
	}
	get := func(k string) string { v, _ := reply.Get(k); return v }
	fmt.Fprintf(stdout, "podman-hpcd %s on %s: up %s, pid %s, protocol %s\n",
		get("version"), get("node"), get("uptime"), get("pid"), get("protocol"))
	if u := get("unavailable"); u != "" {
		fmt.Fprintf(stdout, "UNAVAILABLE: %s\n", u)
	}
	if _, ok := reply.Get("cache_dir"); ok {
		fmt.Fprintf(stdout, "runtime: %s\n", or(get("runtime"), "none (containers unavailable)"))
		fmt.Fprintf(stdout, "cache: %s, %s images, %s; limits: total %s, per image %s, unused %s\n",
			get("cache_dir"), get("cache_images"), size(get("cache_bytes")),
			limit(get("cache_max_bytes")), limit(get("max_image_size")), age(get("cache_max_age")))
	}
	section(stdout, "images", get("image_header"), reply.All("image"))
	section(stdout, "containers", "CONTAINER\tNAME\tJOB\tSTEP\tUSER\tIMAGE\tUP", reply.All("container"))
	section(stdout, "pulls in progress", "REFERENCE\tUSER\tPHASE\tFOR", reply.All("pull"))
	section(stdout, "last errors", "TIME\tKIND\tUSER\tMESSAGE", reply.All("error"))
	if get("unavailable") != "" {
		// A health check (contrib/slurm/podman-hpc-healthcheck.sh) drains
		// the node on this.
		return errCannotRun
	}
	return nil
}

// errCannotRun is status's error on a node whose daemon cannot run
// containers: it exits 1, as when the daemon does not answer.
var errCannotRun = errors.New("this node cannot run containers (UNAVAILABLE above); podman-hpcd preflight lists what it lacks, each with its fix")

// section prints a titled table, or "title: none".
func section(w io.Writer, title, header string, rows []string) {
	if len(rows) == 0 {
		fmt.Fprintf(w, "%s: none\n", title)
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+header)
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+r)
	}
	tw.Flush()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// size writes a byte count as the config does (12G, 500M).
func size(s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n >= 1<<u.shift {
			return strconv.FormatFloat(float64(n)/float64(int64(1)<<u.shift), 'f', 1, 64) + u.unit
		}
	}
	return s + " bytes"
}

func limit(s string) string {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n <= 0 {
		return "none"
	}
	return size(s)
}

// age writes cache_max_age (time.Duration's "1h30m0s") as the config
// does: 30d, 12h, 1h30m, 30m, 90s is 1m30s; 0 is no limit.
func age(s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return s
	case d <= 0:
		return "no limit"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	// Only whole zero units go: "30m0s" is 30m, "2h0m0s" 2h; "10m0s" keeps its 10m.
	s = d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
