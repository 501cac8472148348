//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A writable root is the user's, as under enroot, without remap-root: they
// create files and directories anywhere (touch /newfile, mkdir /mymnt),
// also in the image's directories of other owners (_apt's 0700
// /var/lib/apt/lists/partial). On the host, everything of theirs in the
// writable layer is owned by their uid, in the root-only bundle: no file of
// root's or another user's, no setuid file but of their own uid; and the
// image below stays as it was. The layer is the container's own file
// system (writable_dir), mounted in the bundle (rw).
func TestWritableRootIsTheUsers(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	script := `set -e
touch /newfile; mkdir /mymnt; echo x >/etc/new.conf; echo y >>/etc/shadow; touch /var/lib/apt/lists/partial/f
cp /bin/ls /ls-suid; chmod 4755 /ls-suid; rm /etc/debian_version
stat -c %u / /newfile /mymnt /etc/new.conf /etc/shadow /var/lib/apt/lists/partial /usr/bin
touch /ready; sleep 3`
	job, done := stepInBackground(t, node, "e2e-wr", "--container-image="+cluster["MPI_IMAGE"], "--container-writable", "sh", "-c", script)
	bundle := bundleOf(t, node, "phpc-"+job+"-0")
	// What in the writable layer on the host is not the user's: only
	// overlayfs's whiteouts (character devices 0:0) and the daemon's
	// mount points (directories, empty files), none setuid or setgid;
	// and the user's setuid copy.
	var r result
	for i := 0; i < 100; i++ {
		r = onNode(t, node, "", `test -e "$1/rw/upper/ready" || exit 1
find "$1/rw/upper" \( -type c -a -uid 0 \) -prune -o ! -uid "$2" \( -perm /6000 -o -type f ! -empty -o ! -type d ! -type f \) -printf 'not the user'"'"'s: %U %m %p\n'
stat -c '%u %a' "$1/rw/upper/ls-suid"`, bundle, uid)
		if r.code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.stdout != uid+" 4755\n" {
		t.Errorf("the writable layer on the host holds more than the user's files (want only the user's setuid copy, %s 4755):\n%s", uid, r)
	}
	r = <-done
	mustSucceed(t, r)
	if want := strings.Repeat(uid+"\n", 7); r.stdout != want {
		t.Errorf("inside: %q, want the user's files, the user's writes:\n%s", r.stdout, r)
	}
	checkNothingLeft(t, node)
	// The image is unchanged for the next container.
	r = asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["MPI_IMAGE"], "sh", "-c", "test -e /newfile || test -e /ls-suid || echo clean; cat /etc/debian_version >/dev/null && echo kept")
	if r.stdout != "clean\nkept\n" {
		t.Errorf("the next container sees the last one's writes:\n%s", r)
	}
}

// A named container keeps the user's writes for the job's next step, and
// --container-save of a writable root that the user changed runs again as
// an image that is theirs in the same way (its files root's inside the
// squashfs, as the image's were).
func TestWritableRootNamedAndSaved(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	dir := userDir(t, "e2e-wr-save")
	saved := filepath.Join(dir, "changed.sqsh")
	script := `set -e
srun --container-image=` + cluster["SMALL_IMAGE"] + ` --container-name=wr sh -c 'mkdir -p /opt/tool; echo v1 >/opt/tool/version'
srun --container-name=wr --container-save=` + saved + ` sh -c 'cat /opt/tool/version; stat -c %u /opt/tool'
`
	r := asUser(t, "salloc", "-N1", "sh", "-c", script)
	mustSucceed(t, r)
	allocationEnded(t, r)
	if r.stdout != "v1\n"+uid+"\n" {
		t.Errorf("named container: %q, want the first step's write, the user's", r.stdout)
	}
	fi, err := os.Stat(saved)
	if err != nil || fileUID(fi) != uid {
		t.Fatalf("saved image: %v, %v (want the user's file)", fi, err)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+saved, "--container-writable", "sh", "-c", "cat /opt/tool/version; stat -c %u / /opt/tool /bin/busybox; touch /etc/more && echo wrote")
	mustSucceed(t, r)
	if want := "v1\n" + strings.Repeat(uid+"\n", 3) + "wrote\n"; r.stdout != want {
		t.Errorf("the saved image run again: %q, want %q", r.stdout, want)
	}
	// In the squashfs the image's files and the user's writes are root's.
	out := run(t, "unsquashfs", "-lln", saved, "/opt/tool/version", "/bin/busybox").stdout
	if !strings.Contains(out, " 0/0 ") || !strings.Contains(out, "/opt/tool/version") || strings.Contains(out, " "+uid+"/") {
		t.Errorf("owners in the saved squashfs (want root's):\n%s", out)
	}
}
