package wire

import (
	"fmt"
	"strings"
)

// UnescapeFstab decodes fstab's octal escapes in a --container-mounts path
// (\040 a space, \011 a tab, \012 a newline, \134 a backslash, \072 a ':',
// \054 a ','; any \NNN from \001 to \377), as getmntent(3) and enroot read
// them. A backslash not followed by three octal digits stays as it is. A
// path with \000 (or a NUL) is an error: no path holds a NUL.
func UnescapeFstab(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("a NUL in %q", s)
	}
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := int(s[i+1]-'0')<<6 | int(s[i+2]-'0')<<3 | int(s[i+3]-'0')
			if v == 0 || v > 0o377 {
				return "", fmt.Errorf("bad escape %q in %q (want \\001 to \\377)", s[i:i+4], s)
			}
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
