package workdir

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func loadMountInfo(t *testing.T, name string) []MountInfoEntry {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ParseMountInfo(f)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return entries
}

// The Fargate and compose layouts that cannot be mounted here are classified from their
// mountinfo: this is what the start-up log line and the auto-shared decision rest on.
func TestDetectInRecordedLayouts(t *testing.T) {
	cases := []struct {
		file, path string
		kind       Kind
		fstype     string
		source     string
		mountPoint string
		readOnly   bool
	}{
		{"fargate-overlay-root", "/azp/agent/_work", KindOverlay, "overlay", "overlay", "/", false},
		{"fargate-overlay-root", "/dev/shm/x", KindTmpfs, "tmpfs", "shm", "/dev/shm", false},
		{"fargate-bind", "/azp/agent/_work/1/s", KindBind, "ext4", "/dev/nvme1n1", "/azp/agent/_work", false},
		{"fargate-bind", "/azp/agent/_diag", KindOverlay, "overlay", "overlay", "/", false},
		{"fargate-ebs-xfs", "/azp/agent/_work", KindBlock, "xfs", "/dev/nvme2n1", "/azp/agent/_work", false},
		{"fargate-efs-tls", "/azp/agent/_work/slot-0", KindNFS, "nfs4", "127.0.0.1:/", "/azp/agent/_work", false},
		{"fargate-efs-plain", "/mnt/efs/work", KindNFS, "nfs4", "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/agents", "/mnt/efs", false},
		// A prefix that is not a path component boundary is not under the mount.
		{"fargate-efs-plain", "/mnt/efs2/work", KindOverlay, "overlay", "overlay", "/", false},
		{"compose-bind", "/azp/agent/_work", KindBind, "ext4", "/dev/sda1", "/azp/agent/_work", false},
		{"compose-bind-ro", "/azp/agent/_work/x", KindBind, "ext4", "/dev/sda1", "/azp/agent/_work", true},
		{"compose-tmpfs", "/azp/agent/_work", KindTmpfs, "tmpfs", "tmpfs", "/azp/agent/_work", false},
		{"stacked", "/azp/agent/_work", KindTmpfs, "tmpfs", "tmpfs", "/azp/agent/_work", false},
		{"escaped", "/mnt/my disk/work", KindBlock, "ext4", "/dev/sdb", "/mnt/my disk", false},
		{"fargate-overlay-root", "/sys/fs/cgroup/x", KindOther, "cgroup2", "cgroup", "/sys/fs/cgroup", true},
	}
	for _, c := range cases {
		t.Run(c.file+c.path, func(t *testing.T) {
			m, ok := DetectIn(loadMountInfo(t, c.file), c.path)
			if !ok {
				t.Fatalf("no mount found for %s", c.path)
			}
			want := Mount{Kind: c.kind, FSType: c.fstype, Source: c.source, MountPoint: c.mountPoint, ReadOnly: c.readOnly}
			m.Root = ""
			if m != want {
				t.Errorf("got %+v\nwant %+v", m, want)
			}
		})
	}
}

func TestParseMountInfoFields(t *testing.T) {
	entries := loadMountInfo(t, "compose-bind")
	e := entries[len(entries)-1]
	if e.ID != 1063 || e.ParentID != 1046 || e.Major != 8 || e.Minor != 1 {
		t.Errorf("ids: %+v", e)
	}
	if e.Root != "/home/ci/azp work" {
		t.Errorf("root %q: the \\040 escape must decode to a space", e.Root)
	}
	if strings.Join(e.SuperOptions, ",") != "rw,errors=remount-ro" || strings.Join(e.MountOptions, ",") != "rw,relatime" {
		t.Errorf("options: %+v", e)
	}
	root := loadMountInfo(t, "fargate-overlay-root")[0]
	if len(root.Optional) != 1 || root.Optional[0] != "master:354" {
		t.Errorf("optional fields: %q", root.Optional)
	}
}

func TestParseMountInfoRejectsMalformed(t *testing.T) {
	for _, line := range []string{
		"1 2 0:1 / /",                           // too short
		"1 2 0:1 / / rw shared:1 ext4 /dev/sda", // no separator
		"x 2 0:1 / / rw - ext4 /dev/sda rw",     // bad id
		"1 2 01 / / rw - ext4 /dev/sda rw",      // bad major:minor
	} {
		if _, err := ParseMountInfo(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("accepted %q", line)
		} else if !strings.Contains(err.Error(), "line 1") {
			t.Errorf("error does not name the line: %v", err)
		}
	}
}

func TestParseOwnMountInfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self/mountinfo")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no mountinfo: %v", err)
	}
	defer f.Close()
	entries, err := ParseMountInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := DetectIn(entries, "/"); !ok {
		t.Fatal("no mount for /")
	}
}
