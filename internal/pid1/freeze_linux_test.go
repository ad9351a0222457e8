//go:build linux

package pid1

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestEndLeftoversOutrunsForkingChains runs, as PID 1 of a PID namespace the test made, a job
// (uid 1000, like the agent's) that keeps forking chains, resumes stopped processes with SIGCONT,
// fans out and daemonises; EndLeftovers must leave nothing alive.
func TestEndLeftoversOutrunsForkingChains(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a PID namespace (unshare --pid)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) not installed")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a PID namespace here: %v: %s", err, out)
	}
	out := runHelperProcess(t, "freezekill", unshare, "--pid", "--fork", "--mount-proc")
	t.Log(out)
}

// attackScript is the job. Each "hop" starts the next hop and exits at once, so at any moment
// one or two links exist, each with a new PID; "cont" keeps sending SIGCONT to every process the
// job's uid may signal, undoing a freeze; "fan" starts many sleepers; "daemon" leaves a session
// leader that ignores TERM and HUP.
const attackScript = `#!/bin/sh
case "$1" in
hop) "$0" hop & exit 0 ;;
cont) while :; do kill -CONT -1 2>/dev/null; done ;;
esac
"$0" hop &
"$0" hop &
"$0" cont &
i=0; while [ $i -lt 50 ]; do sleep 1000 & i=$((i+1)); done
setsid sh -c 'trap "" TERM HUP; sleep 1000' &
echo started > "$(dirname "$0")/started"
wait
`

func helperFreezeKill() error {
	if !IsInit() {
		return fmt.Errorf("pid %d, want 1", os.Getpid())
	}
	r, err := Setup(nil)
	if err != nil {
		return err
	}
	defer r.Close()
	dir, err := os.MkdirTemp("", "freezekill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	script := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(script, []byte(attackScript), 0o755); err != nil {
		return err
	}
	job := exec.Command(script)
	job.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	if _, err := r.Start(job); err != nil {
		return err
	}
	// The attack is under way: it has fanned out and the chains are moving (PIDs keep changing).
	if err := waitFor("the job to start", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	}); err != nil {
		return err
	}
	if err := waitFor("chains to move", 30*time.Second, func() bool { return liveCount() > 50 }); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := EndLeftovers(ctx)
	if err != nil {
		return err
	}
	if left := liveCount(); left != 0 {
		return fmt.Errorf("EndLeftovers returned with %d live processes in the namespace", left)
	}
	// Nothing alive can create anything: the reaper empties the namespace and it stays empty.
	if err := waitFor("the namespace to be empty", 30*time.Second, func() bool { return procCount() == 0 }); err != nil {
		return fmt.Errorf("%w (%d left)", err, procCount())
	}
	if n < 50 {
		return fmt.Errorf("EndLeftovers reports %d killed; the job had more than 50 processes", n)
	}
	fmt.Printf("killed %d\n", n)
	return nil
}

// liveCount counts the live processes in the namespace other than us; procCount counts all.
func liveCount() int {
	procs, _ := readProcs("/proc")
	n := 0
	for _, p := range procs {
		if p.Pid != os.Getpid() && p.State != 'Z' && p.State != 'X' {
			n++
		}
	}
	return n
}

func procCount() int {
	procs, _ := readProcs("/proc")
	n := 0
	for _, p := range procs {
		if p.Pid != os.Getpid() {
			n++
		}
	}
	return n
}
