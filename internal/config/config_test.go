package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+body[:min(len(body), 4)]+".conf")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	c, err := Load(write("# comment\nsocket = /x/d.sock # trailing\n\nlog_level = debug\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/x/d.sock" || c.LogLevel != slog.LevelDebug {
		t.Errorf("got %+v", c)
	}
	c, err = Load(write("cache_max_age = 30d\nimage_linger = 0\ntag_ttl = 90s\nreuse_idle = 0\n"), true)
	if err != nil || c.CacheMaxAge != 30*24*time.Hour || c.ImageLinger != 0 || c.TagTTL != 90*time.Second || c.ReuseIdle != 0 {
		t.Errorf("durations: age %v linger %v ttl %v, %v", c.CacheMaxAge, c.ImageLinger, c.TagTTL, err)
	}
	// Limits: auto is derived from the disk (0 for squash), 0 is none (-1).
	if c := Default(); c.CacheMaxBytes != 0 || c.MaxImageSize != 0 || c.MaxPullsPerUser != 2 || c.MaxPulls != 4 {
		t.Errorf("default limits: cache %d image %d pulls %d/%d", c.CacheMaxBytes, c.MaxImageSize, c.MaxPullsPerUser, c.MaxPulls)
	}
	c, err = Load(write("cache_max_size = 0\nmax_image_size = 20G\nmax_pulls_per_user = 0\nmax_pulls = 0\n"), true)
	if err != nil || c.CacheMaxBytes != -1 || c.MaxImageSize != 20<<30 || c.MaxPullsPerUser != -1 || c.MaxPulls != -1 {
		t.Errorf("limits: cache %d image %d pulls %d/%d, %v", c.CacheMaxBytes, c.MaxImageSize, c.MaxPullsPerUser, c.MaxPulls, err)
	}
	c, err = Load(write("cache_max_size = auto\nmax_image_size = auto\nmax_pulls_per_user = 5\nmax_pulls = 9\n"), true)
	if err != nil || c.CacheMaxBytes != 0 || c.MaxImageSize != 0 || c.MaxPullsPerUser != 5 || c.MaxPulls != 9 {
		t.Errorf("auto limits: cache %d image %d pulls %d/%d, %v", c.CacheMaxBytes, c.MaxImageSize, c.MaxPullsPerUser, c.MaxPulls, err)
	}
	if c := Default(); c.HelperTimeout != 15*time.Minute {
		t.Errorf("default helper_timeout %v", c.HelperTimeout)
	}
	if c, err := Load(write("helper_timeout = 90s\n"), true); err != nil || c.HelperTimeout != 90*time.Second {
		t.Errorf("helper_timeout: %v, %v", c.HelperTimeout, err)
	}
	if c, err := Load(write("debug_pprof_socket = /run/p/pprof.sock\n"), true); err != nil || c.PprofSocket != "/run/p/pprof.sock" {
		t.Errorf("debug_pprof_socket: %q, %v", c.PprofSocket, err)
	}
	if c, err := Load(write("debug_pprof_socket = pprof.sock\n"), true); err == nil || c.PprofSocket != "" {
		t.Errorf("debug_pprof_socket relative: %q, %v; want an error", c.PprofSocket, err)
	}
	if Default().PprofSocket != "" {
		t.Error("profiles are served by default")
	}
	if c, err := Load(write("docker_socket = /x/docker.sock\n"), true); err != nil || c.DockerSocket != "/x/docker.sock" {
		t.Errorf("docker_socket: %q, %v", c.DockerSocket, err)
	}
	if c, err := Load(write("max_image_size = 8388607T\ncache_max_age = 106751d\n"), true); err != nil || c.MaxImageSize != 8388607<<40 || c.CacheMaxAge != 106751*24*time.Hour {
		t.Errorf("the largest size and age: %d %v, %v", c.MaxImageSize, c.CacheMaxAge, err)
	}
	if c, err := Load(write("compression = lz4\nlog_format = json\n"), true); err != nil || c.Compression != "lz4" || c.LogFormat != "json" {
		t.Errorf("compression lz4, log_format json: %q %q, %v", c.Compression, c.LogFormat, err)
	}
	if c := Default(); c.LogFormat != "text" {
		t.Errorf("default log_format %q", c.LogFormat)
	}
	if c := Default(); c.WritableDir != "/var/lib/podman-hpc/writable" || c.WritableSize != 16<<30 || c.WritableMaxPerUser != 64<<30 {
		t.Errorf("default writable: %q %d %d", c.WritableDir, c.WritableSize, c.WritableMaxPerUser)
	}
	c, err = Load(write("writable_dir = /scratch/w\nwritable_size = 2G\nwritable_max_per_user = 0\n"), true)
	if err != nil || c.WritableDir != "/scratch/w" || c.WritableSize != 2<<30 || c.WritableMaxPerUser != -1 {
		t.Errorf("writable: %q %d %d, %v", c.WritableDir, c.WritableSize, c.WritableMaxPerUser, err)
	}
	if c := Default(); c.SharedStoreMaxPerUser != 256<<30 {
		t.Errorf("default shared_store_max_per_user %d", c.SharedStoreMaxPerUser)
	}
	for body, want := range map[string]int64{"shared_store_max_per_user = 10G\n": 10 << 30, "shared_store_max_per_user = 0\n": -1} {
		if c, err := Load(write(body), true); err != nil || c.SharedStoreMaxPerUser != want {
			t.Errorf("%q: %d, %v", body, c.SharedStoreMaxPerUser, err)
		}
	}
	if c, err := Load(filepath.Join(dir, "absent"), false); err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("absent default config: %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "absent"), true); err == nil {
		t.Error("absent explicit config accepted")
	}
	for body, want := range map[string]string{
		"bogus = 1\n":               `unknown key "bogus"`,
		"socket\n":                  "want key = value",
		"socket = rel\n":            "not an absolute path",
		"docker_socket = d.sock\n":  `docker_socket "d.sock": not an absolute path`,
		"log_level = loud\n":        "want debug, info, warn or error",
		"tag_ttl = soon\n":          `tag_ttl "soon": want a duration`,
		"helper_timeout = 0\n":      `helper_timeout "0": want a duration`,
		"max_image_size = big\n":    `max_image_size "big": want a size`,
		"max_pulls_per_user = -1\n": `max_pulls_per_user "-1": want a number`,
		"max_pulls = x\n":           `max_pulls "x": want a number`,
		// Beyond int64: it wrapped to a negative size, "no limit".
		"max_image_size = 9223372036854775807G\n": `max_image_size "9223372036854775807G": too large (at most 8388607T)`,
		"cache_max_size = 8388608T\n":             `cache_max_size "8388608T": too large`,
		"cache_max_age = 106752d\n":               `cache_max_age "106752d": too long (at most 106751d)`,
		"compression = brotli:99\n":               `compression "brotli:99": not one the kernel can mount (gzip, zstd, lzo, xz, lz4) (or remove the line for zstd:3)`,
		"compression = zstd:99\n":                 `compression "zstd:99": level must be 1 to 22`,
		"log_format = xml\n":                      `log_format "xml": want text or json`,
		"writable_dir = w\n":                      `writable_dir "w": not an absolute path`,
		"writable_size = 1M\n":                    `writable_size "1M": want a size of at least 16M`,
		"writable_size = 0\n":                     `writable_size "0": want a size of at least 16M`,
		"writable_max_per_user = x\n":             `writable_max_per_user "x": want a size`,
		"shared_store_max_per_user = x\n":         `shared_store_max_per_user "x": want a size`,
	} {
		_, err := Load(write(body), true)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%q: err = %v, want line 1 and %q", body, err, want)
		}
	}
}

// The shipped example names every key the daemon knows, and loads.
func TestConfigExampleIsComplete(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../contrib/slurm/podman-hpcd.conf")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	err = c.set("no-such-key", "")
	_, known, _ := strings.Cut(err.Error(), "(known: ")
	known, _, _ = strings.Cut(known, ")")
	for _, key := range strings.Split(known, ", ") {
		if !strings.Contains(string(b), "\n#"+key+" =") {
			t.Errorf("example lacks a commented %q line", key)
		}
	}
	// Uncommented, the defaults it shows must load.
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, " = ") && !strings.HasPrefix(l, "#  ") {
			if k, v, _ := strings.Cut(strings.TrimPrefix(l, "#"), " = "); v != "" && !strings.Contains(k, " ") {
				lines = append(lines, k+" = "+v)
			}
		}
	}
	p := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644)
	if _, err := Load(p, true); err != nil {
		t.Errorf("the example's defaults do not load: %v", err)
	}
}

// Every bad line is reported, not only the first; metrics_listen is checked.
func TestLoadReportsEveryLine(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(p, []byte("bogus = 1\nlog_level = loud\nsocket = /s\nmetrics_listen = 9464\nlog_format = yaml\nsocket = /t\n"), 0o644)
	_, err := Load(p, true)
	lines := strings.Split(fmt.Sprint(err), "\n")
	for i, want := range []string{
		`:1: unknown key "bogus"`, `:2: log_level "loud"`, `:4: metrics_listen "9464": want HOST:PORT`,
		`:5: log_format "yaml"`, `:6: socket given again (first on line 3)`,
	} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d of the error: want %q in\n%v", i, want, err)
		}
	}
	for body, want := range map[string]string{
		"metrics_listen = host.example:9464\n": `:1: metrics_listen "host.example:9464": host "host.example": want an IP address`,
		"metrics_listen = 127.0.0.1:0\n":       `:1: metrics_listen "127.0.0.1:0": port "0"`,
	} {
		if _, err := Load(writeConf(t, body), true); !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("%q: want %q in %v", body, want, err)
		}
	}
	if c, err := Load(writeConf(t, "metrics_listen = [::1]:9464\n"), true); err != nil || c.MetricsListen != "[::1]:9464" {
		t.Errorf("metrics_listen [::1]:9464: %q, %v", c.MetricsListen, err)
	}
}

// A key given twice is refused, naming both lines; the first stays.
func TestLoadRefusesDuplicateKeys(t *testing.T) {
	t.Parallel()
	p := writeConf(t, "cache_dir = /a\n# cache_dir = /c\nlog_level = debug\n  cache_dir= /b\nmodules = gpu\nmodules = mpi\n")
	c, err := Load(p, true)
	want := p + ":4: cache_dir given again (first on line 1); keep one of the two lines\n" +
		p + ":6: modules given again (first on line 5); keep one of the two lines"
	if fmt.Sprint(err) != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
	if c.CacheDir != "/a" || !reflect.DeepEqual(c.Hooks.Modules, []string{"gpu"}) {
		t.Errorf("cache_dir %q modules %q: want the first lines'", c.CacheDir, c.Hooks.Modules)
	}
}

func writeConf(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "c.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	// state_dir's parents must be searchable (checkStateDir).
	os.Chmod(dir, 0o711)
	os.Chmod(filepath.Dir(dir), 0o711)
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	good := Default()
	good.Runtime, good.CacheDir, good.StateDir, good.Policy = "sh", filepath.Join(dir, "cache", "images"), filepath.Join(dir, "state"), policy
	good.Hooks.Dirs = []string{filepath.Join(dir, "hooks.d")}
	good.WritableDir, good.WritableSize, good.WritableMaxPerUser = filepath.Join(dir, "writable"), 16<<20, 64<<20
	if w, err := Check(good); err != nil || len(w) != 0 {
		t.Fatalf("a good config: warnings %q, %v", w, err)
	}
	bad := good
	bad.Runtime = "no-such-runtime-here"
	bad.StateDir = filepath.Join(file, "state")
	bad.Policy = filepath.Join(dir, "absent.json")
	bad.RegistriesConf = dir
	bad.MetricsListen = "0.0.0.0:9464"
	w, err := Check(bad)
	for _, want := range []string{
		`runtime "no-such-runtime-here": not found or not executable; install it, or set runtime = auto`,
		"state_dir " + bad.StateDir + ": " + file + " is not a directory; remove it, or set state_dir elsewhere",
		"policy " + bad.Policy + ": missing; ",
		"registries_conf " + dir + ": not a regular file; ",
	} {
		if !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("want %q in\n%v", want, err)
		}
	}
	if n := strings.Count(fmt.Sprint(err), "\n") + 1; n != 4 {
		t.Errorf("%d lines, want 4: %v", n, err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "metrics_listen 0.0.0.0:9464: not a loopback address") {
		t.Errorf("warnings %q", w)
	}

	// A state_dir under a directory others cannot search.
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	inPrivate := good
	inPrivate.StateDir = filepath.Join(private, "state")
	if _, err := Check(inPrivate); !strings.Contains(fmt.Sprint(err), "state_dir "+inPrivate.StateDir+": "+private+" is not searchable by others (mode 0700)") {
		t.Errorf("state_dir under a 0700 directory: %v", err)
	}

	// A policy that is not JSON, or not a policy.
	for body, want := range map[string]string{
		"default: reject\n":              `policy %s: invalid policy in "%[1]s": invalid character 'd' looking for beginning of value; fix it (containers-policy.json(5)), or set policy to another file`,
		`{"default":[{"type":"bogus"}]}`: `policy %s: invalid policy in "%[1]s": Unknown policy requirement type "bogus"; fix it`,
	} {
		bad := good
		bad.Policy = filepath.Join(t.TempDir(), "policy.json")
		os.WriteFile(bad.Policy, []byte(body), 0o644)
		if _, err := Check(bad); !strings.HasPrefix(fmt.Sprint(err), fmt.Sprintf(want, bad.Policy)) {
			t.Errorf("policy %q: %v\nwant %s", body, err, fmt.Sprintf(want, bad.Policy))
		}
	}
	// The squashfs transport's scopes (README) are a policy that loads.
	os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}],"transports":{"squashfs":{"/shared/images":[{"type":"insecureAcceptAnything"}]}}}`), 0o644)
	if _, err := Check(good); err != nil {
		t.Errorf("a policy with squashfs scopes: %v", err)
	}

	// A hooks.d file podman's code refuses fails every container: refused
	// here; a hook whose program is missing is left out, with a warning.
	hooksDir := good.Hooks.Dirs[0]
	os.Mkdir(hooksDir, 0o755)
	os.WriteFile(filepath.Join(hooksDir, "missing.json"), []byte(`{"version":"1.0.0","hook":{"path":"/no/such/hook"},"when":{"always":true},"stages":["prestart"]}`), 0o644)
	if w, err := Check(good); err != nil || len(w) != 1 || !strings.HasPrefix(w[0], "hooks_dirs: hooks.d: "+hooksDir+"/missing.json left out: ") {
		t.Errorf("a hook with a missing program: warnings %q, %v", w, err)
	}
	os.WriteFile(filepath.Join(hooksDir, "broken.json"), []byte(`{"version":"1.0.0",`), 0o644)
	if _, err := Check(good); !strings.HasPrefix(fmt.Sprint(err), "hooks_dirs: hooks.d: "+hooksDir+"/broken.json: ") ||
		!strings.HasSuffix(fmt.Sprint(err), "; fix the file (oci-hooks(5)) or remove it") {
		t.Errorf("an unparsable hooks.d file: %v", err)
	}
	os.RemoveAll(hooksDir)

	// The site image store: root's (the daemon's) and written by it only.
	store := filepath.Join(dir, "store")
	os.Mkdir(store, 0o700)
	withStore := good
	withStore.SharedStore = store
	if w, err := Check(withStore); err != nil || len(w) != 0 {
		t.Errorf("a good shared_store: warnings %q, %v", w, err)
	}
	os.Chmod(store, 0o777)
	if _, err := Check(withStore); fmt.Sprint(err) != "shared_store "+store+": writable by others (mode 0777): anyone could put an image there that every node runs; chmod go-w "+store+" (0700)" {
		t.Errorf("a world-writable shared_store: %v", err)
	}
	os.Chmod(store, 0o700)
	if os.Geteuid() == 0 { // only root gives a file away
		os.Chown(store, 1000, -1)
		if _, err := Check(withStore); !strings.HasPrefix(fmt.Sprint(err), "shared_store "+store+": owned by uid 1000, not 0 (the daemon's)") {
			t.Errorf("a shared_store of another user's: %v", err)
		}
	}
	link := filepath.Join(dir, "store-link")
	os.Symlink(store, link)
	withStore.SharedStore = link
	if _, err := Check(withStore); fmt.Sprint(err) != "shared_store "+link+": a symlink; set shared_store to the directory it names" {
		t.Errorf("a symlink shared_store: %v", err)
	}
	withStore.SharedStore = filepath.Join(dir, "not-mounted")
	if w, err := Check(withStore); err != nil || len(w) != 1 || !strings.HasPrefix(w[0], "shared_store "+withStore.SharedStore+": missing (its file system not mounted?)") {
		t.Errorf("a missing shared_store: warnings %q, %v", w, err)
	}

	// No user could have a writable container.
	tight := good
	tight.WritableMaxPerUser = 8 << 20
	if _, err := Check(tight); !strings.Contains(fmt.Sprint(err), "writable_max_per_user 8M is less than writable_size 16M") {
		t.Errorf("writable_max_per_user below writable_size: %v", err)
	}

	// A cache on a full file system.
	statfs = func(path string, st *unix.Statfs_t) error { st.Bavail, st.Bsize = 10, 4096; return nil }
	defer func() { statfs = unix.Statfs }()
	_, err = Check(good)
	if want := "cache_dir " + good.CacheDir + ": its file system has 40K free (at least 256M needed); free space there, or set cache_dir to another file system"; fmt.Sprint(err) != want {
		t.Errorf("full disk: %v\nwant %s", err, want)
	}
	// writable_dir on a tmpfs (with room): it works, and the admin is told.
	statfs = func(path string, st *unix.Statfs_t) error {
		st.Bavail, st.Bsize, st.Type = 1<<20, 4096, unix.TMPFS_MAGIC
		return nil
	}
	w, err = Check(good)
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "writable_dir "+good.WritableDir+": on a tmpfs: containers' writes take the node's memory") {
		t.Errorf("writable_dir on a tmpfs: warnings %q, %v", w, err)
	}
}
