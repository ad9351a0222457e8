package fakeagent

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// DefaultVersion is reported when bin/Agent.Listener.deps.json is missing (e.g. azp-sim run as fake-listener).
const DefaultVersion = "4.0.0"

// agentRoot locates the agent's files and its own binary.
type agentRoot struct {
	dir      string // agent root
	binDir   string // resolved directory of the running executable
	exe      string // resolved path of the running executable
	version  string
	platform string
}

func findRoot() (*agentRoot, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate own executable: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	a := &agentRoot{exe: exe, binDir: filepath.Dir(exe), version: DefaultVersion, platform: "linux-x64"}
	a.dir = filepath.Dir(a.binDir)
	if d := os.Getenv(EnvRoot); d != "" {
		a.dir = d
	}
	if v, err := pkgbuild.ReadVersionInfo(a.binDir); err == nil {
		if v.Version != "" {
			a.version = v.Version
		}
		if v.Platform != "" {
			a.platform = v.Platform
		}
	}
	return a, nil
}

// output writes the listener's terminal lines: normal lines to stdout, errors to stderr (like
// Terminal.WriteError), one write per line so that nothing sits in a buffer, and everything to the
// _diag log.
type output struct {
	mu      sync.Mutex
	diag    io.WriteCloser
	strings map[string]string // localized texts (loadStrings)
}

func newOutput(root *agentRoot, prefix string) *output {
	o := &output{strings: loadStrings(root.binDir)}
	dir := diagDir(root)
	if err := os.MkdirAll(dir, 0o755); err == nil {
		name := fmt.Sprintf("%s_%s-utc.log", prefix, time.Now().UTC().Format("20060102-150405"))
		if f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			o.diag = f
		}
	}
	return o
}

func (o *output) write(w io.Writer, kind, s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if w != nil {
			io.WriteString(w, l+"\n")
		}
		if o.diag != nil {
			fmt.Fprintf(o.diag, "[%s %s] %s\n", time.Now().UTC().Format("2006-01-02 15:04:05Z"), kind, l)
		}
	}
}

func (o *output) line(s string)              { o.write(os.Stdout, "INFO ", s) }
func (o *output) errorf(f string, a ...any)  { o.write(os.Stderr, "ERR  ", fmt.Sprintf(f, a...)) }
func (o *output) tracef(f string, a ...any)  { o.write(nil, "TRACE", fmt.Sprintf(f, a...)) }
func (o *output) stamped(f string, a ...any) { o.line(stamp() + ": " + fmt.Sprintf(f, a...)) }

func (o *output) close() {
	if o.diag != nil {
		o.diag.Close()
	}
}

// stamp formats now like .NET's "u" format specifier, which the real listener uses for its lines.
func stamp() string { return time.Now().UTC().Format("2006-01-02 15:04:05Z") }

// ListenerMain runs the fake Agent.Listener with args (without argv[0]) and returns the exit code.
func ListenerMain(args []string) int {
	root, err := findRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "An error occurred:", err)
		return ExitTerminatedError
	}
	// Program.MainAsync loads <root>/.env into the process environment at every start, before
	// CommandSettings reads VSTS_AGENT_INPUT_*.
	loadEnvFile(root)
	cmd := parseCommand(args)
	out := newOutput(root, "Agent")
	defer out.close()
	out.tracef("Agent.Listener %s pid=%d verb=%s root=%s", root.version, os.Getpid(), cmd.verb, root.dir)
	cmd.warnUnknown(out)
	switch {
	case cmd.flag("version"):
		out.line(root.version)
		return ExitSuccess
	case cmd.flag("commit"):
		out.line("0000000fake")
		return ExitSuccess
	case cmd.flag("help"):
		out.line(usage)
		return ExitSuccess
	}
	switch cmd.verb {
	case "warmup":
		return ExitSuccess
	case "configure", "remove", "reauth":
		// Ctrl-C during configuration: Environment.Exit(1).
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGQUIT)
		go func() {
			<-sig
			out.errorf("Exiting...")
			os.Exit(ExitTerminatedError)
		}()
		if cmd.verb == "configure" {
			return configure(cmd, root, out)
		}
		if cmd.verb == "remove" {
			return remove(cmd, root, out)
		}
		out.errorf("reauth is not supported by the fake agent")
		return ExitTerminatedError
	default:
		return run(cmd, root, out)
	}
}

// loadEnvFile applies <root>/.env like Program.MainAsync (src/Agent.Listener/Program.cs): every
// line with a "=" after its first character is KEY=VALUE (nothing trimmed) and overrides the
// process environment; other lines are ignored.
func loadEnvFile(root *agentRoot) {
	b, err := os.ReadFile(root.path(".env"))
	if err != nil {
		return
	}
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
		if i := strings.IndexByte(l, '='); i > 0 {
			os.Setenv(l[:i], l[i+1:])
		}
	}
}
