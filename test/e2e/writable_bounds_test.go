//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// availOf is what the file system of dir has free on node, in bytes (-1:
// df failed).
func availOf(t *testing.T, node, dir string) int64 {
	t.Helper()
	r := onNode(t, node, "", `df -B1 --output=avail "$1" | tail -1`, dir)
	n, err := strconv.ParseInt(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// A writable container's writes stop at writable_size (the test cluster's
// 256M) with ENOSPC, with or without remap-root, and srun's output then
// says why; state_dir's file system (the tmpfs that slurmd needs) lost
// nothing to them, and another container on the node writes on. When the
// step ends, its file system is gone.
func TestWritableFullGetsENOSPC(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	state := cluster["LAB"] + "/nodelocal/state"
	for _, mode := range []string{"--no-container-remap-root", "--container-remap-root"} {
		t.Run(mode, func(t *testing.T) {
			before := availOf(t, node, state)
			if before < 0 {
				t.Fatalf("df %s failed", state)
			}
			script := `dd if=/dev/zero of=/big bs=1M count=400 2>&1 | grep -o 'No space left on device'; touch /ready 2>/dev/null; sleep 4`
			job, done := stepInBackground(t, node, "e2e-wfull", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable", mode, "sh", "-c", script)
			bundle := bundleOf(t, node, "phpc-"+job+"-0")
			// Its own file system (rw, in the bundle) fills up.
			full := false
			for i := 0; i < 100 && !full; i++ {
				a := availOf(t, node, bundle+"/rw")
				full = a >= 0 && a < 4<<20
				time.Sleep(100 * time.Millisecond)
			}
			if !full {
				t.Fatalf("the container's file system did not fill")
			}
			during := availOf(t, node, state)
			if lost := before - during; lost > 8<<20 {
				t.Errorf("state_dir's file system lost %d bytes while a container filled its writable root", lost)
			}
			// Another writable container on the node is not affected.
			r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-writable",
				"sh", "-c", "dd if=/dev/zero of=/f bs=1M count=20 2>/dev/null && echo wrote")
			if r.stdout != "wrote\n" {
				t.Errorf("another container beside the full one: %s", r)
			}
			r = <-done
			if r.stdout != "No space left on device\n" {
				t.Errorf("dd past writable_size: %q, want ENOSPC:\n%s", r.stdout, r)
			}
			if !strings.Contains(r.stderr, "podman-hpc: the container's writable root on "+node+" is full (256M, the node's writable_size): writes past it failed with \"No space left on device\"") {
				t.Errorf("srun's output does not say why:\n%s", r)
			}
			checkNothingLeft(t, node)
		})
	}
}

// A user's writable containers on a node, named ones included, hold at
// most writable_max_per_user: one more is refused with the bound, theirs,
// and how to free it; once their job has ended, nothing of them is left
// and a new one starts.
func TestWritablePerUserBound(t *testing.T) {
	withDaemonConfig(t, "writable_size = 64M\nwritable_max_per_user = 128M")
	node := nodes()[0]
	img := cluster["SMALL_IMAGE"]
	script := `srun --container-image=` + img + ` --container-name=one true
srun --container-image=` + img + ` --container-name=two sh -c 'echo kept >/f'
srun --container-image=` + img + ` --container-writable true && echo third ran
srun --container-image=` + img + ` --container-readonly true && echo read-only ran
srun --container-name=two cat /f
`
	r := asUser(t, "salloc", "-N1", "-w", node, "sh", "-c", script)
	allocationEnded(t, r)
	if r.stdout != "read-only ran\nkept\n" {
		t.Errorf("want the third writable container refused, a read-only one and the named ones working:\n%s", r)
	}
	for _, want := range []string{
		"--container-writable: your writable containers on " + node + " hold 128M, and a new one takes 64M: more than the 128M a user may have there (writable_max_per_user)",
		"end a job that holds one (scancel JOBID) or remove a parked one (podman-hpcd rm --name NAME) first",
		"Yours: one (job ", "two (job ",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, r)
		}
	}
	checkNothingLeft(t, node)
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-writable", "true"))
}
