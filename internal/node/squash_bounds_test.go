package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One squash per user: a second export is refused at once, a save waits
// for the first to end (or for its context), other users are not held.
func TestUserSquashes(t *testing.T) {
	t.Parallel()
	var u userSquashes
	release, err := u.take(context.Background(), 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.take(context.Background(), 1000, false); !errors.Is(err, errSquashBusy) {
		t.Errorf("second export: %v, want errSquashBusy", err)
	}
	other, err := u.take(context.Background(), 1001, false)
	if err != nil {
		t.Errorf("another user's export: %v", err)
	} else {
		other()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := u.take(ctx, 1000, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("save whose context ends: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := u.take(context.Background(), 1000, true)
		if err == nil {
			r()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("save did not wait for the export: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	release() // idempotent
	if err := <-got; err != nil {
		t.Errorf("save after the export: %v", err)
	}
	if r, err := u.take(context.Background(), 1000, false); err != nil {
		t.Errorf("export once all ended: %v", err)
	} else {
		r()
	}
}
