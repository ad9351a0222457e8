package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A job is running when an Agent.Worker runs below the listener; one elsewhere (a leftover
// reparented away, or another agent's) does not count.
func TestWorkerBelow(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(t.TempDir(), workerName)
	if err := os.WriteFile(worker, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The "listener": a shell that runs the worker as its child.
	listener := exec.Command("sh", "-c", worker+" 30; true")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	// Another process of that name, not below the listener.
	other := exec.Command(worker, "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })

	deadline := time.Now().Add(10 * time.Second)
	for !workerBelow(listener.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("the worker below the listener was not found")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if workerBelow(other.Process.Pid) {
		t.Error("a worker counted below itself")
	}
	bystander := exec.Command(sleep, "30")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })
	if workerBelow(bystander.Process.Pid) {
		t.Error("a worker found below a process that has none")
	}
}
