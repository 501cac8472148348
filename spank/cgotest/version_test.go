package cgotest

import (
	"strings"
	"testing"
)

// The plugin loads only in the Slurm release its headers were: another
// release (items and callbacks move between them) is refused with the fix.
func TestSlurmVersionCheck(t *testing.T) {
	t.Parallel()
	const built = 0x160508 // 22.05.8
	for _, tc := range []struct{ major, minor, want string }{
		{"22", "05", ""},
		{"22", "5", ""},
		{"24", "11", "built for Slurm 22.05 but runs in Slurm 24.11; rebuild it"},
		{"23", "05", "built for Slurm 22.05 but runs in Slurm 23.05"},
		{"22", "x", "couldn't tell this Slurm's release"},
		{"", "", "couldn't tell this Slurm's release"},
		{"999", "05", "couldn't tell this Slurm's release"},
	} {
		err := SlurmVersionCheck(tc.major, tc.minor, built)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s.%s refused: %v", tc.major, tc.minor, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "podman-hpc: ")):
			t.Errorf("%s.%s: %v, want %q", tc.major, tc.minor, err, tc.want)
		}
	}
}

// As the plugin is loaded, the running Slurm's libslurm interface number
// (slurm_api_version) tells its release: another one is refused by name.
func TestSlurmAPICheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		api, built uint32
		want       string
	}{
		{0x260000, 0x160508, ""}, // 22.05 in 22.05
		{0x2a0000, 0x180b05, ""}, // 24.11 in 24.11
		{0x2a0000, 0x160508, "built for Slurm 22.05 but runs in Slurm 24.11; rebuild it"},
		{0x260000, 0x180b05, "built for Slurm 24.11 but runs in Slurm 22.05; rebuild it"},
		{0x280000, 0x180b05, "built for Slurm 24.11 but runs in Slurm 23.11"},
		{0x630000, 0x180b05, "built for Slurm 24.11 but runs in a Slurm whose libslurm is interface 99; rebuild it"},
		{0x630000, 0x630000, ""}, // neither known: Slurm's own check decides
	} {
		err := SlurmAPICheck(tc.api, tc.built)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("api %#x, built %#x refused: %v", tc.api, tc.built, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "podman-hpc: ")):
			t.Errorf("api %#x, built %#x: %v, want %q", tc.api, tc.built, err, tc.want)
		}
	}
}
