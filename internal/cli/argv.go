package cli

import (
	"os"
	"strings"
	"unsafe"
)

// ownValues copies flag values out of the process's argument memory, which eraseFromArgv is
// about to overwrite: the flag package hands out substrings of os.Args.
func ownValues(given map[string]string) map[string]string {
	for k, v := range given {
		given[k] = strings.Clone(v)
	}
	return given
}

// eraseFromArgv overwrites every secret value given on the command line (--token,
// --client-secret, a proxy password) in the process's own argument memory. /proc/<pid>/cmdline
// reads that memory and is readable by every process of the same user, jobs included, even when
// the entrypoint is non-dumpable. os.Args points at that memory (the runtime does not copy it).
func eraseFromArgv(secrets []string) {
	for _, arg := range os.Args {
		if arg == "" {
			continue
		}
		mem := unsafe.Slice(unsafe.StringData(arg), len(arg))
		for _, s := range secrets {
			if s == "" {
				continue
			}
			for from := 0; ; {
				i := strings.Index(unsafe.String(&mem[0], len(mem))[from:], s)
				if i < 0 {
					break
				}
				for j := from + i; j < from+i+len(s); j++ {
					mem[j] = '*'
				}
				from += i + len(s)
			}
		}
	}
}
