package e2e

// Stops at awkward moments: while the server is unreachable, during a reconfiguration, while the
// secret is fetched, and a second SIGTERM while the listener cancels a job.

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// closedURL is an organisation URL on a loopback port where nothing listens: every connection is
// refused, which the client retries for up to 2 minutes.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/sim"
}

// A stop while the server is still being reached (unreachable, retried) registered nothing: the
// entrypoint exits 0 at once, without trying to deregister an agent it never configured.
func TestStopWhileServerUnreachable(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-stop-unreachable")
	in.env["AZP_URL"] = closedURL(t)
	r := in.start()
	r.waitLog("retrying", 30*time.Second) // the first connection was refused
	code := r.stopWithin(3 * time.Second)
	if code != 0 {
		t.Fatalf("exit code %d, want 0 (stopped by a signal before anything was registered)", code)
	}
	if strings.Contains(r.out.String(), "prune") {
		t.Fatal("the log asks to prune an agent that was never registered")
	}
}

// A stop while the agent is being configured again after MissingAgent is a stop during
// configuration: it ends within 5 s even when the server does not answer the clean-up.
func TestStopDuringMissingAgentReconfigure(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-stop-reconfigure")
	in.env["AZP_STOP_TIMEOUT"] = "30s"
	r := in.start()
	in.waitOnline(30 * time.Second)
	// From now on registering hangs. The supervisor confirms MissingAgent with a look-up before it
	// configures again, so look-ups keep answering until the reconfiguration has started; from then
	// on they hang too: the reconfiguration's and the clean-up's.
	for _, m := range []string{"POST", "PUT"} {
		if _, err := h.sim.Fault(sim.FaultSpec{Method: m, PathRegexp: "/agents", Delay: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.sim.DeleteAgent("Default", in.name); err != nil {
		t.Fatal(err)
	}
	r.waitLog("configuring it again", 60*time.Second)
	if _, err := h.sim.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/agents", Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Stop once the second configuration waits on a hanging request.
	hanging := func() bool {
		for _, req := range h.sim.RequestLog() {
			if strings.Contains(req.Path, "/agents") && req.Fault && req.Status == 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(r.countLogs("configuring the agent") >= 2 && hanging()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	r.signal(syscall.SIGTERM)
	r.wait(40 * time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a stop during the reconfiguration took %s, want within 5s", took)
	}
}

// A stop while the settings are still being resolved (Secrets Manager does not answer) is seen at
// once: nothing is registered yet, so the entrypoint exits 0 well inside the stop budget.
func TestStopWhileFetchingSecret(t *testing.T) {
	h := newHarness(t)
	// A Secrets Manager endpoint that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	asked := make(chan struct{})
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if held = append(held, c); len(held) == 1 {
				close(asked)
			}
		}
	}()
	in := h.instance("e2e-stop-secret")
	delete(in.env, "AZP_TOKEN")
	in.env["AZP_SECRET_ID"] = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:azp-agent-AbCdEf"
	in.env["AWS_REGION"] = "eu-west-1"
	in.env["AWS_ACCESS_KEY_ID"] = "AKIAE2ETESTFAKEKEY01"
	in.env["AWS_SECRET_ACCESS_KEY"] = "e2etest/fake/secret/access/key/0000000000"
	in.env["AWS_EC2_METADATA_DISABLED"] = "true"
	in.env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = "http://" + l.Addr().String()
	in.env["AZP_STOP_TIMEOUT"] = "10s"
	r := in.start()
	select {
	case <-asked: // the entrypoint waits on Secrets Manager
	case <-r.done:
		t.Fatalf("exited (code %d) before the stop", r.exitCode)
	case <-time.After(30 * time.Second):
		t.Fatal("Secrets Manager was never asked")
	}
	code := r.stopWithin(5 * time.Second)
	if code != 0 {
		t.Fatalf("exit code %d, want 0 (stopped by a signal before anything was registered)", code)
	}
	in.assertRegistered(false)
	if strings.Contains(r.out.String(), "invalid settings") {
		t.Fatal("a stop is reported as invalid settings")
	}
}

// cpuTicks is the CPU time (user + system, in clock ticks) pid has used so far, or -1.
func cpuTicks(pid int) int {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// After a second signal the entrypoint waits for the listener without spinning: a job that takes
// a while to cancel must not cost a CPU core of the task meanwhile.
func TestSecondSigtermWaitsIdle(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-second-idle")
	in.env["AZP_STOP_TIMEOUT"] = "60s"
	r := in.start()
	in.waitOnline(30 * time.Second)
	id := h.queue(sim.JobSpec{Name: "slow-cancel", Duration: 5 * time.Minute, IgnoreCancel: 2500 * time.Millisecond})
	h.waitRequest(id, 10*time.Second, running)
	r.waitLog("Running job", 10*time.Second)
	r.signal(syscall.SIGTERM)
	r.waitLog("waiting for the running job to finish", 5*time.Second)
	pid := r.pid()
	r.signal(syscall.SIGTERM)
	r.waitLog("asking the listener to stop", 5*time.Second)
	before := cpuTicks(pid)
	last := before
	for {
		select {
		case <-r.done:
		case <-time.After(50 * time.Millisecond):
			if n := cpuTicks(pid); n >= 0 {
				last = n
			}
			continue
		}
		break
	}
	// 100 ticks a second: the wait lasts up to 3 s; a few ticks are logging and deregistration.
	if used := last - before; used > 50 {
		t.Fatalf("the entrypoint used %d clock ticks of CPU while waiting for the listener to stop", used)
	}
	if r.exitCode != 0 {
		t.Fatalf("exit code %d, want 0", r.exitCode)
	}
}
