package server

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// StatusSource is the node's part of podman-hpcd status (*node.Node).
type StatusSource interface {
	Status(uid uint32) node.Status
}

// lastErrorsKept is how many failures status shows.
const lastErrorsKept = 20

// failure is one failure status shows.
type failure struct {
	when    time.Time
	kind    string // a metrics.Err* kind
	uid     uint32 // whose request it was (0: root's, or no one's)
	message string
}

// lastErrors are the daemon's latest failures, newest last.
type lastErrors struct {
	mu   sync.Mutex
	list []failure
}

func (l *lastErrors) add(f failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.list) == lastErrorsKept {
		l.list = append(l.list[:0], l.list[1:]...)
	}
	l.list = append(l.list, f)
}

// of returns uid's failures (root: all), newest last.
func (l *lastErrors) of(uid uint32) []failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []failure
	for _, f := range l.list {
		if uid == 0 || f.uid == uid {
			out = append(out, f)
		}
	}
	return out
}

// fail records a failure of uid's request: counted by kind in the
// metrics, and shown by status (to root, and to uid).
func (s *Server) fail(kind string, uid uint32, message string) {
	s.metrics.Error(kind)
	s.errors.add(failure{when: time.Now(), kind: kind, uid: uid, message: strings.Map(oneLine, message)})
}

// oneLine keeps a message on its table row.
func oneLine(r rune) rune {
	if r == '\t' || r == '\n' || r == '\r' {
		return ' '
	}
	return r
}

// cell keeps a user's string (an image file's path, a container's name) in
// its table column: a tab in it is written as \t, as the client writes
// the other control characters; the daemon's own tabs separate columns.
func cell(s string) string { return strings.ReplaceAll(s, "\t", `\t`) }

// status answers STATUS. Anyone may ask: the daemon's version, runtime and
// cache (its size and limits) are the node's, not a user's; images,
// containers, pulls and errors are the asker's own (root: all).
func (s *Server) status(p peer) *wire.Message {
	reply := s.hello()
	if s.noMgr != nil {
		reply.Add("unavailable", s.noMgr.Error())
	}
	if s.statusOf != nil {
		st := s.statusOf.Status(p.UID)
		reply.Add("runtime", st.Runtime)
		reply.Add("cache_dir", st.CacheDir)
		reply.Add("cache_bytes", strconv.FormatInt(st.CacheBytes, 10))
		reply.Add("cache_images", strconv.Itoa(st.CacheImages))
		reply.Add("cache_max_bytes", strconv.FormatInt(st.CacheMaxBytes, 10))
		reply.Add("max_image_size", strconv.FormatInt(st.MaxImageSize, 10))
		reply.Add("cache_max_age", st.CacheMaxAge.String())
		for _, pl := range st.Pulls {
			reply.Add("pull", fmt.Sprintf("%s\t%s\t%s\t%s", cell(pl.Ref), userNames([]uint32{pl.UID}), pl.Phase, time.Since(pl.Started).Round(time.Second)))
		}
	}
	if s.images != nil {
		t := imagesTable(s.images.Images(p.UID), p.isRoot())
		h, _ := t.Get("header")
		reply.Add("image_header", h)
		for _, row := range t.All("row") {
			reply.Add("image", row)
		}
	}
	for _, row := range s.containersTable(p).All("row") {
		reply.Add("container", row)
	}
	for _, f := range s.errors.of(p.UID) {
		reply.Add("error", fmt.Sprintf("%s\t%s\t%s\t%s", f.when.Format(time.RFC3339), f.kind, userNames([]uint32{f.uid}), f.message))
	}
	return reply
}

// hello is HELLO's answer: the daemon's version and protocol, for the
// plugin's check, and who and since when.
func (s *Server) hello() *wire.Message {
	return wire.New(wire.OK,
		"version", s.version,
		"protocol", strconv.Itoa(wire.Version),
		"node", s.node,
		"pid", strconv.Itoa(os.Getpid()),
		"uptime", time.Since(s.started).Round(time.Second).String())
}
