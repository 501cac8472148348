package node

import (
	"path"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// remappedHome is the home inside under --container-remap-root: root's.
const remappedHome = "/root"

// homeMount is --container-mount-home's bind (ok false: none): the home the
// job runs with ($HOME, which the plugin sends; else the account's), at its
// own path, or at /root under --container-remap-root, as enroot's home hook
// binds it. The source is opened as the user (stageAsUser), like any of
// their mounts: $HOME reaches only what they may read.
func homeMount(req *wire.ContainerRequest, acct account) (m stagedMount, ok bool, err error) {
	if !req.MountHome {
		return stagedMount{}, false, nil
	}
	home := firstNonEmpty(req.Env["HOME"], acct.Home)
	if home == "" {
		return stagedMount{}, false, nil
	}
	if !path.IsAbs(home) {
		return stagedMount{}, false, wire.OptionErrorf("--container-mount-home", "$HOME %q is not an absolute path; set HOME, or use --no-container-mount-home", home)
	}
	dst := home
	if req.RemapRoot {
		dst = remappedHome
	}
	if d := path.Clean(dst); d == "/" || wire.InReserved(d) {
		return stagedMount{}, false, wire.OptionErrorf("--container-mount-home", "$HOME %q: / and %s are podman-hpc's own; set HOME to your home, or use --no-container-mount-home", home, wire.ReservedDir)
	}
	return stagedMount{src: home, dst: dst, option: "--container-mount-home"}, true, nil
}

// withHome sets HOME for the tasks to the bound home's path inside, when
// the container binds one: the image's HOME would name another directory.
func withHome(env []string, req *wire.ContainerRequest, acct account) []string {
	m, ok, err := homeMount(req, acct)
	if !ok || err != nil {
		return env
	}
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, "HOME=") {
			out = append(out, e)
		}
	}
	return append(out, "HOME="+m.dst)
}
