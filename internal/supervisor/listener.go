package supervisor

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// eventKind is what a listener's output line tells about its state.
type eventKind int

const (
	evNone eventKind = iota
	evListening
	evJobStarted
	evJobFinished
	evUpdating
	evConnectError // "Agent connect error: … Retrying until reconnected."
	evReconnected  // "Agent reconnected."
)

type event struct {
	kind eventKind
	job  string
}

// child is a supervised agent process (the listener, or configure) with its output re-emitted as
// log records with source=agent.
type child struct {
	proc   *pid1.Process
	events chan event
	start  time.Time

	mu   sync.Mutex
	tail []string // last lines, to explain an exit
	eof  chan struct{}

	classify func(string) event // nil: no events
}

const tailLines = 40

// startClassified starts cmd through the reaper, its stdout and stderr on one pipe that a goroutine
// reads line by line, sorted into events by classify.
func startClassified(r *pid1.Reaper, cmd *exec.Cmd, log *slog.Logger, classify func(string) event) (*child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	proc, err := r.Start(cmd)
	pw.Close() // the child holds its own copy; EOF comes when it and its descendants close theirs
	if err != nil {
		pr.Close()
		return nil, err
	}
	c := &child{proc: proc, events: make(chan event, 64), start: time.Now(), eof: make(chan struct{}), classify: classify}
	go c.read(pr, log.With("source", "agent", "pid", proc.Pid))
	return c, nil
}

func (c *child) read(r io.ReadCloser, log *slog.Logger) {
	defer close(c.eof)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		log.Info(line)
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > tailLines {
			c.tail = c.tail[len(c.tail)-tailLines:]
		}
		c.mu.Unlock()
		if c.classify == nil {
			continue
		}
		if ev := c.classify(line); ev.kind != evNone {
			select {
			case c.events <- ev:
			default: // nobody is listening (configure); state is also read from the server
			}
		}
	}
}

// lastLines returns the tail of the output once it has been read up to the exit: descendants
// (a job's orphans) may hold the pipe open, so it waits at most a moment for EOF.
func (c *child) lastLines() []string {
	select {
	case <-c.eof:
	case <-time.After(300 * time.Millisecond):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}

// listenerPath is resolved again at every launch: self-update turns bin into a symlink.
func listenerPath(agentDir string) string {
	return filepath.Join(agentDir, "bin", "Agent.Listener")
}
