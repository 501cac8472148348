package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestPriority(t *testing.T) {
	t.Parallel()
	for l, want := range map[slog.Level]int{
		slog.LevelDebug: 7, slog.LevelDebug + 1: 7, slog.LevelInfo: 6, slog.LevelInfo + 2: 6,
		slog.LevelWarn: 4, slog.LevelError: 3, slog.LevelError + 4: 3,
	} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}

// On the journal, every line starts with its priority and has no time;
// derived loggers (With) share the prefix; JSON lines likewise.
func TestJournalLines(t *testing.T) {
	t.Parallel()
	for _, json := range []bool{false, true} {
		var b bytes.Buffer
		log := New(&b, Options{Level: slog.LevelDebug, JSON: json, Journal: true})
		log.Debug("d")
		log.Info("i", "job", 42)
		log.With("image", "x").Warn("w")
		log.WithGroup("g").Error("e", "err", "line1\nline2")
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("json %v: %d lines, want 4:\n%s", json, len(lines), b.String())
		}
		for i, prio := range []string{"<7>", "<6>", "<4>", "<3>"} {
			if !strings.HasPrefix(lines[i], prio) || strings.Contains(lines[i], "time") {
				t.Errorf("json %v: line %d %q: want prefix %s and no time", json, i, lines[i], prio)
			}
		}
		if !json && lines[1] != "<6>level=INFO msg=i job=42" {
			t.Errorf("text line %q", lines[1])
		}
		if json && lines[2] != `<4>{"level":"WARN","msg":"w","image":"x"}` {
			t.Errorf("json line %q", lines[2])
		}
	}
}

// Off the journal: slog's own lines, with the time; JSON when asked.
func TestPlainLines(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	New(&b, Options{}).Error("e")
	New(&b, Options{}).Debug("not at info")
	New(&b, Options{JSON: true}).Warn("w", "job", "7")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "time=") || !strings.HasSuffix(lines[0], " level=ERROR msg=e") {
		t.Fatalf("lines %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m["level"] != "WARN" || m["job"] != "7" || m["time"] == nil {
		t.Errorf("json line %q: %v %v", lines[1], m, err)
	}
}

// JOURNAL_STREAM names the device and inode of the stream systemd gave:
// only a file that is that stream is the journal.
func TestJournal(t *testing.T) {
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "stream"))
	defer f.Close()
	other, _ := os.Create(filepath.Join(dir, "other"))
	defer other.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !Journal(f) {
		t.Error("the stream JOURNAL_STREAM names is not the journal")
	}
	if Journal(other) {
		t.Error("another file is the journal")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if Journal(f) {
		t.Error("the journal without JOURNAL_STREAM")
	}
}

func TestPrefixLines(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	PrefixLines(&b, "a: the config has errors:\nx:1: bad\n", 3, true)
	PrefixLines(&b, "plain\nlines\n", 3, false)
	if want := "<3>a: the config has errors:\n<3>x:1: bad\nplain\nlines\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// The containers libraries' logrus lines reach the daemon's log with
// their level: on the journal, a library's warning is a warning.
func TestCaptureLogrus(t *testing.T) {
	var b bytes.Buffer
	CaptureLogrus(New(&b, Options{Journal: true}))
	logrus.WithField("ref", "docker://x").Warn("slow mirror")
	logrus.Error("failed")
	logrus.Debug("not at info")
	want := "<4>level=WARN msg=\"slow mirror\" lib=containers ref=docker://x\n<3>level=ERROR msg=failed lib=containers\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	b.Reset()
	CaptureLogrus(New(&b, Options{Level: slog.LevelDebug}))
	logrus.Debug("at debug")
	if !strings.HasSuffix(b.String(), "level=DEBUG msg=\"at debug\" lib=containers\n") {
		t.Errorf("debug: %q", b.String())
	}
}
