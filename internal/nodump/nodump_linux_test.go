//go:build linux

package nodump_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/nodump"
	"golang.org/x/sys/unix"
)

const helperEnv = "NODUMP_TEST_HELPER"

// TestMain's helper modes run in a re-executed test binary, which imported nodump like the
// entrypoint does (its init has run):
//   - "target": report what Go sees, then wait on stdin (a job's view of `health`);
//   - "control": the same, but dumpable again, to show the reader would succeed without nodump;
//   - "reader": read /proc/<pid>/environ of the pid given in NODUMP_TEST_PID (the job).
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "target", "control":
		if os.Getenv(helperEnv) == "control" {
			_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
		}
		d, _ := nodump.Dumpable()
		fmt.Printf("ready dumpable=%v err=%v token=%s\n", d, nodump.Err, os.Getenv("AZP_TOKEN"))
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "reader":
		b, err := os.ReadFile("/proc/" + os.Getenv("NODUMP_TEST_PID") + "/environ")
		if err != nil {
			fmt.Printf("denied: %v\n", err)
			os.Exit(3)
		}
		os.Stdout.Write(b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	token  = "s3cret-pat-value-0123456789"
	roleID = "/v2/credentials/role-uuid-abc"
	proxyP = "proxy-pw-xyz"
)

// sameUID runs a command as the unprivileged uid the test uses for both processes (root's test
// runs them as nobody; otherwise they share the test's own uid).
func sameUID(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
}

func startTarget(t *testing.T, mode string) (pid int, line string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{helperEnv + "=" + mode, "AZP_TOKEN=" + token, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=" + roleID,
		"HTTPS_PROXY=http://user:" + proxyP + "@proxy.example:3128", "VSTS_AGENT_INPUT_PASSWORD=" + proxyP, "PLAIN=visible", "PATH=/usr/bin:/bin"}
	sameUID(cmd)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lines <- l
	}()
	select {
	case line = <-lines:
	case <-time.After(60 * time.Second):
		t.Fatal("helper did not start")
	}
	return cmd.Process.Pid, line
}

func readAsJob(t *testing.T, pid int) (string, bool) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = []string{helperEnv + "=reader", fmt.Sprintf("NODUMP_TEST_PID=%d", pid)}
	sameUID(cmd)
	out, err := cmd.Output()
	return string(out), err == nil
}

// TestSubcommandEnvironUnreadableBySameUID is the ECS `health` attack: a job of the same uid
// reads /proc/PID/environ of a subcommand that got the container's environment. It is refused,
// and even the block root can read holds no secret, while the process itself still sees them.
func TestSubcommandEnvironUnreadableBySameUID(t *testing.T) {
	if os.Geteuid() == 0 {
		if err := os.Chmod(os.Args[0], 0o755); err != nil {
			t.Fatal(err)
		}
		for d := os.Args[0]; d != "/"; {
			d = d[:strings.LastIndex(d, "/")]
			if d == "" {
				break
			}
			_ = os.Chmod(d, 0o755) // nobody must be able to exec the test binary
		}
	}
	pid, line := startTarget(t, "target")
	if !strings.Contains(line, "dumpable=false") || !strings.Contains(line, "err=<nil>") || !strings.Contains(line, "token="+token) {
		t.Fatalf("target: %q; want non-dumpable, no error, and the token still visible to Go", line)
	}
	if got, ok := readAsJob(t, pid); ok {
		t.Errorf("a process of the same uid read the environ of a non-dumpable subcommand: %q", got)
	}
	if os.Geteuid() == 0 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		env := string(b)
		for _, s := range []string{token, roleID, proxyP} {
			if strings.Contains(env, s) {
				t.Errorf("the environment block still holds %q: %q", s, env)
			}
		}
		if !strings.Contains(env, "PLAIN=visible") || !strings.Contains(env, "AZP_TOKEN=***") {
			t.Errorf("the scrub changed more or less than the secret values: %q", env)
		}
	}

	// Control: the same process made dumpable again is readable by the same reader, so the
	// refusal above is nodump's doing.
	cpid, _ := startTarget(t, "control")
	got, ok := readAsJob(t, cpid)
	if !ok || !strings.Contains(got, "PLAIN=visible") {
		t.Errorf("control: the reader could not read a dumpable process's environ (%v): the test proves nothing", got)
	}
}

func TestSecretListCoversConfig(t *testing.T) {
	for _, d := range config.Definitions() {
		if d.Secret && !nodump.IsSecret(d.Env, "x") {
			t.Errorf("config setting %s is secret but nodump does not scrub it", d.Env)
		}
	}
	for _, c := range []struct {
		k, v string
		want bool
	}{{"https_proxy", "http://u:p@h:1", true}, {"HTTPS_PROXY", "http://h:1", false}, {"vsts_agent_input_token", "x", true}, {"PATH", "/bin", false}} {
		if got := nodump.IsSecret(c.k, c.v); got != c.want {
			t.Errorf("IsSecret(%s=%s) = %v", c.k, c.v, got)
		}
	}
}
