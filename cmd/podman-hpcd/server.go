package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// server answers plugin and client requests on one listener.
type server struct {
	log     *slog.Logger
	started time.Time
	node    string
	mgr     *manager     // nil when this node cannot run containers
	store   *squashStore // nil when it has no image cache
	noMgr   error        // why mgr is nil
}

func newServer(log *slog.Logger, mgr *manager, store *squashStore, noMgr error) *server {
	node, _ := os.Hostname()
	return &server{log: log, started: time.Now(), node: node, mgr: mgr, store: store, noMgr: noMgr}
}

// serve accepts connections until ctx is done; it returns nil on a clean
// stop. At the stop, open connections are closed and their containers are
// left as they are: the tasks that joined keep running in them, and the
// next daemon removes them (cleanStale), each once its tasks are gone.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil && errClosed(err) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleConn(ctx, c.(*net.UnixConn))
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

func (s *server) handleConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		s.log.Warn("reject connection", "err", err)
		return
	}
	log := s.log.With("peer_pid", p.PID, "peer_uid", p.UID)
	// A step's container lives as long as the connection of the
	// slurmstepd that asked for it: when the step ends, or slurmstepd dies,
	// the kernel closes the socket and the container goes (after
	// --container-save, if asked). Named containers stay for the job.
	var uses []stepUse
	defer func() {
		if ctx.Err() != nil {
			// The daemon is stopping (an upgrade, a restart): the steps
			// go on in their containers, which the next daemon removes
			// once their tasks are gone (cleanStale).
			return
		}
		for _, u := range uses {
			s.endStep(context.WithoutCancel(ctx), u, log)
		}
	}()
	for ctx.Err() == nil {
		m, err := wire.Read(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Warn("bad request", "err", err)
			}
			return
		}
		if m.Type == wire.End && p.isRoot() {
			// The step is over: end it now, so that a save is done
			// before slurmstepd (which waits for this answer) exits.
			reply := wire.New(wire.OK)
			for _, u := range uses {
				if err := s.endStep(context.WithoutCancel(ctx), u, log); err != nil {
					reply = errorf("%v", err)
				}
			}
			uses = nil
			if err := wire.Write(c, reply); err != nil {
				return
			}
			continue
		}
		if m.Type == wire.Container && p.isRoot() {
			u, err := s.container(ctx, c, m, log)
			if u.ct != nil {
				uses = append(uses, u)
			}
			if err != nil {
				log.Warn("write reply", "err", err)
				return
			}
			continue
		}
		switch m.Type {
		case wire.Pull, wire.Images, wire.Rmi, wire.Prune, wire.Ps, wire.Rm:
			err = s.userRequest(ctx, c, p, m, log)
		default:
			err = wire.Write(c, s.handle(p, m, log))
		}
		if err != nil {
			log.Warn("write reply", "err", err)
			return
		}
	}
}

// stepUse is a step's use of a container.
type stepUse struct {
	ct    *container
	req   *containerRequest
	owned bool // the step's own container: removed when the step ends
}

// container gets the step its container (its own, or a named one) and sends
// the plugin what its tasks need to join it: the namespaces (as file
// descriptors: no pid to go stale), the working directory and the
// environment. Errors go to the plugin; the returned error is only a
// failure to write to it.
func (s *server) container(ctx context.Context, c *net.UnixConn, m *wire.Message, log *slog.Logger) (stepUse, error) {
	start := time.Now()
	req, err := parseContainerRequest(m)
	if err != nil {
		return stepUse{}, wire.Write(c, errorf("%v", err))
	}
	log = log.With("job", req.Job, "step", req.Step, "uid", req.UID, "image", req.Image)
	if req.Name != "" {
		log = log.With("name", req.Name+":"+req.NameMode)
	}
	if s.mgr == nil {
		log.Warn("container refused", "reason", s.noMgr)
		return stepUse{}, wire.Write(c, errorf("podman-hpcd on %s cannot run containers: %v", s.node, s.noMgr))
	}
	progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
	ct, owned, err := s.mgr.forStep(ctx, req, progress)
	if err != nil {
		log.Warn("container failed", "err", err, "duration", time.Since(start))
		msg := err.Error()
		// A hook's or module's error says what it is about itself.
		if he := (*hookError)(nil); !errors.As(err, &he) && !strings.HasPrefix(msg, "--container-") {
			msg = "--container-image=" + req.Image + ": " + msg
		}
		return stepUse{}, wire.Write(c, errorf("%s", msg))
	}
	log.Info("container ready", "container", ct.id, "digest", ct.img.Digest, "attached", !owned, "duration", time.Since(start))
	reply := wire.New(wire.OK, "container", ct.id, "workdir", firstNonEmpty(req.Workdir, ct.workdir))
	for _, n := range ct.nsNames {
		reply.Add("ns", n)
	}
	for _, e := range ct.env {
		reply.Add("env", e)
	}
	if req.EntrypointLog && ct.entrypointLog != "" {
		reply.Add("entrypoint_log", ct.entrypointLog)
	}
	return stepUse{ct: ct, req: req, owned: owned}, wire.WriteUnix(c, reply, ct.nsFiles...)
}

// endStep saves the container if the step asked, and removes the step's
// own. The error is the save's.
func (s *server) endStep(ctx context.Context, u stepUse, log *slog.Logger) (err error) {
	if u.req.Save != "" {
		start := time.Now()
		if err = s.mgr.save(ctx, u.ct, u.req); err != nil {
			log.Warn("save failed", "container", u.ct.id, "path", u.req.Save, "err", err)
		} else {
			log.Info("container saved", "container", u.ct.id, "path", u.req.Save, "duration", time.Since(start))
		}
	}
	if u.owned {
		start := time.Now()
		s.mgr.removeInBackground(ctx, u.ct)
		log.Info("container removed", "container", u.ct.id, "job", u.req.Job, "step", u.req.Step, "duration", time.Since(start))
	}
	return err
}

// handle answers one request. Every refusal names the cause and the fix.
func (s *server) handle(p peer, m *wire.Message, log *slog.Logger) *wire.Message {
	switch m.Type {
	case wire.Hello:
		client, _ := m.Get("client")
		log.Debug("hello", "client", client)
		return wire.New(wire.OK,
			"version", version,
			"protocol", strconv.Itoa(wire.Version),
			"node", s.node,
			"pid", strconv.Itoa(os.Getpid()),
			"uptime", time.Since(s.started).Round(time.Second).String())
	case wire.Container:
		// Root's requests are served by container(); this is everyone else.
		log.Warn("refused container request", "reason", "caller is not root")
		return errorf("only slurmstepd may request a container; use srun --container-image")
	default:
		log.Warn("unknown request", "type", m.Type)
		return errorf("unknown request type %d; are the plugin and podman-hpcd the same version?", m.Type)
	}
}

func errorf(format string, a ...any) *wire.Message {
	return wire.New(wire.Error, "message", fmt.Sprintf(format, a...))
}
