package charge

import (
	"context"
	"errors"
	"testing"
)

func TestPlace(t *testing.T) {
	if err := Place(context.Background(), 42); err != nil {
		t.Fatalf("no placer: %v", err)
	}
	var got int
	boom := errors.New("boom")
	ctx := With(context.Background(), func(pid int) error { got = pid; return boom })
	if err := Place(ctx, 42); !errors.Is(err, boom) || got != 42 {
		t.Fatalf("placed %d, %v", got, err)
	}
}
