package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jobUID is the agent's (and so every job's) uid in the attack tests.
const jobUID = 4321

// asJob makes path look as if a job made it: owned by the agent's uid, without following links.
func asJob(t *testing.T, path string) {
	t.Helper()
	if err := os.Lchown(path, jobUID, jobUID); err != nil {
		t.Fatal(err)
	}
}

// TestAttackSharedVolumeSlots is issue 11's shared-volume attack: on a work volume several agents
// share, a job plants a symlink at slot-0, a FIFO at slot-1.lock and a hard link at slot-2.lock
// (to a file root must not write). The next agent starts anyway, on slot 3, with a warning naming
// each, and nothing planted is followed or written.
func TestAttackSharedVolumeSlots(t *testing.T) {
	h := newHarness(t)
	shared := filepath.Join(h.root, "shared-work")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(h.root, "victim-dir")
	os.Mkdir(victimDir, 0o755)
	victim := filepath.Join(shared, "job-file")
	if err := os.WriteFile(victim, []byte("job's"), 0o644); err != nil {
		t.Fatal(err)
	}
	asJob(t, victim)
	if err := os.Symlink(victimDir, filepath.Join(shared, "slot-0")); err != nil {
		t.Fatal(err)
	}
	asJob(t, filepath.Join(shared, "slot-0"))
	if err := syscall.Mkfifo(filepath.Join(shared, "slot-1.lock"), 0o666); err != nil {
		t.Fatal(err)
	}
	asJob(t, filepath.Join(shared, "slot-1.lock"))
	if err := os.Link(victim, filepath.Join(shared, "slot-2.lock")); err != nil {
		t.Fatal(err)
	}

	in := h.instance("e2e-attack-slots")
	in.env["AZP_WORK"] = shared
	in.env["AZP_WORK_SHARED"] = "true"
	in.env["AZP_RUN_AS"] = "4321:4321"
	r := in.start()
	in.waitOnline(40 * time.Second)
	data, err := os.ReadFile(filepath.Join(in.agentDir, ".agent"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), filepath.Join(shared, "slot-3")) {
		t.Errorf(".agent does not name slot-3 as the work folder: %s", data)
	}
	out := r.out.String()
	for _, name := range []string{"slot-0", "slot-1.lock", "slot-2.lock"} {
		if !strings.Contains(out, filepath.Join(shared, name)+": slot is held (skipped") {
			t.Errorf("no warning names %s", name)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "job's" {
		t.Errorf("root wrote through the hard-linked lock: %q", b)
	}
	if ents, _ := os.ReadDir(victimDir); len(ents) != 0 {
		t.Errorf("root wrote through the slot symlink: %v", ents)
	}
	r.stopCleanly()
}
