package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+body[:min(len(body), 4)]+".conf")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	c, err := loadConfig(write("# comment\nsocket = /x/d.sock # trailing\n\nlog_level = debug\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/x/d.sock" || c.LogLevel != slog.LevelDebug {
		t.Errorf("got %+v", c)
	}
	if c, err := loadConfig(filepath.Join(dir, "absent"), false); err != nil || !reflect.DeepEqual(c, defaultConfig()) {
		t.Errorf("absent default config: %+v, %v", c, err)
	}
	if _, err := loadConfig(filepath.Join(dir, "absent"), true); err == nil {
		t.Error("absent explicit config accepted")
	}
	for body, want := range map[string]string{
		"bogus = 1\n":        `unknown key "bogus"`,
		"socket\n":           "want key = value",
		"socket = rel\n":     "not an absolute path",
		"log_level = loud\n": "want debug, info, warn or error",
	} {
		_, err := loadConfig(write(body), true)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%q: err = %v, want line 1 and %q", body, err, want)
		}
	}
}
