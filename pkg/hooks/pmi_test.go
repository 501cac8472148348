package hooks

import (
	"context"
	"strings"
	"testing"
)

func TestPMIBindsStepDirsAndServerTmpdir(t *testing.T) {
	req := Request{Job: "42", Step: "3", UID: 1000, Node: "n1", HostRoot: "/", Env: map[string]string{"PMIX_SERVER_TMPDIR": "/var/spool/slurmd/pmix.42.3/"}}
	res, err := PMI{Dirs: []string{"/var/spool/slurmd/pmix.%j.%s", "/tmp/spmix_appdir_%u_%j.%s"}}.Apply(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range res.UserMounts {
		got = append(got, m.Source+">"+m.Destination)
	}
	want := "/tmp/spmix_appdir_1000_42.3>/tmp/spmix_appdir_1000_42.3 /var/spool/slurmd/pmix.42.3>/var/spool/slurmd/pmix.42.3"
	if strings.Join(got, " ") != want {
		t.Fatalf("mounts %q, want %q (the variable's directory once, cleaned)", got, want)
	}
}

func TestPMIRefusesServerTmpdirOverTheContainersOwnTrees(t *testing.T) {
	for _, dir := range []string{"/dev", "/dev/shm", "/proc/1", "/sys/", "/.podman-hpc", "/.podman-hpc/x", "//dev/../dev/pts"} {
		req := Request{Job: "1", Step: "0", HostRoot: "/", Env: map[string]string{"PMIX_SERVER_TMPDIR": dir}}
		_, err := PMI{}.Apply(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), "PMIX_SERVER_TMPDIR="+dir) {
			t.Errorf("PMIX_SERVER_TMPDIR=%s: err %v, want a refusal naming it", dir, err)
		}
	}
	for _, dir := range []string{"/devices", "/tmp/dev", "/proceed", ""} {
		req := Request{Job: "1", Step: "0", HostRoot: "/", Env: map[string]string{"PMIX_SERVER_TMPDIR": dir}}
		if _, err := (PMI{}).Apply(context.Background(), req); err != nil {
			t.Errorf("PMIX_SERVER_TMPDIR=%q: %v, want it accepted", dir, err)
		}
	}
}
