// Package logging makes the daemon's logger: log/slog lines, text
// (key=value) or JSON, and, when they go to the systemd journal's stream,
// each with its syslog priority in sd-daemon(3)'s "<N>" prefix, which
// journald strips and records (journalctl -p err shows the errors only).
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
)

// Options are how New logs.
type Options struct {
	Level slog.Leveler // the least level logged (nil: info)
	JSON  bool         // one JSON object a line instead of key=value
	// Journal: w is the journal's stream (see Journal): every line gets
	// its priority prefix, and no time (journald stamps each line).
	Journal bool
}

// New returns a logger writing one line per record to w.
func New(w io.Writer, o Options) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.Level}
	if !o.Journal {
		if o.JSON {
			return slog.New(slog.NewJSONHandler(w, ho))
		}
		return slog.New(slog.NewTextHandler(w, ho))
	}
	ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	pw := &prefixWriter{w: w}
	var h slog.Handler = slog.NewTextHandler(pw, ho)
	if o.JSON {
		h = slog.NewJSONHandler(pw, ho)
	}
	return slog.New(&journalHandler{h: h, pw: pw})
}

// PriorityErr is syslog's err, the priority of an error (Priority).
const PriorityErr = 3

// Priority is the syslog priority (RFC 5424's severity) of a slog level:
// 3 (err) for errors, 4 (warning), 6 (info), 7 (debug); a level between
// two takes the lower one's.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return PriorityErr
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// Journal reports whether f is the journal's stream: systemd sets
// JOURNAL_STREAM to "DEVICE:INODE" of the stdout and stderr it connects to
// journald, and a program whose stderr is that file (not redirected
// since) may use the priority prefix (systemd.exec(5)).
func Journal(f *os.File) bool {
	env := os.Getenv("JOURNAL_STREAM")
	if env == "" || f == nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// PrefixLines writes s to w as lines of priority prio: each with its "<N>"
// prefix where journal is true, as they are otherwise. An error that ends
// the daemon, several lines long (a config's problems), is then one
// journal entry of priority err per line.
func PrefixLines(w io.Writer, s string, prio int, journal bool) {
	if journal {
		s = strings.TrimSuffix(s, "\n")
		s = fmt.Sprintf("<%d>", prio) + strings.ReplaceAll(s, "\n", fmt.Sprintf("\n<%d>", prio)) + "\n"
	}
	io.WriteString(w, s)
}

// journalHandler gives each record's line its priority: the prefix is
// set, under the lock every handler derived from it shares, just before
// the inner handler's single Write of the line.
type journalHandler struct {
	h  slog.Handler
	pw *prefixWriter
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (j *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return j.h.Enabled(ctx, l)
}

func (j *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	j.pw.mu.Lock()
	defer j.pw.mu.Unlock()
	j.pw.prefix = fmt.Appendf(j.pw.prefix[:0], "<%d>", Priority(r.Level))
	return j.h.Handle(ctx, r)
}

func (j *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{h: j.h.WithAttrs(as), pw: j.pw}
}

func (j *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{h: j.h.WithGroup(name), pw: j.pw}
}

// CaptureLogrus sends what the containers libraries log through logrus
// (containers/image's and storage's warnings, written to stderr
// otherwise, with no priority) to log, with "lib"="containers": on the
// journal a library's warning is then a warning. Their debug lines come
// only when log takes debug. It changes logrus's process-wide settings.
func CaptureLogrus(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.InfoLevel)
	if log.Enabled(context.Background(), slog.LevelDebug) {
		logrus.SetLevel(logrus.DebugLevel)
	}
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{log: log.With("lib", "containers")})
}

type logrusHook struct{ log *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel: // panic, fatal, error
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	args := make([]any, 0, 2*len(e.Data))
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k, e.Data[k])
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	h.log.Log(ctx, level, e.Message, args...)
	return nil
}
