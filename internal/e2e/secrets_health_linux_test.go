package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAttackHealthEnviron is issue 11's ECS attack: `azp-entrypoint health` runs as the job's uid
// with the container's environment (AZP_TOKEN, the task role's credential URI); a job of that uid
// polls /proc/*/environ. The health check is held open on a FIFO at its state file so the job has
// all the time it wants. The job cannot read it, and the block root reads holds no secret.
func TestAttackHealthEnviron(t *testing.T) {
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	if os.Geteuid() != 0 {
		t.Skip("runs the health check and the job as uid 1000, which needs root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	fifo := filepath.Join(dir, "state.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	const token, role = "pat-health-0123456789abcdef", "/v2/credentials/health-role-0123"
	health := exec.Command(bins.entrypoint, "health", "--state-dir", dir)
	health.Env = []string{"AZP_TOKEN=" + token, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=" + role, "AZP_URL=https://dev.azure.com/x", "PATH=/usr/bin:/bin"}
	health.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	if err := health.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Let it finish: a writer on the FIFO ends its read.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		_ = health.Wait()
	})
	pid := health.Process.Pid
	// Wait until it blocks opening the FIFO (a thread waits in wait_for_partner), i.e. it is past
	// its start and holds the environment it was given.
	deadline := time.Now().Add(30 * time.Second)
	for !blockedOnFIFO(pid) {
		if time.Now().After(deadline) {
			t.Fatal("health did not open its state file")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The job: same uid, reads the environ and the memory map.
	job := exec.Command("/bin/sh", "-c", fmt.Sprintf("cat /proc/%d/environ; echo; echo rc=$?", pid))
	job.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	out, _ := job.CombinedOutput()
	if strings.Contains(string(out), token) || strings.Contains(string(out), role) || !strings.Contains(string(out), "rc=") {
		t.Errorf("a job of the same uid read health's environment: %q", out)
	}
	if strings.Contains(string(out), "AZP_URL=") {
		t.Errorf("the job could read health's environ at all: %q", out)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(string(b), "\x00", "\n")))
	for sc.Scan() {
		if strings.Contains(sc.Text(), token) || strings.Contains(sc.Text(), role) {
			t.Errorf("health's environment block still holds a secret: %q", sc.Text())
		}
	}
}

func blockedOnFIFO(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, w := range tasks {
		if b, _ := os.ReadFile(w); strings.Contains(string(b), "wait_for_partner") || strings.Contains(string(b), "fifo") {
			return true
		}
	}
	return false
}
