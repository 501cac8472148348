package node

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// account is the job user as the container's /etc/passwd and /etc/group
// must show them: tools such as ssh, id and MPI launchers look the user up.
type account struct {
	Name, Home, Shell string
	UID, GID          uint32
	GroupName         string
	Groups            map[uint32]string // supplementary groups: gid -> name
}

// entry is one line of a passwd or group file: name and numeric id.
type entry struct{ name, id, line string }

func parseEntries(r io.Reader) []entry {
	var out []entry
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		f := strings.SplitN(line, ":", 4)
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") || len(f) < 3 {
			continue
		}
		out = append(out, entry{name: f[0], id: f[2], line: line})
	}
	return out
}

// mergeEntries keeps the image's entries, then adds the host's entries whose
// name and id the image lacks (so that Slurm's client finds SlurmUser, and
// `ls -l` names the owners of mounted files), dropping both sides' entries
// that clash with ours; ours come last.
func mergeEntries(image, host io.Reader, ours []entry) []byte {
	clash := func(e entry) bool {
		for _, o := range ours {
			if e.name == o.name || e.id == o.id {
				return true
			}
		}
		return false
	}
	var out bytes.Buffer
	names, ids := map[string]bool{}, map[string]bool{}
	for _, e := range parseEntries(image) {
		if clash(e) {
			continue
		}
		names[e.name], ids[e.id] = true, true
		out.WriteString(e.line + "\n")
	}
	for _, e := range parseEntries(host) {
		if clash(e) || names[e.name] || ids[e.id] {
			continue
		}
		out.WriteString(e.line + "\n")
	}
	for _, o := range ours {
		out.WriteString(o.line + "\n")
	}
	return out.Bytes()
}

// mergePasswd returns the container's passwd: the image's, the host's
// missing entries, and the job user (the host's identity wins: files on
// mounts belong to the host's uid).
func mergePasswd(image, host io.Reader, a account) []byte {
	uid := strconv.FormatUint(uint64(a.UID), 10)
	line := fmt.Sprintf("%s:x:%d:%d::%s:%s", a.Name, a.UID, a.GID, a.Home, a.Shell)
	return mergeEntries(image, host, []entry{{a.Name, uid, line}})
}

// mergeGroup returns the container's group file: the user's primary and
// supplementary groups (by the host's gid and name, the user a member of the
// supplementary ones), and the rest as for passwd.
func mergeGroup(image, host io.Reader, a account) []byte {
	want := map[uint32]string{a.GID: a.GroupName}
	maps.Copy(want, a.Groups)
	var ours []entry
	for _, gid := range slices.Sorted(maps.Keys(want)) {
		members := ""
		if gid != a.GID {
			members = a.Name
		}
		id := strconv.FormatUint(uint64(gid), 10)
		ours = append(ours, entry{want[gid], id, fmt.Sprintf("%s:x:%d:%s", want[gid], gid, members)})
	}
	return mergeEntries(image, host, ours)
}
