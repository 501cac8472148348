package store

import (
	"os/user"
	"strconv"

	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// credential is who the user's paths are read as: their groups as given,
// or looked up.
func (o PullOptions) credential() source.Credential {
	c := source.Credential{UID: o.UID, GID: o.GID, Groups: o.Groups}
	if c.Groups == nil && o.UID != 0 {
		// Best effort: /etc/group only without cgo. Slurm knows the job's
		// groups; the daemon should pass them in PullOptions.Groups.
		if u, err := user.LookupId(strconv.FormatUint(uint64(o.UID), 10)); err == nil {
			if ids, err := u.GroupIds(); err == nil {
				for _, s := range ids {
					if g, err := strconv.ParseUint(s, 10, 32); err == nil {
						c.Groups = append(c.Groups, uint32(g))
					}
				}
			}
		}
	}
	return c
}
