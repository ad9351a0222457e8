package supervisor

import (
	"bytes"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// fakeListener runs a shell that prints the listener's lines and stays up, under a watch loop
// against the simulator; it returns the state writer's directory and a stop function.
func watchScript(t *testing.T, status string, script string) (dir string, logs *lockedBuffer, done func()) {
	t.Helper()
	s, c, pool := simServer(t)
	if err := s.SeedAgents("Default", 1, status, time.Time{}, "watched-"); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Agent("Default", "watched-0")
	logs = &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	reaper, err := pid1.NewReaper(log)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	state, err := newStateWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	sv := &supervisor{o: Options{Reaper: reaper}, s: &config.Settings{Pool: "Default"}, log: log, state: state,
		stop: newStopper(30 * time.Second), server: c}
	reg := &registration{server: c, pool: pool, poolName: "Default", name: "watched-0", log: log, id: a.ID}
	ch, err := startClassified(reaper, exec.Command("sh", "-c", script+"; exec sleep 60"), log, english.classify)
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		sv.watch(ch, &jobState{state: state, log: log}, reg)
	}()
	return dir, logs, func() {
		ch.proc.Signal(unix.SIGKILL)
		<-watched
		reaper.Close()
	}
}

func shorten(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}

func waitPhase(t *testing.T, dir string, want Phase) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := Health(dir)
		if st.Phase == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s, want %s", st.Phase, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	lineListening = `echo "2026-11-22 10:00:50Z: Listening for Jobs"`
	lineConnError = `echo "2026-11-22 10:01:00Z: Agent connect error: Connection refused (127.0.0.1:9). Retrying until reconnected." >&2`
)

// The listener says it is listening, but the server sees the agent offline: health stays 1.
// After "Agent connect error" the grace passes and the server confirms the agent offline: the
// phase turns disconnected (health 1).
func TestWatchConnectErrorConfirmedOffline(t *testing.T) {
	shorten(t, &connectGrace, 300*time.Millisecond)
	shorten(t, &listenRetry, 50*time.Millisecond)
	dir, _, done := watchScript(t, "offline", lineListening+"; sleep 0.5; "+lineConnError)
	defer done()
	waitPhase(t, dir, PhaseDisconnected)
}

// A listener the server sees online stays healthy through a connection error it reports: a blip
// or a forged line, the server's word decides.
func TestWatchConnectErrorServerOnline(t *testing.T) {
	shorten(t, &connectGrace, 300*time.Millisecond)
	shorten(t, &listenRetry, 50*time.Millisecond)
	dir, logs, done := watchScript(t, "online", lineListening+"; "+lineConnError)
	defer done()
	waitPhase(t, dir, PhaseListening)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "the server sees the agent online; staying healthy") {
		if time.Now().After(deadline) {
			t.Fatal("the connection error was never checked with the server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := Health(dir); st.Phase != PhaseListening {
		t.Fatalf("phase %s after a connection error the server does not confirm, want listening", st.Phase)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
