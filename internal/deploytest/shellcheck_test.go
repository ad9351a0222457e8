package deploytest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellScripts lists every shell script kept in the repository: *.sh files and
// files whose first line is a sh/bash shebang.
func shellScripts(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	skip := map[string]bool{".git": true, ".tools": true, "node_modules": true, ".terraform": true, "dist": true, "bin": true}
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip[d.Name()] || (d.Name() == "work" && filepath.Base(filepath.Dir(path)) == "bench") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if strings.HasSuffix(d.Name(), ".sh") || strings.HasSuffix(d.Name(), ".bash") {
			out = append(out, path)
			return nil
		}
		if filepath.Ext(d.Name()) != "" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		head := make([]byte, 64)
		n, _ := f.Read(head)
		first, _, _ := bytes.Cut(head[:n], []byte("\n"))
		if bytes.HasPrefix(first, []byte("#!")) && (bytes.Contains(first, []byte("sh")) && !bytes.Contains(first, []byte("python"))) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestShellcheck(t *testing.T) {
	scripts := shellScripts(t)
	if len(scripts) == 0 {
		t.Fatal("no shell scripts found; scripts/lint-terraform.sh at least should be there")
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skipf("shellcheck not installed (apt-get install shellcheck); %d scripts unchecked", len(scripts))
	}
	for _, s := range scripts {
		rel, _ := filepath.Rel(repoRoot(t), s)
		out, err := exec.Command(sc, "--severity=style", "--external-sources", s).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s: %v\n%s", rel, err, out)
		}
	}
}
