package main

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

// mergePasswd returns the image's passwd with the user's entry added, in
// place of any entry with the same name or uid (the host's identity wins:
// files on mounts belong to the host's uid).
func mergePasswd(image io.Reader, a account) []byte {
	var out bytes.Buffer
	uid := strconv.FormatUint(uint64(a.UID), 10)
	eachLine(image, func(line string) {
		f := strings.SplitN(line, ":", 4)
		if len(f) >= 3 && (f[0] == a.Name || f[2] == uid) {
			return
		}
		out.WriteString(line + "\n")
	})
	fmt.Fprintf(&out, "%s:x:%d:%d::%s:%s\n", a.Name, a.UID, a.GID, a.Home, a.Shell)
	return out.Bytes()
}

// mergeGroup returns the image's group file with the user's primary and
// supplementary groups present (by gid), and the user listed as a member of
// the supplementary ones.
func mergeGroup(image io.Reader, a account) []byte {
	want := map[uint32]string{a.GID: a.GroupName}
	for gid, name := range a.Groups {
		want[gid] = name
	}
	var out bytes.Buffer
	eachLine(image, func(line string) {
		f := strings.SplitN(line, ":", 4)
		if len(f) == 4 {
			if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				if _, ok := want[uint32(gid)]; ok {
					return // replaced below by the host's entry
				}
			}
			if isGroupName(want, f[0]) {
				return
			}
		}
		out.WriteString(line + "\n")
	})
	for _, gid := range slices.Sorted(maps.Keys(want)) {
		members := ""
		if gid != a.GID {
			members = a.Name
		}
		fmt.Fprintf(&out, "%s:x:%d:%s\n", want[gid], gid, members)
	}
	return out.Bytes()
}

func isGroupName(groups map[uint32]string, name string) bool {
	for _, n := range groups {
		if n == name {
			return true
		}
	}
	return false
}

func eachLine(r io.Reader, fn func(string)) {
	if r == nil {
		return
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := sc.Text(); strings.TrimSpace(line) != "" {
			fn(line)
		}
	}
}
