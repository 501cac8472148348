package node

import (
	"strings"
	"testing"
)

func TestMergePasswd(t *testing.T) {
	t.Parallel()
	image := "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nold:x:1234:1234::/x:/bin/sh\n"
	host := "root:x:0:0:host root:/root:/bin/sh\nslurm:x:64030:64030::/nonexistent:/usr/sbin/nologin\ncarol:x:1000:1000::/home/carol:/bin/sh\nbob:x:1234:100::/home/bob:/bin/bash\n"
	a := account{Name: "bob", UID: 1234, GID: 100, Home: "/home/bob", Shell: "/bin/sh"}
	got := string(mergePasswd(strings.NewReader(image), strings.NewReader(host), a))
	want := "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n" +
		"slurm:x:64030:64030::/nonexistent:/usr/sbin/nologin\n" +
		"bob:x:1234:100::/home/bob:/bin/sh\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := string(mergePasswd(nil, nil, a)); got != "bob:x:1234:100::/home/bob:/bin/sh\n" {
		t.Errorf("no passwd anywhere: %q", got)
	}
}

func TestMergeGroup(t *testing.T) {
	t.Parallel()
	image := "root:x:0:\nusers:x:100:\nvideo:x:44:\nbob:x:555:\n"
	host := "slurm:x:64030:\nvideo:x:44:alice\n"
	a := account{Name: "bob", GID: 1234, GroupName: "bob", Groups: map[uint32]string{44: "video", 2000: "proj"}}
	got := string(mergeGroup(strings.NewReader(image), strings.NewReader(host), a))
	want := "root:x:0:\nusers:x:100:\nslurm:x:64030:\nvideo:x:44:bob\nbob:x:1234:\nproj:x:2000:bob\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
