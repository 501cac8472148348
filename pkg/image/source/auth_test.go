package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func TestSanitizeAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		dropped, bad   bool
	}{
		{name: "empty", in: "", want: `{"auths":{}}`},
		{name: "auths kept", in: `{"auths":{"r.io":{"auth":"dTpw"}}}`, want: `{"auths":{"r.io":{"auth":"dTpw"}}}`},
		{name: "token kept", in: `{"auths":{"r.io":{"identitytoken":"tok"}}}`, want: `{"auths":{"r.io":{"identitytoken":"tok"}}}`},
		{name: "helper markers dropped", in: `{"auths":{"r.io":{}},"credsStore":"desktop"}`, want: `{"auths":{}}`, dropped: true},
		{name: "credHelpers dropped", in: `{"auths":{"a.io":{"auth":"eDp5"}},"credHelpers":{"r.io":"ecr-login"}}`, want: `{"auths":{"a.io":{"auth":"eDp5"}}}`, dropped: true},
		{name: "empty credHelpers", in: `{"auths":{},"credHelpers":{}}`, want: `{"auths":{}}`},
		{name: "other keys dropped", in: `{"auths":{},"HttpHeaders":{"X":"y"},"proxies":{}}`, want: `{"auths":{}}`},
		{name: "not JSON", in: `{"auths":`, bad: true},
		{name: "not an object", in: `[1]`, bad: true},
		{name: "auths wrong shape", in: `{"auths":{"r.io":"x"}}`, bad: true},
		{name: "too big", in: `{"auths":{},"x":"` + strings.Repeat("a", maxAuthJSON) + `"}`, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped, err := sanitizeAuth([]byte(tc.in))
			if tc.bad {
				if !errors.Is(err, image.ErrUnauthorized) {
					t.Fatalf("err = %v, want image.ErrUnauthorized", err)
				}
				return
			}
			if err != nil || string(got) != tc.want || dropped != tc.dropped {
				t.Errorf("got %s, %v, %v; want %s, %v", got, dropped, err, tc.want, tc.dropped)
			}
		})
	}
}
