package server

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unixPair is a connected pair of Unix stream sockets.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestUntilHangup(t *testing.T) {
	t.Parallel()
	t.Run("peer closes", func(t *testing.T) {
		t.Parallel()
		ours, peer := unixPair(t)
		ctx, stop := untilHangup(context.Background(), ours)
		defer stop()
		// What the peer sends meanwhile is neither a hangup nor consumed.
		peer.Write([]byte("next"))
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled while the peer is there: %v", context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
		peer.Close()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("not cancelled 5s after the peer closed")
		}
		if !errors.Is(context.Cause(ctx), errPeerGone) {
			t.Errorf("cause %v, want errPeerGone", context.Cause(ctx))
		}
		stop()
		buf := make([]byte, 8)
		ours.SetReadDeadline(time.Now().Add(time.Second))
		if n, _ := ours.Read(buf); string(buf[:n]) != "next" {
			t.Errorf("read %q after the watch, want the peer's %q", buf[:n], "next")
		}
	})
	t.Run("request ends first", func(t *testing.T) {
		t.Parallel()
		ours, peer := unixPair(t)
		ctx, stop := untilHangup(context.Background(), ours)
		stop()
		stop() // idempotent
		if errors.Is(context.Cause(ctx), errPeerGone) {
			t.Errorf("cause %v with the peer still there", context.Cause(ctx))
		}
		// The connection is still usable.
		go peer.Write([]byte("x"))
		ours.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := ours.Read(make([]byte, 1)); err != nil {
			t.Errorf("read after stop: %v", err)
		}
	})
}
