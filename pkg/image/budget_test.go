package image

import (
	"bytes"
	"errors"
	"testing"
)

func TestHumanSize(t *testing.T) {
	if got := humanSize(64 << 30); got != "64G" {
		t.Errorf("humanSize(64G) = %q", got)
	}
	if got := humanSize(1536 << 20); got != "1.5G" {
		t.Errorf("humanSize(1.5G) = %q", got)
	}
}

// A write past the budget fails with the limit's error and writes nothing.
func TestBudgetWriter(t *testing.T) {
	var out bytes.Buffer
	b := &Budget{Limit: 10}
	w := b.Writer(&out)
	if _, err := w.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	_, err := w.Write([]byte("abc"))
	if !errors.Is(err, ErrTooLarge) || err.Error() != "image too large: it unpacks to more than 10 bytes (the node's max_image_size)" {
		t.Fatalf("err = %v", err)
	}
	if out.String() != "12345678" {
		t.Errorf("wrote %q", out.String())
	}
	var none *Budget
	if _, err := none.Writer(&out).Write(make([]byte, 1<<20)); err != nil {
		t.Errorf("nil budget: %v", err)
	}
}
