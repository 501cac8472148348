// Package server is podman-hpcd's socket server: it reads requests off the
// daemon's Unix socket, decides who may ask what, and answers through the
// node's containers and images (internal/node, behind the Containers and
// Images interfaces).
//
// It owns authorisation and the limits on clients. It promises: who asks is
// the kernel's word (SO_PEERCRED), never the request's; only root
// (slurmstepd) gets a container or ends a step or a job; a user sees and
// removes only their own images and containers; a step's container lives as
// long as the connection that asked for it; every refusal reaches the
// client in one line that names the cause and the fix; and no client can
// make the server hold more than connLimits allow, or stop it (a panic
// closes one connection, an accept error is retried).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/internal/node"
	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// Containers is what the server asks of the node's containers
// (*node.Node implements it; node's doc comments give each contract).
type Containers interface {
	Step(ctx context.Context, req *wire.ContainerRequest, stepd stepcgroup.Proc, progress func(string)) (*node.Step, error)
	Save(ctx context.Context, s *node.Step) error
	End(ctx context.Context, s *node.Step)
	// Notes are the lines for the user about the step's container as
	// its tasks end (its writable root full).
	Notes(s *node.Step) []string
	Containers() []node.Container
	EndJob(ctx context.Context, job string) (removed, parked int)
	RemoveGlobal(ctx context.Context, uid uint32, name string) (int, error)
	Export(ctx context.Context, name, job string, r node.FileRequest) (string, error)
}

// Images is what the server asks of the node's image cache (*node.Node).
type Images interface {
	Pull(ctx context.Context, ref string, r node.PullRequest) (*store.Image, error)
	PinForJob(ctx context.Context, job, ref string, r node.PullRequest) (string, error)
	Images(uid uint32) []store.Image
	RemoveImage(ref string, uid uint32) error
	Prune(ctx context.Context, all bool, uid uint32) ([]store.Image, error)
	Import(ctx context.Context, ref string, pr node.PullRequest, r node.FileRequest) (*store.Image, error)
}

// Options are what New needs.
type Options struct {
	Log     *slog.Logger
	Version string // the daemon's, for HELLO and the plugin's version check
	// Containers and Images serve the requests; either may be nil (a node
	// whose runtime or image cache failed at start), and Unavailable then
	// says why, to whoever asks.
	Containers  Containers
	Images      Images
	Unavailable error
	// Status is the node's part of status (nil: none); Metrics count the
	// requests' outcomes (nil: none).
	Status  StatusSource
	Metrics *metrics.Metrics
}

// Server answers plugin and client requests on one listener.
type Server struct {
	log        *slog.Logger
	version    string
	started    time.Time
	node       string
	containers Containers // nil when this node cannot run containers
	images     Images     // nil when it has no image cache
	noMgr      error      // why either is nil
	statusOf   StatusSource
	metrics    *metrics.Metrics
	errors     lastErrors
	saves      saves // the steps whose container is saved at their end

	limits connLimits
	conns  uidConns
	// Tests replace these: who the peer is (peerOf), and what serves a
	// connection once it is let in (handleConn).
	peerCred    func(*net.UnixConn) (peer, error)
	connHandler func(ctx context.Context, c *net.UnixConn, p peer)
}

// connLimits bound what a client can make the daemon hold (issue 12):
// anyone may connect to the socket.
type connLimits struct {
	// perUID caps a uid's open connections; root's are not capped
	// (slurmstepd holds one per step on the node).
	perUID int
	// request: a peer that is not root sends each request within this
	// of connecting or of its last answer. Root's connections have no such
	// limit: slurmstepd's step connection idles from the plugin's connect
	// (post_opt) to its CONTAINER request (user_init), then for the whole
	// step until its END or close.
	request time.Duration
	// body: once a frame's header has come, its body comes within this,
	// from anyone.
	body time.Duration
}

var defaultLimits = connLimits{perUID: 16, request: 10 * time.Second, body: 10 * time.Second}

// Accept failures (EMFILE, ENFILE...) are retried after a pause that
// doubles from acceptBackoffMin to acceptBackoffMax, as net/http does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// replyWithin bounds the write of a refusal: a peer that does not read
// cannot hold the goroutine that refuses it.
const replyWithin = time.Second

// New returns a server of o.
func New(o Options) *Server {
	host, _ := os.Hostname()
	s := &Server{log: o.Log, version: o.Version, started: time.Now(), node: host,
		containers: o.Containers, images: o.Images, noMgr: o.Unavailable,
		statusOf: o.Status, metrics: o.Metrics,
		limits: defaultLimits, peerCred: peerOf}
	s.connHandler = s.handleConn
	return s
}

// Serve accepts connections until ctx is done; it returns nil on a clean
// stop, and an error only if the listener is closed under it. A failed
// accept (out of file descriptors, say) is logged and retried: the socket
// stays open, so the daemon must keep serving it. At the stop, open
// connections are closed and their containers are left as they are: the
// tasks that joined keep running in them, and the next daemon removes them
// (cleanStale), each once its tasks are gone.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// The connection waits in the listen backlog: take it once
			// file descriptors are free again.
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			s.log.Warn("accept failed; retrying", "err", err, "retry_in", backoff)
			s.fail(metrics.ErrAccept, 0, "accept: "+err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
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
			s.serveConn(ctx, uc)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// serveConn serves one connection if its uid is under the cap. A panic
// while serving it closes that connection alone (logged with its stack),
// not the daemon.
func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving a connection; closed it", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	p, err := s.peerCred(c)
	if err != nil {
		s.log.Warn("reject connection", "err", err)
		return
	}
	if p.pidfd != nil {
		defer p.pidfd.Close()
	}
	if !p.isRoot() {
		if !s.conns.acquire(p.UID, s.limits.perUID) {
			if n := s.conns.refused(); n > 0 {
				s.log.Warn("connections refused", "peer_uid", p.UID, "reason", "too many connections", "limit", s.limits.perUID, "refused", n)
			}
			c.SetWriteDeadline(time.Now().Add(replyWithin))
			wire.Write(c, errorf("podman-hpcd: too many connections from uid %d (at most %d at once); close some and retry", p.UID, s.limits.perUID))
			return
		}
		defer s.conns.release(p.UID)
	}
	s.connHandler(ctx, c, p)
}

// uidConns counts the open connections of each uid.
type uidConns struct {
	mu       sync.Mutex
	n        map[uint32]int
	nRefused int       // refusals not logged yet
	logged   time.Time // when refusals were last logged
}

// refusedLogEvery rate-limits the log of refused connections: a user who
// opens thousands must not fill the journal.
const refusedLogEvery = 10 * time.Second

// acquire counts a connection of uid if it has fewer than limit open.
func (u *uidConns) acquire(uid uint32, limit int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid] >= limit {
		return false
	}
	if u.n == nil {
		u.n = map[uint32]int{}
	}
	u.n[uid]++
	return true
}

func (u *uidConns) release(uid uint32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid]--; u.n[uid] <= 0 {
		delete(u.n, uid)
	}
}

// refused counts a refusal; it returns how many to log now (0: not yet).
func (u *uidConns) refused() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nRefused++
	if time.Since(u.logged) < refusedLogEvery {
		return 0
	}
	n := u.nRefused
	u.nRefused, u.logged = 0, time.Now()
	return n
}

func (s *Server) handleConn(ctx context.Context, c *net.UnixConn, p peer) {
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
	idle := s.limits.request
	if p.isRoot() {
		idle = 0
	}
	for ctx.Err() == nil {
		m, err := wire.ReadWithin(c, idle, s.limits.body)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Warn("bad request", "err", err)
				if badFrame(err) {
					s.fail(metrics.ErrRequest, p.UID, err.Error())
					c.SetWriteDeadline(time.Now().Add(replyWithin))
					wire.Write(c, errorf("podman-hpcd: %v; closing the connection", err))
				}
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
		if m.Type == wire.Notes && p.isRoot() {
			reply := wire.New(wire.OK)
			for _, u := range uses {
				for _, n := range s.containers.Notes(u.step) {
					log.Info("note for the user", "job", u.req.Job, "step", u.req.Step, "note", n)
					reply.Add("message", n)
				}
			}
			if err := wire.Write(c, reply); err != nil {
				return
			}
			continue
		}
		if m.Type == wire.Container && p.isRoot() {
			// A slurmstepd that dies (or closes) while its container is
			// being made takes its pull and helpers with it.
			// The step is the connection's (and its save known) before
			// the answer goes: a task may ask for its save at once.
			_, err := watchHangup(ctx, c, func(rctx context.Context) (stepUse, error) {
				return s.container(rctx, c, p, m, log, func(u stepUse) {
					uses = append(uses, u)
					s.saves.add(u)
				})
			})
			if err != nil {
				log.Warn("write reply", "err", err)
				return
			}
			continue
		}
		switch m.Type {
		case wire.Pull, wire.Import, wire.Export:
			// Long: what they start stops when the client hangs up.
			_, err = watchHangup(ctx, c, func(rctx context.Context) (struct{}, error) {
				return struct{}{}, s.userRequest(chargedTo(rctx, p, log), c, p, m, log)
			})
		case wire.Images, wire.Rmi, wire.Prune, wire.Ps, wire.Rm:
			err = s.userRequest(ctx, c, p, m, log)
		case wire.Save:
			err = wire.Write(c, s.saveNow(ctx, p, m, log))
		default:
			err = wire.Write(c, s.handle(p, m, log))
		}
		if err != nil {
			log.Warn("write reply", "err", err)
			return
		}
	}
}

// badFrame reports whether err is the peer's fault (a frame refused, or
// late) rather than the connection's end: the peer is told why.
func badFrame(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, wire.ErrTooLarge) ||
		errors.Is(err, wire.ErrVersion) || errors.Is(err, wire.ErrMalformed)
}

// stepUse is a step's use of a container.
type stepUse struct {
	step *node.Step
	req  *wire.ContainerRequest
}

// container gets the step its container (its own, or a named one) and sends
// the plugin what its tasks need to join it: the namespaces (as file
// descriptors: no pid to go stale), the working directory and the
// environment. Errors go to the plugin; the returned error is only a
// failure to write to it. got has the step's use just before the answer
// goes out.
func (s *Server) container(ctx context.Context, c *net.UnixConn, p peer, m *wire.Message, log *slog.Logger, got func(stepUse)) (stepUse, error) {
	start := time.Now()
	req, err := wire.ParseContainerRequest(m)
	if err != nil {
		return stepUse{}, wire.Write(c, errorf("%v", err))
	}
	log = log.With("job", req.Job, "step", req.Step, "uid", req.UID, "image", req.Image)
	if req.Name != "" {
		log = log.With("name", req.Name+":"+req.NameMode)
	}
	if s.containers == nil {
		log.Warn("container refused", "reason", s.noMgr)
		return stepUse{}, wire.Write(c, errorf("podman-hpcd on %s cannot run containers: %v", s.node, s.noMgr))
	}
	progress := func(msg string) { wire.Write(c, wire.New(wire.Progress, "message", msg)) }
	if note := s.versionNote(req.PluginVersion); note != "" {
		log.Warn("plugin and daemon versions differ", "plugin_version", req.PluginVersion, "version", s.version)
		progress(note)
	}
	st, err := s.containers.Step(ctx, req, p.proc(), progress)
	if err != nil {
		log.Warn("container failed", "err", err, "duration", time.Since(start))
		msg := userMessage(err, req)
		s.fail(metrics.ErrContainer, req.UID, fmt.Sprintf("job %s step %s: %s", req.Job, req.Step, msg))
		return stepUse{}, wire.Write(c, errorf("%s", msg))
	}
	s.metrics.ContainerStarted(time.Since(start))
	log.Info("container ready", "container", st.ID, "digest", st.Digest, "attached", st.Attached, "kept", st.Kept, "duration", time.Since(start))
	reply := wire.New(wire.OK, "container", st.ID, "workdir", st.Workdir)
	for _, n := range st.NamespaceNames {
		reply.Add("ns", n)
	}
	for _, e := range st.Env {
		reply.Add("env", e)
	}
	if st.OwnUserNS {
		// The plugin lets remap-root tasks keep their capabilities
		// only in a user namespace of their own (node/nest.go).
		reply.Add("own_userns", "1")
	}
	if req.EntrypointLog && st.EntrypointLog != "" {
		reply.Add("entrypoint_log", st.EntrypointLog)
	}
	u := stepUse{step: st, req: req}
	got(u)
	return u, wire.WriteUnix(c, reply, st.Namespaces...)
}

// userMessage is the line srun shows for a container that could not be
// had: an error about one of the user's options (a *wire.OptionError), of
// their hooks and modules (a *node.HookError) or of the image's import (a
// *node.ImportError) says what it is about itself; any other is about the
// image.
func userMessage(err error, req *wire.ContainerRequest) string {
	var oe *wire.OptionError
	var he *node.HookError
	var ie *node.ImportError
	if errors.As(err, &oe) || errors.As(err, &he) || errors.As(err, &ie) {
		return err.Error()
	}
	return "--container-image=" + req.Image + ": " + err.Error()
}

// versionNote is the line for the user when the plugin that asked is not
// the daemon's version ("" when it is, or does not say).
func (s *Server) versionNote(plugin string) string {
	if plugin == "" || plugin == s.version {
		return ""
	}
	return fmt.Sprintf("%s: note: the plugin is version %s and podman-hpcd %s; ask your admin to install one version on every node", s.node, plugin, s.version)
}

// endStep saves the container if the step asked (unless its last task had
// it saved), and removes the step's own. The error is the save's.
func (s *Server) endStep(ctx context.Context, u stepUse, log *slog.Logger) (err error) {
	if ps := s.saves.get(u.req.Job, u.req.Step, 0); ps != nil && ps.use.step == u.step {
		err = s.save(ctx, ps, log)
		s.saves.remove(u)
	}
	start := time.Now()
	s.containers.End(ctx, u.step)
	if !u.step.Attached && !u.step.Kept {
		log.Info("container removed", "container", u.step.ID, "job", u.req.Job, "step", u.req.Step, "duration", time.Since(start))
	}
	return err
}

// handle answers one request. Every refusal names the cause and the fix.
func (s *Server) handle(p peer, m *wire.Message, log *slog.Logger) *wire.Message {
	switch m.Type {
	case wire.Hello:
		client, _ := m.Get("client")
		log.Debug("hello", "client", client)
		return s.hello()
	case wire.Status:
		return s.status(p)
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
