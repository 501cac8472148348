package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/pkg/squash"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// userRequest serves the client commands (pull, images, rmi, prune, ps) for
// whoever is on the socket: a user acts on their own images and sees their
// own containers; root on all. The error returned is only a failure to
// write to the client.
func (s *Server) userRequest(ctx context.Context, c *net.UnixConn, p peer, m *wire.Message, log *slog.Logger) error {
	if s.images == nil && m.Type != wire.Rm && m.Type != wire.Ps {
		return wire.Write(c, errorf("podman-hpcd on %s has no image cache: %v", s.node, s.noMgr))
	}
	start := time.Now()
	ref, _ := m.Get("ref")
	var reply *wire.Message
	switch m.Type {
	case wire.Pull:
		auth, _ := m.Get("auth")
		var authJSON []byte
		if auth != "" {
			authJSON = []byte(auth)
		}
		if prefetch, _ := m.Get("prefetch"); prefetch == "1" {
			reply = s.prefetch(ctx, p, m, ref, log)
			break
		}
		if resolve, _ := m.Get("resolve"); resolve == "1" {
			// The tag's digest for a job, without pulling (the plugin's
			// helper, in srun or sbatch).
			job, _ := m.Get("job")
			pinned, err := s.images.PinForJob(ctx, job, ref, node.PullRequest{UID: p.UID, GID: p.GID, Auth: authJSON})
			if err != nil {
				log.Warn("resolve failed", "ref", ref, "job", job, "err", err, "duration", time.Since(start))
				return wire.Write(c, errorf("%v", err))
			}
			reply = wire.New(wire.OK, "pinned", pinned)
			break
		}
		progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
		img, err := s.images.Pull(ctx, ref, node.PullRequest{UID: p.UID, GID: p.GID, Auth: authJSON, Progress: progress})
		if err != nil {
			log.Warn("pull failed", "ref", ref, "err", err, "duration", time.Since(start))
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("pulled", "ref", ref, "digest", img.Digest, "size", img.Size, "duration", time.Since(start))
		reply = wire.New(wire.OK, "digest", img.Digest)
	case wire.Images:
		reply = imagesTable(s.images.Images(p.UID), p.isRoot())
	case wire.Rmi:
		if err := s.images.RemoveImage(ref, p.UID); err != nil {
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("image removed", "ref", ref)
		reply = wire.New(wire.OK)
	case wire.Prune:
		all, _ := m.Get("all")
		gone, err := s.images.Prune(ctx, all == "1", p.UID)
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
		if s.containers != nil {
			n, parked = s.containers.EndJob(ctx, job)
		}
		log.Info("containers removed by request", "job", job, "containers", n, "parked", parked)
		reply = wire.New(wire.OK, "removed", strconv.Itoa(n))
	}
	return wire.Write(c, reply)
}

// prefetchTimeout bounds a prefetch nobody waits for.
const prefetchTimeout = time.Hour

// prefetch is the job prolog's (root's) request: the job user's image
// starts coming onto the node now, in the background, anonymously (the
// prolog reads no user's files); the job's first step shares the pull, or
// pulls with the user's credentials what anonymous access could not get.
func (s *Server) prefetch(ctx context.Context, p peer, m *wire.Message, ref string, log *slog.Logger) *wire.Message {
	if !p.isRoot() {
		return errorf("only the job prolog (root) may prefetch for a job; use podman-hpcd pull")
	}
	uidS, _ := m.Get("uid")
	gidS, _ := m.Get("gid")
	job, _ := m.Get("job")
	uid, uerr := strconv.ParseUint(uidS, 10, 32)
	gid, gerr := strconv.ParseUint(gidS, 10, 32)
	if uerr != nil || gerr != nil || ref == "" {
		return errorf("prefetch: needs ref, uid and gid")
	}
	log = log.With("job", job, "uid", uid, "ref", ref)
	go func() {
		start := time.Now()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prefetchTimeout)
		defer cancel()
		img, err := s.images.Pull(pctx, ref, node.PullRequest{UID: uint32(uid), GID: uint32(gid)})
		if err != nil {
			log.Warn("prefetch failed", "err", err, "duration", time.Since(start))
			return
		}
		log.Info("prefetched", "digest", img.Digest, "duration", time.Since(start))
	}()
	return wire.New(wire.OK)
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

func (s *Server) containersTable(p peer) *wire.Message {
	reply := wire.New(wire.OK, "header", "CONTAINER\tNAME\tJOB\tSTEP\tUSER\tIMAGE\tUP")
	if s.containers == nil {
		return reply
	}
	for _, ct := range s.containers.Containers() {
		if !p.isRoot() && ct.UID != p.UID {
			continue
		}
		name := "-"
		if ct.Name != "" {
			name = ct.Name
		}
		if ct.Parked {
			name += " (parked: no process, filesystem kept)"
		}
		reply.Add("row", fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", ct.ID, name, ct.Job, ct.Step,
			userNames([]uint32{ct.UID}), ct.Image, time.Since(ct.Created).Round(time.Second)))
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

// removeGlobal removes the caller's container_scope=global named container
// name (root: the "uid" field's). A container a step uses now stays.
func (s *Server) removeGlobal(ctx context.Context, p peer, name string, m *wire.Message, log *slog.Logger) *wire.Message {
	uid := p.UID
	if u, ok := m.Get("uid"); ok && p.isRoot() {
		n, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return errorf("rm --uid %q: not a uid", u)
		}
		uid = uint32(n)
	}
	if !wire.ValidName.MatchString(name) {
		return errorf("rm --name %q: not a container name", name)
	}
	if s.containers == nil {
		return wire.New(wire.OK, "removed", "0")
	}
	removed, err := s.containers.RemoveGlobal(ctx, uid, name)
	if err != nil {
		return errorf("rm --name %s: %v", name, err)
	}
	log.Info("global container removed by request", "name", name, "uid", uid, "removed", removed)
	return wire.New(wire.OK, "removed", strconv.Itoa(removed))
}
