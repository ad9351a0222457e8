package preflight

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// noteHandler prints warnings and errors logged during the checks as indented plain-text notes
// under the table line they belong to, so that `check` prints a table and nothing else.
type noteHandler struct {
	out    io.Writer
	masker *logging.Masker
	attrs  []slog.Attr
}

func (h *noteHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *noteHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("      note: " + r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	_, err := io.WriteString(h.out, h.masker.String(strings.ReplaceAll(b.String(), "\n", "; "))+"\n")
	return err
}

func (h *noteHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &noteHandler{out: h.out, masker: h.masker, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *noteHandler) WithGroup(string) slog.Handler { return h }

// runAs resolves the user the agent will run as, the way `run` does: AZP_RUN_AS, else the image's
// "agent" user when started as root. uid -1 means the entrypoint's own user.
func runAs(s *config.Settings) (uid, gid int, who string) {
	spec := s.RunAs
	if spec == "" && isRoot() {
		if _, err := pid1.ResolveUser("agent", pid1.PasswdPath, pid1.GroupPath); err == nil {
			spec = "agent"
		}
	}
	if spec == "" {
		return -1, -1, ""
	}
	u, err := pid1.ResolveUser(spec, pid1.PasswdPath, pid1.GroupPath)
	if err != nil {
		return -1, -1, ""
	}
	return u.UID, u.GID, fmt.Sprintf(" (and reachable for the agent's user %d:%d)", u.UID, u.GID)
}
