package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
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

// A user the daemon's /etc/passwd lacks (LDAP, SSSD) is the account the
// plugin sent: name, home, shell, and the job's groups for permission
// checks and by name for /etc/group.
func TestLookupAccountFromRequest(t *testing.T) {
	req := &wire.ContainerRequest{UID: 7777, GID: 7777, Account: &wire.Account{Name: "ldapuser", Home: "/home/ldapuser",
		Groups: []wire.Group{{GID: 7777, Name: "ldapgrp"}, {GID: 7778, Name: "proj"}, {GID: 7779}, {GID: 7777, Name: "dup"}}}}
	acct, cred, err := lookupAccount(req)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Name != "ldapuser" || acct.Home != "/home/ldapuser" || acct.Shell != "/bin/sh" || acct.GroupName != "ldapgrp" ||
		!reflect.DeepEqual(acct.Groups, map[uint32]string{7778: "proj"}) {
		t.Errorf("account %+v", acct)
	}
	if !reflect.DeepEqual(cred, credential{UID: 7777, GID: 7777, Groups: []uint32{7778, 7779}}) {
		t.Errorf("credential %+v", cred)
	}
	if _, _, err := lookupAccount(&wire.ContainerRequest{UID: 4294967000, GID: 1}); err == nil || !strings.Contains(err.Error(), "NSS") {
		t.Errorf("an unknown uid without an account: %v", err)
	}
}
