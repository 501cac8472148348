package image

import (
	"fmt"
	"io"
	"sync/atomic"
)

// What one image may write to disk is bounded (the node's max_image_size):
// its layers as they are applied, a user's file or archive as it is
// copied, a local store's export, the squashfs itself. Every one of them
// fails alike, with TooLarge's error.

// TooLarge is the error for an image over limit, the node's
// max_image_size; what says how it was found ("unpacks to", "has layers
// of", "is", "squashes to"). It wraps ErrTooLarge.
func TooLarge(what string, limit int64) error {
	return fmt.Errorf("%w: it %s more than %s (the node's max_image_size)", ErrTooLarge, what, humanSize(limit))
}

// HumanSize renders n bytes as the config file writes sizes: 64G, 500M.
func HumanSize(n int64) string { return humanSize(n) }

// humanSize renders n bytes as the config file writes sizes: 64G, 500M.
func humanSize(n int64) string {
	for _, u := range []struct {
		shift uint
		unit  string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift {
			if n%(1<<u.shift) == 0 {
				return fmt.Sprintf("%d%s", n>>u.shift, u.unit)
			}
			return fmt.Sprintf("%.1f%s", float64(n)/float64(int64(1)<<u.shift), u.unit)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// Budget counts the bytes one image writes to disk, across layers and the
// goroutines that apply them; Limit <= 0 (or a nil *Budget) is no limit.
// It is safe for concurrent use.
type Budget struct {
	Limit int64
	used  atomic.Int64
}

// Take accounts for n more bytes and fails, with TooLarge("unpacks to"),
// once the total passes the limit.
func (b *Budget) Take(n int64) error {
	if b == nil {
		return nil
	}
	// Counted without a limit too: the cache sizes the squashfs by it.
	if b.used.Add(n) > b.Limit && b.Limit > 0 {
		return TooLarge("unpacks to", b.Limit)
	}
	return nil
}

// Used is how many bytes were taken so far.
func (b *Budget) Used() int64 { return b.used.Load() }

// SetUsed sets the count back to n (a retry reads a blob again).
func (b *Budget) SetUsed(n int64) { b.used.Store(n) }

// Reader passes reads of r on, taking what they return from b; past it a
// read fails with Take's error.
func (b *Budget) Reader(r io.Reader) io.Reader { return &budgetReader{r: r, b: b} }

type budgetReader struct {
	r io.Reader
	b *Budget
}

func (r *budgetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if terr := r.b.Take(int64(n)); terr != nil {
		return n, terr
	}
	return n, err
}

// Writer passes writes on to w while b lasts; a write past it fails with
// Take's error and writes nothing.
func (b *Budget) Writer(w io.Writer) io.Writer { return &budgetWriter{w: w, b: b} }

type budgetWriter struct {
	w io.Writer
	b *Budget
}

func (w *budgetWriter) Write(p []byte) (int, error) {
	if err := w.b.Take(int64(len(p))); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}
