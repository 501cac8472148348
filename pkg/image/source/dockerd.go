package source

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// DefaultDockerSocket is where dockerd:// finds the node's Docker daemon.
const DefaultDockerSocket = "/var/run/docker.sock"

// dockerd://IMAGE is an image of the node's Docker daemon. Its socket is
// root-equivalent (whoever talks to it can run a privileged container), so
// a user may read images through it only if they could talk to it
// themselves: the socket is connected to by a thread that has become the
// user (pkg/asuser), where the kernel checks the socket file's
// permissions against the user's ids and groups (the docker group, as
// Docker's own client would be). Root then uses that connection for one
// request only, GET /images/get (docker save), and reads the archive into
// a root-owned copy: the daemon never talks to Docker on behalf of a user
// who could not.

// exportDockerd writes Docker's image name as a docker-archive to out,
// over socket ("": DefaultDockerSocket) connected to as cred; more than
// limit (> 0) bytes fails with ErrTooLarge.
func exportDockerd(ctx context.Context, socket, name string, cred Credential, out io.Writer, limit int64) error {
	if socket == "" {
		socket = DefaultDockerSocket
	}
	conn, err := dialAsUser(socket, cred)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/images/get?names="+url.QueryEscape(name), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", image.ErrBadReference, err)
	}
	if err := req.Write(conn); err != nil {
		return ctxOr(ctx, fmt.Errorf("docker daemon at %s: %w", socket, err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return ctxOr(ctx, fmt.Errorf("docker daemon at %s: %w", socket, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		if resp.StatusCode == http.StatusNotFound {
			return &opError{kind: image.ErrNoImage, detail: "the node's Docker daemon: " + e.Message, hint: "docker images lists its images"}
		}
		return fmt.Errorf("docker daemon at %s: %s: %s", socket, resp.Status, e.Message)
	}
	budget := &image.Budget{Limit: limit}
	if _, err := io.Copy(budget.Writer(out), resp.Body); err != nil {
		if errors.Is(err, image.ErrTooLarge) {
			return image.TooLarge("is", limit)
		}
		return ctxOr(ctx, fmt.Errorf("docker daemon at %s: %w", socket, err))
	}
	return nil
}

// ctxOr is ctx's cause once it ended (the connection was closed for it),
// else err.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// dialAsUser connects to the Unix socket at path as cred. A user who may
// not connect gets ErrPermission, naming the socket and the fix.
func dialAsUser(path string, cred Credential) (net.Conn, error) {
	f, err := asuser.Dial(cred, path)
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return nil, &opError{kind: image.ErrPermission, detail: "you may not use the node's Docker daemon (" + path + ")", hint: "dockerd:// is for the users its socket lets in (the docker group): ask your admin"}
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ECONNREFUSED):
		return nil, &opError{kind: image.ErrUnsupported, detail: fmt.Sprintf("no Docker daemon on this node (%s: %v)", path, err), hint: "use another image reference"}
	case err != nil:
		return nil, fmt.Errorf("docker daemon at %s: %w", path, err)
	}
	defer f.Close()
	return net.FileConn(f)
}
