//go:build linux

package containertest

import (
	"strings"
	"testing"
)

// composeCapabilities are the capabilities compose.yaml (and the lead's decision 1) give the
// entrypoint: CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) KILL(5) SETGID(6) SETUID(7).
const composeCapabilities = "00000000000000eb"

// jobScript runs as the agent user (uid 1000) inside a running agent container, as a job's script
// would, and prints one "FOUND ..." line for everything it should not be able to do or see. $1 is
// the token.
const jobScript = `
tok="$1"
found() { echo "FOUND $*"; }
[ "$(id -u)" = 1000 ] || found "not running as uid 1000: $(id)"
cat /run/secrets/azp_token >/dev/null 2>&1 && found "the token file /run/secrets/azp_token is readable"
cat /proc/1/environ >/dev/null 2>&1 && found "the entrypoint's environment /proc/1/environ is readable"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  if tr '\0' '\n' <"$f" 2>/dev/null | grep -qF "$tok"; then found "the token in $f"; fi
done
# Every file this user can read, outside /proc and /sys.
hits=$(grep -rlsF --exclude-dir=proc --exclude-dir=sys -e "$tok" / 2>/dev/null | head -n 5)
[ -n "$hits" ] && found "the token in files: $hits"
s=$(find / -xdev -type f \( -perm -4000 -o -perm -2000 \) 2>/dev/null | head -n 5)
[ -n "$s" ] && found "setuid/setgid binaries: $s"
if command -v getcap >/dev/null; then
  c=$(find / -xdev -type f -exec getcap {} + 2>/dev/null | head -n 5)
  [ -n "$c" ] && found "files with capabilities: $c"
fi
grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/self/status || found "effective capabilities: $(grep CapEff /proc/self/status)"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || found "no_new_privs is not set"
# The agent tree is root's: no binary, package marker or registration can be changed.
for p in /azp/agent/bin/Agent.Listener /azp/agent/.azp-package.json /azp/agent/.agent /azp/agent/.credentials; do
  [ -e "$p" ] || continue
  ( : >>"$p" ) 2>/dev/null && found "$p is writable"
done
( : >/azp/agent/bin/planted ) 2>/dev/null && found "/azp/agent/bin is writable"
( : >/azp/agent/planted ) 2>/dev/null && found "/azp/agent is writable"
( : >/azp/planted ) 2>/dev/null && found "/azp is writable"
( : >/usr/local/bin/planted ) 2>/dev/null && found "/usr/local/bin is writable"
# What jobs need: the work directory, _diag, /tmp, and ping (self-update's _update.sh waits with it).
( : >/azp/work/job-probe && rm /azp/work/job-probe ) || found "MISSING the work volume /azp/work is not writable"
( : >/azp/agent/_diag/job-probe && rm /azp/agent/_diag/job-probe ) || found "MISSING _diag is not writable"
( : >/tmp/job-probe && rm /tmp/job-probe ) || found "MISSING /tmp is not writable"
ping -c 1 -W 5 127.0.0.1 >/dev/null 2>&1 || found "MISSING ping does not work for the agent user: $(ping -c 1 -W 5 127.0.0.1 2>&1 | tail -n 1)"
echo DONE
`

// rootScript runs as root in the container: the root file system is read-only apart from the
// agent directory, the work directory and /tmp.
const rootScript = `
found() { echo "FOUND $*"; }
for d in / /etc /usr/local/bin /home/agent /var; do
  ( : >"$d/ro-probe" ) 2>/dev/null && { rm -f "$d/ro-probe"; found "$d is writable: the root file system is not read-only"; }
done
for d in /tmp /azp/work /azp/agent; do
  ( : >"$d/rw-probe" && rm "$d/rw-probe" ) || found "MISSING $d is not writable"
done
grep '^CapBnd:' /proc/1/status | awk '{print "CAPBND " $2}'
grep '^CapEff:' /proc/1/status | awk '{print "CAPEFF " $2}'
grep '^NoNewPrivs:' /proc/1/status | awk '{print "NNP " $2}'
echo DONE
`

// jobCannotReachSecrets: a process exec'd as the agent user (what a job's script is) finds no way
// to the token, to the entrypoint's environment or to root; the container runs with compose's
// capabilities, no-new-privileges and a read-only root file system.
func jobCannotReachSecrets(t *testing.T, p *Project, c string) {
	out, err := Try("exec", "-u", "agent", c, "bash", "-c", jobScript, "job", p.Token)
	if err != nil || !strings.Contains(out, "DONE") {
		t.Fatalf("job script: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FOUND") {
			t.Errorf("as the agent user: %s", strings.TrimPrefix(line, "FOUND "))
		}
	}
	out, err = Try("exec", "-u", "0", c, "bash", "-c", rootScript)
	if err != nil || !strings.Contains(out, "DONE") {
		t.Fatalf("root script: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "FOUND"):
			t.Errorf("%s", strings.TrimPrefix(line, "FOUND "))
		case len(f) == 2 && f[0] == "CAPBND" && f[1] != composeCapabilities:
			t.Errorf("PID 1 bounding capabilities %s, want %s (CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID)", f[1], composeCapabilities)
		case len(f) == 2 && f[0] == "CAPEFF" && f[1] != composeCapabilities:
			t.Errorf("PID 1 effective capabilities %s, want %s", f[1], composeCapabilities)
		case len(f) == 2 && f[0] == "NNP" && f[1] != "1":
			t.Errorf("PID 1 runs without no-new-privileges")
		}
	}
	// The listener the entrypoint started (the process that runs jobs) is the agent user's, with
	// no capability left.
	out, err = Try("exec", "-u", "0", c, "bash", "-c",
		`for s in /proc/[0-9]*/status; do n=$(awk '/^Name:/{print $2}' "$s"); case "$n" in Agent.*) awk '/^(Name|Uid|CapEff|CapPrm):/{printf "%s ", $2} END{print ""}' "$s";; esac; done`)
	if err != nil {
		t.Fatal(err)
	}
	listeners := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		listeners++
		if f[1] != "1000" || f[2] != "0000000000000000" || f[3] != "0000000000000000" {
			t.Errorf("agent process %s: uid %s, CapPrm %s, CapEff %s; want uid 1000 without capabilities", f[0], f[1], f[2], f[3])
		}
	}
	if listeners == 0 {
		t.Errorf("no Agent.* process found in the container:\n%s", out)
	}
}
