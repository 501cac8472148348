package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Use times alone reach index.json at most every touchEvery; flush (at
// Close) writes what is pending; a change that is not only use times
// (save) is written at once.
func TestIndexTouchIsThrottled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix := &index{Version: indexVersion, Images: map[string]*entry{"sha256:a": {Digest: "sha256:a", LastUsed: t0}}}
	onDisk := func() time.Time {
		t.Helper()
		var got index
		b, err := os.ReadFile(filepath.Join(dir, indexName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		return got.Images["sha256:a"].LastUsed
	}
	if err := ix.touch(dir); err != nil { // never written: written now
		t.Fatal(err)
	}
	if got := onDisk(); !got.Equal(t0) {
		t.Fatalf("first touch wrote %v, want %v", got, t0)
	}
	ix.Images["sha256:a"].LastUsed = t0.Add(time.Hour)
	if err := ix.touch(dir); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); !got.Equal(t0) {
		t.Errorf("a touch right after a write reached the file: %v", got)
	}
	if err := ix.flush(dir); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("flush wrote %v, want %v", got, t0.Add(time.Hour))
	}
	// touchEvery later, a touch writes again.
	ix.written = time.Now().Add(-touchEvery)
	ix.Images["sha256:a"].LastUsed = t0.Add(2 * time.Hour)
	if err := ix.touch(dir); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("a touch %v after the last write: file has %v", touchEvery, got)
	}
	// save is never held back.
	ix.Images["sha256:a"].LastUsed = t0.Add(3 * time.Hour)
	if err := ix.save(dir); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); !got.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("save: file has %v", got)
	}
}
