package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// DefaultConfigPath is where serve looks for its config file.
const DefaultConfigPath = "/etc/podman-hpc/podman-hpcd.conf"

// DefaultSocket is the socket serve listens on without systemd, and the one
// the client commands dial.
const DefaultSocket = "/run/podman-hpc/podman-hpcd.sock"

// Config is the daemon's configuration; contrib/slurm/podman-hpcd.conf
// documents every key.
type Config struct {
	Socket   string     // used when systemd passes no socket
	LogLevel slog.Level // debug, info, warn, error
}

func defaultConfig() Config {
	return Config{Socket: DefaultSocket, LogLevel: slog.LevelInfo}
}

// loadConfig reads "key = value" lines ('#' starts a comment) over the
// defaults. A missing file is fine only when it is the default path: an
// admin who names a file means it.
func loadConfig(path string, explicit bool) (Config, error) {
	c := defaultConfig()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("%s:%d: want key = value, got %q", path, n, line)
		}
		if err := c.set(strings.TrimSpace(key), strings.TrimSpace(value)); err != nil {
			return c, fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	return c, sc.Err()
}

func (c *Config) set(key, value string) error {
	switch key {
	case "socket":
		if !filepath.IsAbs(value) {
			return fmt.Errorf("socket %q: not an absolute path", value)
		}
		c.Socket = value
	case "log_level":
		if err := c.LogLevel.UnmarshalText([]byte(value)); err != nil {
			return fmt.Errorf("log_level %q: want debug, info, warn or error", value)
		}
	default:
		return fmt.Errorf("unknown key %q (known: socket, log_level)", key)
	}
	return nil
}
