package agentpkg

import (
	"strconv"
	"strings"
)

// Compare orders agent versions such as "4.261.0": -1 if a < b, 0 if equal, +1 if a > b.
// Components compare numerically ("4.10.0" > "4.9.0"); missing components count as 0; a leading
// "v" is ignored; a non-numeric component compares as text after numeric ones.
func Compare(a, b string) int {
	as := strings.Split(strings.TrimPrefix(strings.TrimSpace(a), "v"), ".")
	bs := strings.Split(strings.TrimPrefix(strings.TrimSpace(b), "v"), ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		x, y := "0", "0"
		if i < len(as) {
			x = as[i]
		}
		if i < len(bs) {
			y = bs[i]
		}
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				if xn < yn {
					return -1
				}
				return 1
			}
		case xerr == nil:
			return -1
		case yerr == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return 0
}

// validVersion accepts what may safely appear in a file name and a URL path.
func validVersion(v string) bool {
	if v == "" || len(v) > 64 || v == "." || v == ".." {
		return false
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '_' || c == '+') {
			return false
		}
	}
	return true
}

// normHash makes hashes comparable the way the agent does (IOUtil/StringUtil.AreHashesEqual):
// case and dashes do not matter.
func normHash(h string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(h), "-", ""))
}
