package source

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// A user's auth.json reaches containers/image, which runs as root here,
// with its "auths" entries only. Left in, a "credHelpers" entry makes
// containers/image exec docker-credential-NAME as root with the daemon's
// environment (an installed cloud helper then hands the node's own
// credentials to the user); "credsStore" is ignored by containers/image
// today, and dropped so that it stays so. With SystemContext.AuthFilePath
// set, containers/image reads that file and no other: not root's
// $XDG_RUNTIME_DIR/containers/auth.json, /run/containers/0/auth.json,
// ~/.config/containers/auth.json, ~/.docker/config.json or ~/.dockercfg
// (pkg/docker/config getAuthFilePaths: the defaults are only searched
// when the path is not the caller's choice). registries.conf's
// credential-helpers, the one other source, is refused at Open.

// maxAuthJSON bounds the auth.json we parse: a few entries are a few KiB.
const maxAuthJSON = 1 << 20

// authEntry is the part of an "auths" entry containers/image reads.
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// sanitizeAuth returns a containers-auth.json(5) holding only the
// "auths" entries of the user's file b that carry credentials, and
// whether b named credential helpers, which are dropped. Empty b is an
// empty file ({"auths":{}}). Errors (not JSON, too large, auths of the
// wrong shape) wrap ErrUnauthorized.
func sanitizeAuth(b []byte) (clean []byte, droppedHelpers bool, err error) {
	if len(b) > maxAuthJSON {
		return nil, false, fmt.Errorf("%w: auth.json is larger than %d bytes", image.ErrUnauthorized, maxAuthJSON)
	}
	var top map[string]json.RawMessage
	if len(b) > 0 {
		if err := json.Unmarshal(b, &top); err != nil {
			return nil, false, fmt.Errorf("%w: auth.json is not a JSON object", image.ErrUnauthorized)
		}
	}
	for _, k := range []string{"credHelpers", "credsStore"} {
		if v, ok := top[k]; ok && !emptyJSON(v) {
			droppedHelpers = true
		}
	}
	auths := map[string]authEntry{}
	if raw, ok := top["auths"]; ok && !emptyJSON(raw) {
		var in map[string]authEntry
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, droppedHelpers, fmt.Errorf("%w: auth.json: \"auths\" is not an object of {\"auth\": ...} entries", image.ErrUnauthorized)
		}
		for k, v := range in {
			// Docker writes "host": {} for a registry whose secret is in
			// a helper: nothing to pass on.
			if k != "" && v != (authEntry{}) {
				auths[k] = v
			}
		}
	}
	clean, err = json.Marshal(struct {
		Auths map[string]authEntry `json:"auths"`
	}{auths})
	return clean, droppedHelpers, err
}

func emptyJSON(v json.RawMessage) bool {
	s := string(v)
	return s == "null" || s == "{}" || s == `""` || s == "[]"
}

// WriteAuth stores the sanitised form of a user's auth.json (nil:
// anonymous) in a 0600 file in TmpDir, for SysContext; remove deletes it. droppedHelpers says the user's file named credential
// helpers, which the daemon does not run.
func (rs *Resolver) WriteAuth(authJSON []byte) (path string, droppedHelpers bool, remove func(), err error) {
	clean, droppedHelpers, err := sanitizeAuth(authJSON)
	if err != nil {
		return "", droppedHelpers, nil, err
	}
	// Our copy of the secrets lives no longer than it takes to write it.
	defer clear(clean)
	f, err := os.CreateTemp(rs.o.TmpDir, "auth-*.json") // 0600
	if err != nil {
		return "", droppedHelpers, nil, err
	}
	_, werr := f.Write(clean)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", droppedHelpers, nil, werr
	}
	return f.Name(), droppedHelpers, func() { os.Remove(f.Name()) }, nil
}
