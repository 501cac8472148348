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
// stop. At the stop, open connections are closed, which removes the
// containers they own: the tasks that joined keep running in their
// namespaces, and nothing is left mounted behind them.
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
	// the kernel closes the socket and the container goes.
	var owned []*container
	defer func() {
		for _, ct := range owned {
			start := time.Now()
			s.mgr.remove(context.WithoutCancel(ctx), ct)
			log.Info("container removed", "container", ct.id, "job", ct.req.Job, "step", ct.req.Step, "duration", time.Since(start))
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
		if m.Type == wire.Container && p.isRoot() {
			ct, err := s.container(ctx, c, m, log)
			if ct != nil {
				owned = append(owned, ct)
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

// container creates the step's container and sends the plugin what its tasks
// need to join it: the mount namespace (as a file descriptor: no pid to go
// stale), the working directory and the image's environment. Errors go to
// the plugin; the returned error is only a failure to write to it.
func (s *server) container(ctx context.Context, c *net.UnixConn, m *wire.Message, log *slog.Logger) (*container, error) {
	start := time.Now()
	req, err := parseContainerRequest(m)
	if err != nil {
		return nil, wire.Write(c, errorf("%v", err))
	}
	log = log.With("job", req.Job, "step", req.Step, "uid", req.UID, "image", req.Image)
	if s.mgr == nil {
		log.Warn("container refused", "reason", s.noMgr)
		return nil, wire.Write(c, errorf("podman-hpcd on %s cannot run containers: %v", s.node, s.noMgr))
	}
	progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
	ct, err := s.mgr.create(ctx, req, progress)
	if err != nil {
		log.Warn("container failed", "err", err, "duration", time.Since(start))
		if he := (*hookError)(nil); errors.As(err, &he) {
			return nil, wire.Write(c, errorf("%v", err))
		}
		return nil, wire.Write(c, errorf("--container-image=%s: %v", req.Image, err))
	}
	log.Info("container ready", "container", ct.id, "digest", ct.img.Digest, "duration", time.Since(start))
	reply := wire.New(wire.OK, "container", ct.id, "workdir", ct.workdir, "ns", "mnt")
	for _, e := range ct.env {
		reply.Add("env", e)
	}
	return ct, wire.WriteUnix(c, reply, ct.mntNS)
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
