// Command bench measures pkg/image/store against the usual pipeline, side by
// side on one image with cold page caches and the same compression:
//
//	ours      store.Cache.Get from a local registry (pull + squash)
//	baseline  skopeo copy (to an OCI layout) + umoci unpack + mksquashfs
//	limit     every layer decompressed at once with zcat (no writes)
//	reuse     Get of the cached image (median of -reuse calls)
//
// plus the peak RSS of our pull (the Go process; and with its children,
// mksquashfs included) and the bytes it wrote per byte of squashfs.
//
// Run as root (it drops the page cache before each pipeline):
//
//	go run -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" \
//	    ./test/bench/pull -image oci:/var/tmp/podman-hpc-bench/big:latest
//
// With -squashfs FILE instead, it compares what a user's squashfs file
// costs: our copy into the cache (GetFile, cold and again) against
// mounting the file in place with squashfuse, and reading every file
// through each.
//
// bigimage.sh in this directory builds a 1 GB test image offline.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/reexec"

	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

func main() {
	if reexec.Init() {
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "get" {
		if err := childGet(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench get:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	image, work, compression, jsonOut string
	runs, reuse, processors           int
}

func run() error {
	var c config
	flag.StringVar(&c.image, "image", "", "source image, as skopeo names it (oci:DIR:TAG)")
	flag.StringVar(&c.work, "work", "/var/tmp/podman-hpc-bench/run", "work directory (disk-backed; emptied)")
	flag.StringVar(&c.compression, "compression", squashfs.DefaultCompression, "squashfs compression for every pipeline")
	flag.IntVar(&c.runs, "runs", 3, "runs of each pipeline (medians are reported)")
	flag.IntVar(&c.reuse, "reuse", 20, "Get calls on the cached image")
	flag.IntVar(&c.processors, "processors", runtime.NumCPU(), "mksquashfs -processors")
	flag.StringVar(&c.jsonOut, "json", "", "also write the figures to this file")
	sqfs := flag.String("squashfs", "", "compare copying this squashfs file with squashfuse instead")
	flag.Parse()
	if *sqfs != "" {
		return fileBench(c, *sqfs)
	}
	if c.image == "" || !strings.HasPrefix(c.image, "oci:") {
		return fmt.Errorf("-image oci:DIR:TAG is required")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root (page cache drops, chroot)")
	}
	if err := freshWork(c, "docker-registry", "skopeo", "umoci", "mksquashfs", "zcat"); err != nil {
		return err
	}
	host, stop, err := startRegistry(c.work)
	if err != nil {
		return err
	}
	defer stop()
	ref := host + "/bench/image:latest"
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--dest-tls-verify=false", c.image, "docker://"+ref).CombinedOutput(); err != nil {
		return fmt.Errorf("skopeo copy to the registry: %v: %s", err, out)
	}
	policy, registries, err := writeConfig(c.work, host)
	if err != nil {
		return err
	}
	blobs, err := layerBlobs(c.image)
	if err != nil {
		return err
	}

	// With igzip installed, our pull also runs without it (a PATH of
	// every program but igzip), to show what it brings in the same run.
	var noIgzip string
	if _, err := exec.LookPath("igzip"); err == nil {
		if noIgzip, err = pathWithout(filepath.Join(c.work, "no-igzip-bin"), "igzip"); err != nil {
			return err
		}
	}
	// With tar2sqfs installed, our pull also runs without it: layers
	// extracted to disk, then mksquashfs (what a node without
	// squashfs-tools-ng does).
	var noStream string
	if _, err := exec.LookPath("tar2sqfs"); err == nil {
		if noStream, err = pathWithout(filepath.Join(c.work, "no-tar2sqfs-bin"), "tar2sqfs"); err != nil {
			return err
		}
	}
	res := map[string][]float64{}
	var last childResult
	for i := range c.runs {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", i+1, c.runs)
		// Ours.
		r, err := runChild(c, ref, policy, registries, filepath.Join(c.work, fmt.Sprintf("cache-%d", i)))
		if err != nil {
			return err
		}
		last = r
		res["ours_s"] = append(res["ours_s"], r.WallS)
		res["ours_cpu_s"] = append(res["ours_cpu_s"], r.CPUS)
		res["ours_apply_s"] = append(res["ours_apply_s"], r.ApplyS)
		res["ours_squash_s"] = append(res["ours_squash_s"], r.SquashS)
		res["ours_download_s"] = append(res["ours_download_s"], r.DownloadS)
		res["ours_decompress_wait_s"] = append(res["ours_decompress_wait_s"], r.DecompressWaitS)
		res["ours_extract_wait_s"] = append(res["ours_extract_wait_s"], r.ExtractWaitS)
		res["reuse_ms"] = append(res["reuse_ms"], median(r.ReuseMS))
		res["go_rss_mb"] = append(res["go_rss_mb"], float64(r.GoHWMKB)/1024)
		res["tree_rss_mb"] = append(res["tree_rss_mb"], float64(r.TreeMaxRSSKB)/1024)
		res["written_per_squashfs_byte"] = append(res["written_per_squashfs_byte"], float64(r.WrittenBytes)/float64(r.Size))
		res["disk_written_per_squashfs_byte"] = append(res["disk_written_per_squashfs_byte"], float64(r.DiskBytes)/float64(r.Size))
		res["squashfs_mb"] = append(res["squashfs_mb"], float64(r.Size)/1e6)
		os.RemoveAll(filepath.Join(c.work, fmt.Sprintf("cache-%d", i)))
		if noIgzip != "" {
			r, err := runChild(c, ref, policy, registries, filepath.Join(c.work, fmt.Sprintf("cache-%d", i)), "PATH="+noIgzip)
			if err != nil {
				return err
			}
			res["ours_no_igzip_s"] = append(res["ours_no_igzip_s"], r.WallS)
			res["ours_no_igzip_cpu_s"] = append(res["ours_no_igzip_cpu_s"], r.CPUS)
			os.RemoveAll(filepath.Join(c.work, fmt.Sprintf("cache-%d", i)))
		}

		if noStream != "" {
			r, err := runChild(c, ref, policy, registries, filepath.Join(c.work, fmt.Sprintf("cache-%d", i)), "PATH="+noStream)
			if err != nil {
				return err
			}
			res["ours_extracting_s"] = append(res["ours_extracting_s"], r.WallS)
			res["ours_extracting_cpu_s"] = append(res["ours_extracting_cpu_s"], r.CPUS)
			res["ours_extracting_apply_s"] = append(res["ours_extracting_apply_s"], r.ApplyS)
			res["ours_extracting_squash_s"] = append(res["ours_extracting_squash_s"], r.SquashS)
			res["ours_extracting_written_per_squashfs_byte"] = append(res["ours_extracting_written_per_squashfs_byte"], float64(r.WrittenBytes)/float64(r.Size))
			os.RemoveAll(filepath.Join(c.work, fmt.Sprintf("cache-%d", i)))
		}

		// Baseline.
		b, err := baseline(c, ref, filepath.Join(c.work, fmt.Sprintf("baseline-%d", i)))
		if err != nil {
			return err
		}
		for k, v := range b {
			res[k] = append(res[k], v)
		}
		os.RemoveAll(filepath.Join(c.work, fmt.Sprintf("baseline-%d", i)))

		// Limit.
		par, ser, err := decompress(blobs)
		if err != nil {
			return err
		}
		res["zcat_parallel_s"] = append(res["zcat_parallel_s"], par)
		res["zcat_serial_s"] = append(res["zcat_serial_s"], ser)
		if _, err := exec.LookPath("igzip"); err == nil {
			// The same limit with the decompressor our pull uses.
			par, ser, err := decompressWith("igzip -d -c", blobs)
			if err != nil {
				return err
			}
			res["igzip_parallel_s"] = append(res["igzip_parallel_s"], par)
			res["igzip_serial_s"] = append(res["igzip_serial_s"], ser)
		}
	}
	med := map[string]float64{}
	for k, v := range res {
		med[k] = median(v)
	}
	med["ours_vs_baseline"] = med["ours_s"] / med["baseline_s"]
	med["ours_vs_baseline_cpu"] = med["ours_cpu_s"] / med["baseline_cpu_s"]
	med["ours_vs_limit"] = med["ours_s"] / med["zcat_parallel_s"]
	if med["igzip_parallel_s"] > 0 {
		med["ours_vs_igzip_limit"] = med["ours_s"] / med["igzip_parallel_s"]
	}
	report(c, med, last)
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(map[string]any{"image": c.image, "compression": c.compression,
			"runs": c.runs, "cpus": runtime.NumCPU(), "decompressor": last.Decompressor, "squasher": last.Squasher,
			"median": med, "all": res}, "", "  ")
		if err := os.WriteFile(c.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func report(c config, m map[string]float64, r childResult) {
	fmt.Printf("image %s, %d layers, squashfs %.0f MB (%s), %d CPUs, median of %d cold runs\n",
		c.image, r.Layers, m["squashfs_mb"], c.compression, runtime.NumCPU(), c.runs)
	row := func(name string, v float64, unit, note string) {
		fmt.Printf("  %-44s %8.2f %-3s %s\n", name, v, unit, note)
	}
	row("ours: Get (pull + apply + squash)", m["ours_s"], "s", "("+r.Squasher+")")
	if r.Squasher == "tar2sqfs" {
		row("  of which download + stream into tar2sqfs", m["ours_apply_s"], "s", "")
		row("    download (the last layer's arrival)", m["ours_download_s"], "s", "(beside the stream)")
		row("    stream waiting on decompression", m["ours_decompress_wait_s"], "s", "("+r.Decompressor+")")
		row("    stream waiting on tar2sqfs", m["ours_extract_wait_s"], "s", "")
		row("  of which tar2sqfs finishing", m["ours_squash_s"], "s", "")
	} else {
		row("  of which download + apply", m["ours_apply_s"], "s", "")
		row("    download (the last layer's arrival)", m["ours_download_s"], "s", "(beside the applies)")
		row("    apply waiting on decompression", m["ours_decompress_wait_s"], "s", "("+r.Decompressor+")")
		row("    apply waiting on extraction", m["ours_extract_wait_s"], "s", "")
		row("  of which mksquashfs", m["ours_squash_s"], "s", "")
	}
	if m["ours_extracting_s"] > 0 {
		row("ours without tar2sqfs (extract + mksquashfs)", m["ours_extracting_s"], "s", "")
		row("  of which download + apply / mksquashfs", m["ours_extracting_apply_s"], "s", fmt.Sprintf("/ %.2f s", m["ours_extracting_squash_s"]))
		row("  its CPU time", m["ours_extracting_cpu_s"], "s", "")
	}
	row("baseline: skopeo copy + umoci unpack + mksquashfs", m["baseline_s"], "s", "")
	row("  skopeo copy", m["skopeo_s"], "s", "")
	row("  umoci unpack", m["umoci_s"], "s", "")
	row("  mksquashfs", m["mksquashfs_s"], "s", "")
	row("limit: zcat of every layer in parallel", m["zcat_parallel_s"], "s", "")
	row("  (zcat serially)", m["zcat_serial_s"], "s", "")
	if m["igzip_parallel_s"] > 0 {
		row("limit with igzip: every layer in parallel", m["igzip_parallel_s"], "s", "")
		row("  (igzip serially)", m["igzip_serial_s"], "s", "")
	}
	row("ours / baseline", m["ours_vs_baseline"], "x", "(target <= 0.40)")
	if m["ours_no_igzip_s"] > 0 {
		row("ours without igzip (decompressed in Go)", m["ours_no_igzip_s"], "s", "")
		row("  its CPU time", m["ours_no_igzip_cpu_s"], "s", "")
	}
	row("CPU time: ours", m["ours_cpu_s"], "s", "")
	row("CPU time: baseline", m["baseline_cpu_s"], "s", "")
	row("  ours / baseline, CPU", m["ours_vs_baseline_cpu"], "x", "")
	row("ours / limit", m["ours_vs_limit"], "x", "(target <= 1.4)")
	if m["ours_vs_igzip_limit"] > 0 {
		row("ours / limit with igzip", m["ours_vs_igzip_limit"], "x", "")
	}
	row("reuse of the cached image (Get)", m["reuse_ms"], "ms", "(target < 50)")
	row("peak RSS of the pull, Go process", m["go_rss_mb"], "MB", "")
	row("peak RSS of the pull, largest process", m["tree_rss_mb"], "MB", "("+r.Squasher+")")
	row("bytes written per byte of squashfs: dirtied", m["written_per_squashfs_byte"], "", "(blobs, squashfs; the rootfs when extracted)")
	if m["ours_extracting_written_per_squashfs_byte"] > 0 {
		row("  the same, extracting", m["ours_extracting_written_per_squashfs_byte"], "", "")
	}
	row("  reaching the disk (/proc/diskstats)", m["disk_written_per_squashfs_byte"], "", "(the rest was deleted before writeback)")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// dropCaches makes the next pipeline start cold.
func dropCaches() error {
	exec.Command("sync").Run()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
}

func startRegistry(work string) (host string, stop func(), err error) {
	host = "127.0.0.1:" + strconv.Itoa(40000+os.Getpid()%20000)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"+
		"storage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(work, "registry"), host)
	p := filepath.Join(work, "registry.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command("docker-registry", "serve", p)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+host+"/none:1").CombinedOutput(); err == nil || bytes.Contains(out, []byte("manifest unknown")) {
			return host, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("docker-registry did not start on %s", host)
}

func writeConfig(work, host string) (policy, registries string, err error) {
	policy = filepath.Join(work, "policy.json")
	registries = filepath.Join(work, "registries.conf")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		return "", "", err
	}
	err = os.WriteFile(registries, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host)), 0o644)
	return policy, registries, err
}

// layerBlobs lists the layer files of an OCI layout image.
func layerBlobs(image string) ([]string, error) {
	dir, tag, _ := strings.Cut(strings.TrimPrefix(image, "oci:"), ":")
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		return nil, err
	}
	blob := func(d string) string { return filepath.Join(dir, "blobs", strings.Replace(d, ":", "/", 1)) }
	for _, m := range idx.Manifests {
		if tag == "" || m.Annotations["org.opencontainers.image.ref.name"] == tag {
			var man struct {
				Layers []struct{ Digest string } `json:"layers"`
			}
			if err := readJSON(blob(m.Digest), &man); err != nil {
				return nil, err
			}
			var out []string
			for _, l := range man.Layers {
				out = append(out, blob(l.Digest))
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: no manifest tagged %q", dir, tag)
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// decompress times zcat of every layer, all at once and one by one.
func decompress(blobs []string) (parallel, serial float64, err error) {
	return decompressWith("zcat", blobs)
}

// decompressWith times the decompression command dcmd (reading the layer
// on stdin) of every layer, all at once and one by one.
func decompressWith(dcmd string, blobs []string) (parallel, serial float64, err error) {
	zcat := func(p string) error { return exec.Command("sh", "-c", dcmd+` <"$1" >/dev/null`, "sh", p).Run() }
	if err := dropCaches(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		wg.Go(func() { errs[i] = zcat(b) })
	}
	wg.Wait()
	parallel = time.Since(start).Seconds()
	if err := dropCaches(); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	for _, b := range blobs {
		if err := zcat(b); err != nil {
			return 0, 0, err
		}
	}
	for _, e := range errs {
		if e != nil {
			return 0, 0, e
		}
	}
	return parallel, time.Since(start).Seconds(), nil
}

// baseline: skopeo copy + umoci unpack + mksquashfs, as sites script it.
func baseline(c config, ref, dir string) (map[string]float64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := dropCaches(); err != nil {
		return nil, err
	}
	comp, level, _ := strings.Cut(c.compression, ":")
	mks := []string{filepath.Join(dir, "bundle", "rootfs"), filepath.Join(dir, "image.squashfs"),
		"-noappend", "-no-progress", "-quiet", "-comp", comp, "-processors", strconv.Itoa(c.processors)}
	if level != "" {
		mks = append(mks, "-Xcompression-level", level)
	}
	steps := []struct {
		name string
		argv []string
	}{
		{"skopeo_s", []string{"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + ref, "oci:" + filepath.Join(dir, "layout") + ":latest"}},
		{"umoci_s", []string{"umoci", "unpack", "--image", filepath.Join(dir, "layout") + ":latest", filepath.Join(dir, "bundle")}},
		{"mksquashfs_s", append([]string{"mksquashfs"}, mks...)},
	}
	res := map[string]float64{}
	total := time.Now()
	for _, s := range steps {
		start := time.Now()
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s.argv, " "), err, out)
		}
		res[s.name] = time.Since(start).Seconds()
		res["baseline_cpu_s"] += cpuS(cmd.ProcessState)
	}
	res["baseline_s"] = time.Since(total).Seconds()
	return res, nil
}

// pathWithout makes dir a PATH directory of links to every program in
// PATH but those named in without, and returns it.
func pathWithout(dir string, without ...string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if slices.Contains(without, e.Name()) {
				continue
			}
			// The first in PATH wins, as for a lookup.
			if err := os.Symlink(filepath.Join(p, e.Name()), filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", err
			}
		}
	}
	return dir, nil
}

// cpuS is the CPU time, in seconds, of a process that ended and of the
// children it waited for: less sensitive than wall time to the other
// work of a shared machine.
func cpuS(ps *os.ProcessState) float64 {
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

// childResult is what the "get" child reports.
type childResult struct {
	WallS, ApplyS, SquashS float64
	CPUS                   float64 // the pull's and its children's (user + system)
	// Where the apply's time went (the pull's log line): the last
	// layer's arrival, and the applies' waits on each stage.
	DownloadS, DecompressWaitS, ExtractWaitS float64
	Decompressor                             string
	Squasher                                 string // tar2sqfs (streamed) or mksquashfs (extracted)
	ReuseMS                                  []float64
	GoHWMKB                                  int64
	TreeMaxRSSKB                             int64
	WrittenBytes                             int64 // dirtied by the pull, whether or not it reached the disk
	DiskBytes                                int64 // sectors the disk wrote meanwhile, after a sync
	Size                                     int64
	Layers                                   int
	Digest                                   string
}

// runChild runs our Get in a child process, so that its peak RSS and
// writes can be measured apart from this program's.
func runChild(c config, ref, policy, registries, dir string, env ...string) (childResult, error) {
	var r childResult
	if err := dropCaches(); err != nil {
		return r, err
	}
	before, err := sectorsWritten(c.work)
	if err != nil {
		return r, err
	}
	cmd := exec.Command("/proc/self/exe", "get", dir, ref, policy, registries, c.compression,
		strconv.Itoa(c.processors), strconv.Itoa(c.reuse))
	cmd.Env = append(os.Environ(), env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("get: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("get output %q: %v", out.String(), err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.TreeMaxRSSKB = ru.Maxrss
	r.CPUS = cpuS(cmd.ProcessState)
	r.WrittenBytes = ru.Oublock * 512
	_ = exec.Command("sync").Run()
	after, err := sectorsWritten(c.work)
	if err != nil {
		return r, err
	}
	r.DiskBytes = (after - before) * 512
	return r, nil
}

// sectorsWritten reads /proc/diskstats for the disk holding dir (the
// whole device: a partition's counters are in its parent's too).
func sectorsWritten(dir string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, err
	}
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[0] == strconv.FormatUint(major, 10) && f[1] == strconv.FormatUint(minor, 10) {
			return strconv.ParseInt(f[9], 10, 64)
		}
	}
	return 0, fmt.Errorf("no /proc/diskstats line for %d:%d", major, minor)
}

// childGet: get DIR REF POLICY REGISTRIES COMPRESSION PROCESSORS REUSE
func childGet(args []string) error {
	if len(args) != 7 {
		return fmt.Errorf("want 7 arguments, got %d", len(args))
	}
	procs, _ := strconv.Atoi(args[5])
	reuse, _ := strconv.Atoi(args[6])
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logBuf, &logMu}, nil))
	ctx := context.Background()
	c, err := store.Open(ctx, store.Options{Dir: args[0], PolicyPath: args[2], RegistriesConf: args[3],
		RegistriesConfDir: filepath.Join(args[0], "no-dropins"), Compression: args[4], Processors: procs, Log: log})
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	img, err := c.Get(ctx, args[1], store.PullOptions{})
	if err != nil {
		return err
	}
	r := childResult{WallS: time.Since(start).Seconds(), Size: img.Size, Digest: img.Digest}
	for range reuse {
		s := time.Now()
		if _, err := c.Get(ctx, args[1], store.PullOptions{}); err != nil {
			return err
		}
		r.ReuseMS = append(r.ReuseMS, float64(time.Since(s).Microseconds())/1000)
	}
	logMu.Lock()
	sc := bufio.NewScanner(bytes.NewReader(logBuf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "image pulled" {
			r.ApplyS = nsToS(rec["apply"])
			r.SquashS = nsToS(rec["squash"])
			r.DownloadS = nsToS(rec["download"])
			r.DecompressWaitS = nsToS(rec["decompress_wait"])
			r.ExtractWaitS = nsToS(rec["extract_wait"])
			r.Decompressor, _ = rec["decompressor"].(string)
			r.Squasher, _ = rec["squasher"].(string)
			if n, ok := rec["layers"].(float64); ok {
				r.Layers = int(n)
			}
		}
	}
	logMu.Unlock()
	r.GoHWMKB = vmHWM()
	return json.NewEncoder(os.Stdout).Encode(r)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func nsToS(v any) float64 {
	f, _ := v.(float64)
	return f / 1e9
}

// vmHWM is this process's peak resident set, in KiB.
func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// fileBench: GetFile's copy against a squashfuse mount of the file.
func fileBench(c config, path string) error {
	if err := freshWork(c, "squashfuse", "tar"); err != nil {
		return err
	}
	policy, _, err := writeConfig(c.work, "127.0.0.1:1")
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	mnt := filepath.Join(c.work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	timed := func(f func() error) (float64, error) {
		start := time.Now()
		err := f()
		return time.Since(start).Seconds(), err
	}
	sh := func(script string, args ...string) func() error {
		return func() error {
			out, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", script, err, out)
			}
			return nil
		}
	}
	readAll := sh(`tar -C "$1" -cf - . | cat >/dev/null`, mnt)
	res := map[string][]float64{}
	add := func(k string) func(float64, error) error {
		return func(v float64, err error) error {
			res[k] = append(res[k], v)
			return err
		}
	}
	ctx := context.Background()
	for i := range c.runs {
		dir := filepath.Join(c.work, fmt.Sprintf("cache-%d", i))
		cache, err := store.Open(ctx, store.Options{Dir: dir, PolicyPath: policy})
		if err != nil {
			return err
		}
		var img *store.Image
		getFile := func(p string) func() error {
			return func() error {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				img, err = cache.GetFile(ctx, f, store.PullOptions{})
				return err
			}
		}
		if err := dropCaches(); err != nil {
			return err
		}
		if err := add("copy_cold_s")(timed(getFile(path))); err != nil {
			return err
		}
		if err := add("again_same_file_ms")(timed(getFile(path))); err != nil {
			return err
		}
		res["again_same_file_ms"][i] *= 1000
		other := filepath.Join(c.work, "other.sqsh")
		if err := sh(`cp "$1" "$2"`, path, other)(); err != nil {
			return err
		}
		if err := add("same_content_other_file_s")(timed(getFile(other))); err != nil {
			return err
		}
		os.Remove(other)
		if err := dropCaches(); err != nil {
			return err
		}
		if err := add("squashfuse_mount_umount_ms")(timed(sh(`squashfuse "$1" "$2" && umount "$2"`, path, mnt))); err != nil {
			return err
		}
		res["squashfuse_mount_umount_ms"][i] *= 1000
		if err := add("kernel_mount_umount_ms")(timed(sh(`mount -t squashfs -o loop,ro,nosuid,nodev "$1" "$2" && umount "$2"`, img.Path, mnt))); err != nil {
			return err
		}
		res["kernel_mount_umount_ms"][i] *= 1000
		for _, m := range []struct{ key, mount string }{
			{"read_all_kernel_cold_s", `mount -t squashfs -o loop,ro,nosuid,nodev "$1" "$2"`},
			{"read_all_squashfuse_cold_s", `squashfuse "$1" "$2"`},
		} {
			src := img.Path
			if strings.Contains(m.mount, "squashfuse") {
				src = path
			}
			if err := sh(m.mount, src, mnt)(); err != nil {
				return err
			}
			if err := dropCaches(); err != nil {
				return err
			}
			err := add(m.key)(timed(readAll))
			if uerr := sh(`umount "$1"`, mnt)(); err == nil {
				err = uerr
			}
			if err != nil {
				return err
			}
		}
		cache.Close()
		os.RemoveAll(dir)
	}
	fmt.Printf("squashfs file %s, %.0f MB, median of %d runs\n", path, float64(fi.Size())/1e6, c.runs)
	for _, k := range []string{"copy_cold_s", "again_same_file_ms", "same_content_other_file_s",
		"squashfuse_mount_umount_ms", "kernel_mount_umount_ms", "read_all_kernel_cold_s", "read_all_squashfuse_cold_s"} {
		fmt.Printf("  %-36s %8.2f\n", k, median(res[k]))
	}
	return nil
}

// freshWork checks that the tools a benchmark runs are installed, and
// empties its work directory.
func freshWork(c config, tools ...string) error {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found in PATH", t)
		}
	}
	if err := os.RemoveAll(c.work); err != nil {
		return err
	}
	return os.MkdirAll(c.work, 0o700)
}
