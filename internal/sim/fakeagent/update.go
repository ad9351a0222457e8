package fakeagent

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// update stages a self-update like SelfUpdater.cs: the new bin goes to bin.<version>, a detached
// updater swaps the symlink once this process is gone, and the listener exits 3 (4 with --once).
// Instead of downloading the package, the fake copies its own bin directory and records the new
// version in bin.<version>/fake-agent.json, so `--version` of the new bin prints it.
func (l *listener) update(target string) int {
	code := ExitAgentUpdating
	if l.once {
		code = ExitRunOnceAgentUpdating
	}
	l.out.say("UpdateInProgress") // SelfUpdater.SelfUpdate
	dst := filepath.Join(l.root.dir, "bin."+target)
	if err := stageBin(l.root.binDir, dst, pkgbuild.VersionInfo{Version: target, Platform: l.root.platform}); err != nil {
		l.out.errorf("An error occurred: stage update: %v", err)
		return l.finish(ExitRetryableError)
	}
	args := []string{RoleUpdater, "--pid", strconv.Itoa(os.Getpid()), "--root", l.root.dir,
		"--from", l.root.version, "--to", target, "--startuptype", l.startup, "--diag", diagDir(l.root)}
	if l.once {
		args = append(args, "--once")
	}
	c := exec.Command(l.root.exe, args...)
	c.Dir = l.root.dir
	// Like `bash _update.sh` started by the .NET listener: it inherits stdout/stderr (so a reader of
	// the listener's pipes sees EOF only once the updater and anything it relaunched are gone), but
	// runs in its own session so it survives the listener.
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		l.out.errorf("An error occurred: start updater: %v", err)
		return l.finish(ExitRetryableError)
	}
	l.out.tracef("updater pid %d", c.Process.Pid)
	c.Process.Release()
	l.out.say("AgentExit")
	return l.finish(code)
}

func stageBin(src, dst string, v pkgbuild.VersionInfo) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := copyTree(src, dst); err != nil {
		return err
	}
	return pkgbuild.WriteVersionInfo(dst, v)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(t, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, t)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(t, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}

// UpdaterMain is the detached updater (the fake _update.sh): it waits until the listener's
// /proc/<pid> is gone (so an unreaped zombie listener blocks it, as with the real script), swaps
// bin -> bin.<to>, writes _diag/SelfUpdate-<utc>.log and renames it to .log.succeed (.log.failed on
// error). Unless --once is set or the startup type is "service", it then starts run.sh itself (the
// real bug that makes a supervisor's own relaunch collide with a second listener).
func UpdaterMain(args []string) int {
	fl := flag.NewFlagSet(RoleUpdater, flag.ContinueOnError)
	pid := fl.Int("pid", 0, "listener pid to wait for")
	root := fl.String("root", "", "agent root")
	from := fl.String("from", "", "old version")
	to := fl.String("to", "", "new version")
	startup := fl.String("startuptype", "", "listener startup type")
	once := fl.Bool("once", false, "listener ran with --once")
	diagFlag := fl.String("diag", "", "diagnostics directory (the listener's AGENT_DIAGLOGPATH or <root>/_diag)")
	if err := fl.Parse(args); err != nil || *root == "" || *to == "" {
		fmt.Fprintln(os.Stderr, "fake-updater: --root and --to are required")
		return 2
	}
	// SelfUpdater.GenerateUpdateScript writes the log path from HostContext.GetDiagDirectory(),
	// which honours AGENT_DIAGLOGPATH.
	diag := *diagFlag
	if diag == "" {
		diag = filepath.Join(*root, "_diag")
	}
	os.MkdirAll(diag, 0o755)
	// The real name has one-second resolution; wait for a free second rather than overwrite an
	// earlier update's log.
	var logPath string
	for {
		logPath = filepath.Join(diag, "SelfUpdate-"+time.Now().UTC().Format("20060102-150405")+".log")
		if !exists(logPath) && !exists(logPath+".succeed") && !exists(logPath+".failed") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 1
	}
	log := func(f string, a ...any) {
		fmt.Fprintf(logf, "[%s] %s\n", time.Now().UTC().Format("2006-01-02 15:04:05Z"), fmt.Sprintf(f, a...))
	}
	fail := func(f string, a ...any) int {
		log(f, a...)
		logf.Close()
		os.Rename(logPath, logPath+".failed")
		return 1
	}
	log("Fake agent update from %s to %s; waiting for process %d to exit", *from, *to, *pid)
	poll := envDuration(EnvUpdaterPoll, 500*time.Millisecond)
	deadline := time.Now().Add(30 * time.Minute)
	for *pid > 0 && processExists(*pid) {
		if time.Now().After(deadline) {
			return fail("Process %d did not exit within 30 minutes", *pid)
		}
		time.Sleep(poll)
	}
	log("Process %d finished running", *pid)
	bin := filepath.Join(*root, "bin")
	if fi, err := os.Lstat(bin); err == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			log("Unlink current bin symlink")
			if err := os.Remove(bin); err != nil {
				return fail("Cannot unlink %s: %v", bin, err)
			}
		} else {
			old := filepath.Join(*root, "bin."+*from)
			os.RemoveAll(old)
			log("Rename %s to %s", bin, old)
			if err := os.Rename(bin, old); err != nil {
				return fail("Cannot rename %s: %v", bin, err)
			}
		}
	}
	log("Create symlink bin -> bin.%s", *to)
	if err := os.Symlink("bin."+*to, bin); err != nil {
		return fail("Cannot create symlink: %v", err)
	}
	if *startup != "service" && !*once {
		var c *exec.Cmd
		if _, err := os.Stat(filepath.Join(*root, "run.sh")); err == nil {
			c = exec.Command("bash", filepath.Join(*root, "run.sh"))
		} else {
			c = exec.Command(filepath.Join(bin, "Agent.Listener"), "run")
		}
		c.Dir = *root
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			return fail("Cannot restart the agent: %v", err)
		}
		log("Restarted agent: %s pid=%d", filepath.Base(c.Path), c.Process.Pid)
		c.Process.Release()
	}
	log("Agent update succeeded")
	logf.Close()
	if err := os.Rename(logPath, logPath+".succeed"); err != nil {
		return 1
	}
	return 0
}

func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// diagDir is HostContext.GetDiagDirectory(): AGENT_DIAGLOGPATH when set, else <root>/_diag.
func diagDir(root *agentRoot) string {
	if d := os.Getenv("AGENT_DIAGLOGPATH"); d != "" {
		return d
	}
	return filepath.Join(root.dir, "_diag")
}
