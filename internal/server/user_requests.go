package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// userRequest serves the client commands (pull, images, rmi, prune, ps,
// import, export) for whoever is on the socket: a user acts on their own
// images and sees their own containers; root on all. The error returned is
// only a failure to write to the client.
func (s *Server) userRequest(ctx context.Context, c *net.UnixConn, p peer, m *wire.Message, log *slog.Logger) error {
	if s.images == nil && m.Type != wire.Rm && m.Type != wire.Ps && m.Type != wire.Export {
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
		img, err := s.images.Pull(ctx, ref, pullRequest(c, p, m))
		if err != nil {
			log.Warn("pull failed", "ref", ref, "err", err, "duration", time.Since(start))
			// The node's metrics counted the failed pull.
			s.errors.add(failure{when: time.Now(), kind: metrics.ErrPull, uid: p.UID, message: strings.Map(oneLine, err.Error())})
			return wire.Write(c, errorf("%v", err))
		}
		log.Info("pulled", "ref", ref, "digest", img.Digest, "size", img.Size, "duration", time.Since(start))
		reply = wire.New(wire.OK, "digest", img.Digest)
	case wire.Import, wire.Export:
		reply = s.toFile(ctx, c, p, m, log)
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

// pullRequest is the peer's pull as m asks it: their registry
// credentials and home (for podman://), with progress lines to c.
func pullRequest(c *net.UnixConn, p peer, m *wire.Message) node.PullRequest {
	auth, _ := m.Get("auth")
	var authJSON []byte
	if auth != "" {
		authJSON = []byte(auth)
	}
	home, _ := m.Get("home")
	progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
	return node.PullRequest{UID: p.UID, GID: p.GID, Auth: authJSON, Progress: progress, Home: home}
}

// toFile serves import ("ref") and export ("name", "job"): a squashfs file
// at "out" (absolute: the client resolves it in its working directory),
// created as the peer; "force" = 1 replaces an existing one.
func (s *Server) toFile(ctx context.Context, c *net.UnixConn, p peer, m *wire.Message, log *slog.Logger) *wire.Message {
	start := time.Now()
	verb := map[wire.Type]string{wire.Import: "import", wire.Export: "export"}[m.Type]
	out, _ := m.Get("out")
	force, _ := m.Get("force")
	if !filepath.IsAbs(out) {
		return errorf("%s: -o %q: not an absolute path", verb, out)
	}
	r := node.FileRequest{UID: p.UID, GID: p.GID, Out: filepath.Clean(out), Force: force == "1"}
	if m.Type == wire.Import {
		ref, _ := m.Get("ref")
		img, err := s.images.Import(ctx, ref, pullRequest(c, p, m), r)
		if err != nil {
			log.Warn("import failed", "ref", ref, "out", r.Out, "err", err, "duration", time.Since(start))
			return errorf("import: %v", err)
		}
		log.Info("imported", "ref", ref, "digest", img.Digest, "out", r.Out, "duration", time.Since(start))
		return wire.New(wire.OK, "digest", img.Digest, "out", r.Out)
	}
	name, _ := m.Get("name")
	job, _ := m.Get("job")
	if !wire.ValidName.MatchString(name) {
		return errorf("export %q: not a container name", name)
	}
	if s.containers == nil {
		return errorf("export %s: podman-hpcd on %s runs no containers: %v", name, s.node, s.noMgr)
	}
	id, err := s.containers.Export(ctx, name, job, r)
	if err != nil {
		log.Warn("export failed", "name", name, "out", r.Out, "err", err, "duration", time.Since(start))
		return errorf("export %s: %v", name, err)
	}
	log.Info("exported", "name", name, "container", id, "out", r.Out, "duration", time.Since(start))
	return wire.New(wire.OK, "out", r.Out)
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

func imagesTable(imgs []store.Image, root bool) *wire.Message {
	h := "REFERENCE\tDIGEST\tSIZE\tLAST USED"
	if root {
		h += "\tUSERS"
	}
	reply := wire.New(wire.OK, "header", h)
	for _, img := range imgs {
		refs := cell(strings.Join(img.Refs, ","))
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
			name = cell(ct.Name)
		}
		if ct.Parked {
			name += " (parked: no process, filesystem kept)"
		}
		reply.Add("row", fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", ct.ID, name, ct.Job, ct.Step,
			userNames([]uint32{ct.UID}), cell(ct.Image), time.Since(ct.Created).Round(time.Second)))
	}
	return reply
}

func shortDigest(d string) string {
	// LastIndex: a squashfs file's key is squashfs:sha256:HEX.
	if i := strings.LastIndexByte(d, ':'); i >= 0 && len(d) > i+13 {
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
