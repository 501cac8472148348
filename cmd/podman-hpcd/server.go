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
}

func newServer(log *slog.Logger) *server {
	node, _ := os.Hostname()
	return &server{log: log, started: time.Now(), node: node}
}

// serve accepts connections until ctx is done; it returns nil on a clean stop.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil && errClosed(err) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleConn(ctx, c.(*net.UnixConn))
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
	for ctx.Err() == nil {
		m, err := wire.Read(c)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warn("bad request", "err", err)
			}
			return
		}
		reply := s.handle(p, m, log)
		if err := wire.Write(c, reply); err != nil {
			log.Warn("write reply", "err", err)
			return
		}
	}
}

// handle answers one request. Every refusal names the cause and the fix.
func (s *server) handle(p peer, m *wire.Message, log *slog.Logger) *wire.Message {
	start := time.Now()
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
		job, _ := m.Get("job")
		step, _ := m.Get("step")
		image, _ := m.Get("image")
		log = log.With("job", job, "step", step, "image", image)
		if !p.isRoot() {
			log.Warn("refused container request", "reason", "caller is not root")
			return errorf("only slurmstepd may request a container; use srun --container-image")
		}
		log.Info("container request", "result", "not implemented", "duration", time.Since(start))
		return errorf("--container-image=%s: podman-hpcd %s cannot create containers yet (this build only answers status requests); run the step without --container-image", image, version)
	default:
		log.Warn("unknown request", "type", m.Type)
		return errorf("unknown request type %d; are the plugin and podman-hpcd the same version?", m.Type)
	}
}

func errorf(format string, a ...any) *wire.Message {
	return wire.New(wire.Error, "message", fmt.Sprintf(format, a...))
}
