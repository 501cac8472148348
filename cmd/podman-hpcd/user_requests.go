package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/squash"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// userRequest serves the client commands (pull, images, rmi, prune, ps) for
// whoever is on the socket: a user acts on their own images and sees their
// own containers; root on all. The error returned is only a failure to
// write to the client.
func (s *server) userRequest(ctx context.Context, c *net.UnixConn, p peer, m *wire.Message, log *slog.Logger) error {
	if s.store == nil && m.Type != wire.Rm && m.Type != wire.Ps {
		return wire.Write(c, errorf("podman-hpcd on %s has no image cache: %v", s.node, s.noMgr))
	}
	start := time.Now()
	ref, _ := m.Get("ref")
	var reply *wire.Message
	switch m.Type {
	case wire.Pull:
		_, cred, err := lookupAccount(p.UID, p.GID)
		if err != nil {
			return wire.Write(c, errorf("%v", err))
		}
		auth, _ := m.Get("auth")
		var authJSON []byte
		if auth != "" {
			authJSON = []byte(auth)
		}
		progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
		// An explicit pull asks the registry what the tag is now.
		o := pullOptions(ref, cred, authJSON, progress)
		o.Refresh = true
		img, err := s.store.pull(ctx, ref, o)
		if err != nil {
			log.Warn("pull failed", "ref", ref, "err", err, "duration", time.Since(start))
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("pulled", "ref", ref, "digest", img.Digest, "size", img.Size, "duration", time.Since(start))
		reply = wire.New(wire.OK, "digest", img.Digest)
	case wire.Images:
		reply = imagesTable(s.store.cache.List(p.UID), p.isRoot())
	case wire.Rmi:
		s.dropIdleMounts(log)
		if err := s.store.cache.Remove(ref, p.UID); err != nil {
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("image removed", "ref", ref)
		reply = wire.New(wire.OK)
	case wire.Prune:
		all, _ := m.Get("all")
		s.dropIdleMounts(log)
		gone, err := s.store.cache.Prune(ctx, all == "1", p.UID)
		if err != nil {
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("pruned", "images", len(gone))
		reply = imagesTable(gone, p.isRoot())
	case wire.Ps:
		reply = s.containersTable(p)
	case wire.Rm:
		if name, ok := m.Get("name"); ok {
			reply = s.removeGlobal(ctx, p, name, m, log)
			break
		}
		job, _ := m.Get("job")
		if !p.isRoot() {
			return wire.Write(c, errorf("only root may remove containers; they go when their step ends"))
		}
		n, parked := 0, 0
		if s.mgr != nil {
			n, parked = s.mgr.endJob(ctx, job)
		}
		log.Info("containers removed by request", "job", job, "containers", n, "parked", parked)
		reply = wire.New(wire.OK, "removed", strconv.Itoa(n))
	}
	return wire.Write(c, reply)
}

func imagesTable(imgs []squash.Image, root bool) *wire.Message {
	h := "REFERENCE\tDIGEST\tSIZE\tLAST USED"
	if root {
		h += "\tUSERS"
	}
	reply := wire.New(wire.OK, "header", h)
	for _, img := range imgs {
		refs := strings.Join(img.Refs, ",")
		if refs == "" {
			refs = "<none>"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s", refs, shortDigest(img.Digest), humanSize(img.Size), ago(img.LastUsed))
		if root {
			row += "\t" + userNames(img.Users)
		}
		reply.Add("row", row)
	}
	return reply
}

func (s *server) containersTable(p peer) *wire.Message {
	reply := wire.New(wire.OK, "header", "CONTAINER\tNAME\tJOB\tSTEP\tUSER\tIMAGE\tUP")
	if s.mgr == nil {
		return reply
	}
	for _, ct := range s.mgr.list() {
		if !p.isRoot() && ct.req.UID != p.UID {
			continue
		}
		name := "-"
		if ct.named {
			name = ct.req.Name
		}
		if ct.parked {
			name += " (parked: no process, filesystem kept)"
		}
		reply.Add("row", fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", ct.id, name, ct.req.Job, ct.req.Step,
			userNames([]uint32{ct.req.UID}), ct.req.Image, time.Since(ct.created).Round(time.Second)))
	}
	return reply
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d kB", n>>10)
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func userNames(uids []uint32) string {
	var names []string
	for _, id := range uids {
		s := strconv.FormatUint(uint64(id), 10)
		if u, err := user.LookupId(s); err == nil {
			s = u.Username
		}
		names = append(names, s)
	}
	return strings.Join(names, ",")
}

// dropIdleMounts unmounts the images that linger without containers
// (imageMounts), which keeps them pinned: removing an image asks for the
// space more than for a warm start.
func (s *server) dropIdleMounts(log *slog.Logger) {
	if s.mgr == nil {
		return
	}
	if n := s.mgr.mounted.dropAll(); n > 0 {
		log.Info("lingering image mounts dropped", "images", n)
	}
}

// removeGlobal removes the caller's container_scope=global named container
// name (root: the "uid" field's). A container a step uses now stays.
func (s *server) removeGlobal(ctx context.Context, p peer, name string, m *wire.Message, log *slog.Logger) *wire.Message {
	uid := p.UID
	if u, ok := m.Get("uid"); ok && p.isRoot() {
		n, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return errorf("rm --uid %q: not a uid", u)
		}
		uid = uint32(n)
	}
	if !validName.MatchString(name) {
		return errorf("rm --name %q: not a container name", name)
	}
	if s.mgr == nil {
		return wire.New(wire.OK, "removed", "0")
	}
	removed, err := s.mgr.removeGlobal(ctx, uid, name)
	if err != nil {
		return errorf("rm --name %s: %v", name, err)
	}
	log.Info("global container removed by request", "name", name, "uid", uid, "removed", removed)
	return wire.New(wire.OK, "removed", strconv.Itoa(removed))
}
