//go:build linux

package workdir

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

const testUID = 4321

func boolp(b bool) *bool { return &b }

func wantCode(t *testing.T, err error, code int, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want exit code %d", code)
	}
	if got := exit.Code(err); got != code {
		t.Errorf("exit code %d, want %d: %v", got, code, err)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, err)
		}
	}
}

func hasWarning(l *Lease, sub string) bool {
	for _, w := range l.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// --- detection on real filesystems, each in a private mount namespace ---

func TestDetectTmpfs(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	mnt := mountTmpfs(t, "1m")
	m, err := Detect(filepath.Join(mnt, "work", "not-yet")) // judged by its nearest existing ancestor
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindTmpfs || m.FSType != "tmpfs" || m.MountPoint != mnt || m.ReadOnly {
		t.Errorf("got %+v", m)
	}
}

func TestDetectLoopExt4(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed (Debian package e2fsprogs)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "ebs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mount(t, mnt, "-o", "loop", img)

	m, err := Detect(filepath.Join(mnt, "work"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindBlock || m.FSType != "ext4" || !strings.HasPrefix(m.Source, "/dev/loop") || m.MountPoint != mnt {
		t.Errorf("block volume: got %+v", m)
	}

	// A directory of that filesystem bind-mounted elsewhere is a bind mount (task storage).
	sub := filepath.Join(mnt, "sub")
	os.Mkdir(sub, 0o755)
	bind := filepath.Join(dir, "bind")
	os.Mkdir(bind, 0o755)
	mount(t, bind, "--bind", sub)
	m, err = Detect(bind)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindBind || m.FSType != "ext4" || m.Root != "/sub" || m.MountPoint != bind {
		t.Errorf("bind mount: got %+v", m)
	}
}

func TestDetectBindOfHostDirectory(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	dir := t.TempDir()
	base, err := Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	os.Mkdir(src, 0o755)
	os.Mkdir(dst, 0o755)
	mount(t, dst, "--bind", src)
	m, err := Detect(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := KindBind
	if base.Kind == KindTmpfs || base.Kind == KindOverlay || base.Kind == KindNFS {
		want = base.Kind // the filesystem type decides for these, bind or not
	}
	if m.Kind != want || m.MountPoint != dst {
		t.Errorf("bind of %s (%s): got %+v, want kind %s", src, base, m, want)
	}
}

// --- access and space ---

func TestPrepareReadOnlyBindMount(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	os.Mkdir(filepath.Join(ro, "existing"), 0o755)
	mount(t, ro, "--bind", ro)
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", ro).CombinedOutput(); err != nil {
		t.Skipf("remount read-only not permitted: %v: %s", err, out)
	}
	for _, root := range []string{ro, filepath.Join(ro, "existing"), filepath.Join(ro, "missing", "work")} {
		_, err := Prepare(context.Background(), Options{Root: root, UID: -1, GID: -1})
		wantCode(t, err, exit.Usage, root, "read-only")
	}
	wantCode(t, PrepareTools(filepath.Join(ro, "tools"), -1, -1), exit.Usage, "AZP_TOOLS_DIR", "read-only")
	f, err := Check(Options{Root: ro, UID: -1, GID: -1})
	wantCode(t, err, exit.Usage, "read-only")
	if f[len(f)-1].Level != LevelError {
		t.Errorf("check findings: %+v", f)
	}
}

func TestPrepareFullDisk(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	mnt := mountTmpfs(t, "256k")
	fill, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := fill.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	fill.Close()
	_, err = Prepare(context.Background(), Options{Root: mnt, UID: -1, GID: -1})
	wantCode(t, err, exit.Failure, mnt, "full")
	_, err = Check(Options{Root: mnt, UID: -1, GID: -1})
	wantCode(t, err, exit.Failure, "full")
}

func TestPrepareLowSpaceWarns(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	mnt := mountTmpfs(t, "4m")
	var logs bytes.Buffer
	l, err := Prepare(context.Background(), Options{
		Root: filepath.Join(mnt, "work"), MinFree: DefaultMinFree, UID: -1, GID: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Mount.Kind != KindTmpfs || l.Shared || l.Slot != -1 || l.Dir != filepath.Join(mnt, "work") {
		t.Errorf("lease %+v", l)
	}
	if !hasWarning(l, "less than AZP_WORK_MIN_FREE 2.0 GiB") {
		t.Errorf("no low-space warning: %q", l.Warnings)
	}
	// One start-up line describes the storage; warnings follow it.
	if n := strings.Count(logs.String(), `msg="work directory"`); n != 1 {
		t.Errorf("want one storage log line, got %d:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "storage=tmpfs") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log:\n%s", logs.String())
	}
	// The same threshold disabled: no warning.
	l2, err := Prepare(context.Background(), Options{Root: filepath.Join(mnt, "work"), UID: -1, GID: -1})
	if err != nil || len(l2.Warnings) != 0 {
		t.Errorf("MinFree 0: %v %q", err, l2.Warnings)
	}
}

// An entrypoint that does not run as root (ECS `user`) on a root-owned volume: a clear
// configuration error, found by a real write from a process of that user.
func TestPrepareUnwritableForNonRoot(t *testing.T) {
	requireRoot(t)
	// The helper must be able to execute the test binary and reach the directory.
	base, err := os.MkdirTemp("", "workdir-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	bin := filepath.Join(base, "workdir.test")
	copyFile(t, os.Args[0], bin, 0o755)
	vol := filepath.Join(base, "vol")
	os.Mkdir(vol, 0o755) // root-owned 0755, like a Fargate bind volume without an image VOLUME

	for _, root := range []string{vol, filepath.Join(vol, "work")} {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"=prepare", envRoot+"="+root, envUID+"=-1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testUID}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v: %s", err, out)
		}
		s := string(out)
		if !strings.HasPrefix(s, "exit 2 ") || !strings.Contains(s, "permission denied") || !strings.Contains(s, root) {
			t.Errorf("root %s: %s", root, s)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareConfigErrors(t *testing.T) {
	_, err := Prepare(context.Background(), Options{Root: "_work", UID: -1, GID: -1})
	wantCode(t, err, exit.Usage, "AZP_WORK", "_work", "absolute")
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	_, err = Prepare(context.Background(), Options{Root: file, UID: -1, GID: -1})
	wantCode(t, err, exit.Usage, file, "not a directory")
	_, err = Prepare(context.Background(), Options{Root: filepath.Join(file, "work"), UID: -1, GID: -1})
	wantCode(t, err, exit.Usage, "not a directory")
	wantCode(t, PrepareTools("tools", -1, -1), exit.Usage, "AZP_TOOLS_DIR")
}

// --- ownership ---

// Missing directories are created for the run-as user; existing ones are left alone, except the
// top of the work directory, whose owner (and only whose owner) is fixed. Foreign-owned trees
// below it are reported, not chowned.
func TestPrepareOwnership(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	pre := filepath.Join(base, "pre") // exists, root-owned
	os.Mkdir(pre, 0o755)
	root := filepath.Join(pre, "a", "work")
	l, err := Prepare(context.Background(), Options{Root: root, UID: testUID, GID: testUID + 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(pre, "a"), root} {
		if u, g := owner(t, p); u != testUID || g != testUID+1 {
			t.Errorf("%s owned by %d:%d, want created for %d:%d", p, u, g, testUID, testUID+1)
		}
	}
	if u, _ := owner(t, pre); u != 0 {
		t.Errorf("pre-existing parent %s was chowned to %d", pre, u)
	}
	if len(l.Warnings) != 0 {
		t.Errorf("warnings: %q", l.Warnings)
	}

	// An existing root-owned work directory with an old checkout from another user.
	root2 := filepath.Join(base, "work2")
	checkout := filepath.Join(root2, "1", "s")
	os.MkdirAll(filepath.Join(checkout, ".git"), 0o755)
	own := filepath.Join(root2, "2", "s")
	os.MkdirAll(own, 0o755)
	os.Chown(filepath.Join(root2, "2"), testUID, testUID)
	os.Chown(own, testUID, testUID)
	os.Chown(filepath.Join(root2, "1"), testUID, testUID) // 1 is ours, 1/s is not
	l2, err := Prepare(context.Background(), Options{Root: root2, UID: testUID, GID: testUID})
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, root2); u != testUID {
		t.Errorf("top directory not given to the agent: uid %d", u)
	}
	if u, _ := owner(t, checkout); u != 0 {
		t.Errorf("%s was chowned (recursive chown is forbidden)", checkout)
	}
	if u, _ := owner(t, filepath.Join(checkout, ".git")); u != 0 {
		t.Errorf("checkout contents were chowned")
	}
	if !hasWarning(l2, checkout+" (uid 0)") || !hasWarning(l2, "dubious ownership") || !hasWarning(l2, "chown -R 4321:4321") {
		t.Errorf("foreign checkout not reported with path and fix: %q", l2.Warnings)
	}
	if hasWarning(l2, own) {
		t.Errorf("own checkout reported: %q", l2.Warnings)
	}
	f, err := Check(Options{Root: root2, UID: testUID, GID: testUID})
	if err != nil {
		t.Fatal(err)
	}
	if !findingMentions(f, LevelWarn, checkout) {
		t.Errorf("check does not report %s: %+v", checkout, f)
	}
}

func findingMentions(fs []Finding, level Level, sub string) bool {
	for _, f := range fs {
		if f.Level == level && (strings.Contains(f.Message, sub) || strings.Contains(f.Path, sub)) {
			return true
		}
	}
	return false
}

func TestPrepareTools(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	dir := filepath.Join(base, "efs", "tools")
	if err := PrepareTools(dir, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "efs"), dir} {
		if u, g := owner(t, p); u != testUID || g != testUID {
			t.Errorf("%s owned by %d:%d", p, u, g)
		}
	}
	// Existing, foreign-owned top directory: its owner is fixed, its contents are not touched.
	inner := filepath.Join(dir, "node", "20.0.0")
	os.MkdirAll(inner, 0o755)
	os.Chown(dir, 0, 0)
	if err := PrepareTools(dir, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, dir); u != testUID {
		t.Errorf("top not fixed")
	}
	if u, _ := owner(t, inner); u != 0 {
		t.Errorf("contents chowned")
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	wantCode(t, PrepareTools(file, -1, -1), exit.Usage, file, "not a directory")
}

// --- slots: separate processes, real OFD locks ---

// Two live holders get different slots; a clean release leaves a warm slot; a SIGKILLed holder's
// slot is leased again; newcomers take the lowest warm slot before making a new one. `check`
// sees holders and the record a killed holder left behind.
func TestSlotsAcrossProcesses(t *testing.T) {
	root := t.TempDir()

	a := startHolder(t, root, "agent-a")
	if n := a.leased(); n != 0 {
		t.Fatalf("first holder got slot %d, want 0", n)
	}
	b := startHolder(t, root, "agent-b")
	if n := b.leased(); n != 1 {
		t.Fatalf("second holder got slot %d, want 1 (slot 0 is held)", n)
	}
	if a.dir != filepath.Join(root, "slot-0") || b.dir != filepath.Join(root, "slot-1") {
		t.Errorf("dirs %s %s", a.dir, b.dir)
	}
	// The lock is a POSIX record lock: a classic fcntl lock from another process conflicts with
	// it, which is what keeps it right over NFS, where flock() is emulated with the same locks.
	lf, err := os.OpenFile(filepath.Join(root, "slot-0.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(lf.Fd(), unix.F_SETLK, &lk); err == nil {
		t.Error("a classic fcntl lock was granted on a held slot")
	}
	lf.Close()

	f, err := Check(Options{Root: root, Shared: boolp(true), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !findingMentions(f, LevelInfo, "held by agent agent-a, task task-agent-a") || !findingMentions(f, LevelInfo, "held by agent agent-b") {
		t.Errorf("check does not show holders: %+v", f)
	}

	b.releaseAndExit() // slot-1: free and warm, record cleared
	a.sigkill()        // slot-0: free, its record left behind

	f, err = Check(Options{Root: root, Shared: boolp(true), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !findingMentions(f, LevelInfo, "last holder ended without releasing it: agent agent-a") {
		t.Errorf("check does not show the killed holder's slot as free: %+v", f)
	}
	if !findingMentions(f, LevelInfo, "free (warm)") {
		t.Errorf("%+v", f)
	}

	c := startHolder(t, root, "agent-c")
	if n := c.leased(); n != 0 {
		t.Fatalf("after SIGKILL of slot 0's holder a newcomer got slot %d, want 0", n)
	}
	d := startHolder(t, root, "agent-d")
	if n := d.leased(); n != 1 {
		t.Fatalf("third process got slot %d, want the warm slot 1", n)
	}
	if _, err := os.Stat(filepath.Join(root, "slot-2")); !os.IsNotExist(err) {
		t.Errorf("a new slot was made although warm ones were free: %v", err)
	}
	rec, _ := os.ReadFile(filepath.Join(root, "slot-0.lock"))
	if !strings.Contains(string(rec), `"agent":"agent-c"`) || !strings.Contains(string(rec), `"pid":`+strconv.Itoa(c.cmd.Process.Pid)) {
		t.Errorf("slot-0 record %s", rec)
	}
}

// Holders that start at the same moment race for the same new slot numbers; the lock settles
// every race, so all of them end up in different slots.
func TestSlotsConcurrentStart(t *testing.T) {
	root := t.TempDir()
	const n = 6
	var hs []*holder
	for i := 0; i < n; i++ {
		hs = append(hs, startHolder(t, root, "agent-"+strconv.Itoa(i)))
	}
	seen := map[int]bool{}
	for _, h := range hs {
		s := h.leased()
		if seen[s] {
			t.Fatalf("slot %d leased twice", s)
		}
		seen[s] = true
	}
	for i := 0; i < n; i++ {
		if !seen[i] {
			t.Errorf("slots %v: want 0..%d without gaps", seen, n-1)
		}
	}
}

// A warm slot is the lowest-numbered existing one, even when lower numbers have no directory.
func TestSlotsPreferExistingWarmSlot(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "slot-3"), 0o755)
	os.Mkdir(filepath.Join(root, "slot-07"), 0o755) // not a slot name
	h := startHolder(t, root, "agent-x")
	if n := h.leased(); n != 3 {
		t.Fatalf("got slot %d, want the existing warm slot 3", n)
	}
	h2 := startHolder(t, root, "agent-y")
	if n := h2.leased(); n != 0 {
		t.Fatalf("got slot %d, want new slot 0 once no existing slot is free", n)
	}
}

func TestCheckMissingRootIsFine(t *testing.T) {
	root := filepath.Join(t.TempDir(), "not", "yet")
	f, err := Check(Options{Root: root, UID: -1, GID: -1, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !findingMentions(f, LevelInfo, "will be created") {
		t.Errorf("%+v", f)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("check created %s", root)
	}
}

func TestParseSlotName(t *testing.T) {
	for name, want := range map[string]int{"slot-0": 0, "slot-12": 12} {
		if n, ok := parseSlotName(name); !ok || n != want {
			t.Errorf("%s: %d %v", name, n, ok)
		}
	}
	for _, name := range []string{"slot-", "slot-01", "slot--1", "slot-+1", "slot-x", "slots-1", "slot-99999"} {
		if _, ok := parseSlotName(name); ok {
			t.Errorf("%s accepted", name)
		}
	}
}

// On NFS (EFS) sharing is automatic: a slot is leased and the storage advice is given. NFS cannot
// be mounted here, so Detect reads a mountinfo in which the test's directory sits on nfs4.
func TestPrepareAutoSharedOnNFS(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(fake, []byte("1 0 0:50 / / rw,relatime - nfs4 fs-0123.efs.eu-west-1.amazonaws.com:/ rw,vers=4.1\n"), 0o644)
	old := mountInfoPath
	mountInfoPath = fake
	t.Cleanup(func() { mountInfoPath = old })

	root := t.TempDir()
	l, err := Prepare(context.Background(), Options{Root: root, UID: -1, GID: -1, Holder: Holder{Agent: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if !l.Shared || l.Slot != 0 || l.Dir != filepath.Join(root, "slot-0") || l.Mount.Kind != KindNFS {
		t.Errorf("lease %+v", l)
	}
	if !hasWarning(l, "storage guidance") {
		t.Errorf("no NFS advice: %q", l.Warnings)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}

	l2, err := Prepare(context.Background(), Options{Root: root, Shared: boolp(false), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Shared || l2.Slot != -1 || l2.Dir != root || !hasWarning(l2, "AZP_WORK_SHARED=false") {
		t.Errorf("explicitly unshared on NFS: %+v", l2)
	}
}
