package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// Identity: who the agent runs as, and what it is called.

func (sv *supervisor) uidgid() (int, int) {
	if sv.user == nil {
		return -1, -1
	}
	return sv.user.UID, sv.user.GID
}

// resolveUser decides who the agent runs as (AZP_RUN_AS).
func (sv *supervisor) resolveUser() error {
	spec := sv.s.RunAs
	if os.Geteuid() != 0 {
		if spec == "" {
			return nil
		}
		u, err := pid1.ResolveUser(spec, pid1.PasswdPath, pid1.GroupPath)
		if err != nil {
			return err
		}
		if u.UID != os.Geteuid() {
			return exit.Config(fmt.Errorf("AZP_RUN_AS = %q: switching to uid %d needs the entrypoint to start as root (run the container as root, or unset AZP_RUN_AS)", spec, u.UID))
		}
		return nil
	}
	if spec == "" {
		if _, err := pid1.ResolveUser("agent", pid1.PasswdPath, pid1.GroupPath); err == nil {
			spec = "agent"
		}
	}
	if spec == "" {
		sv.log.Warn("the agent runs as root: the image has no 'agent' user and AZP_RUN_AS is not set")
		return nil
	}
	u, err := pid1.ResolveUser(spec, pid1.PasswdPath, pid1.GroupPath)
	if err != nil {
		return err
	}
	if u.UID == 0 {
		sv.log.Warn("the agent runs as root (AZP_RUN_AS)", "run_as", spec)
		return nil
	}
	sv.user = &u
	return nil
}

// warnReadableTokenFile says when jobs could read AZP_TOKEN_FILE: they run as the agent's user.
func (sv *supervisor) warnReadableTokenFile() {
	if sv.s.TokenSource != config.TokenFile {
		return
	}
	if sv.user == nil {
		if os.Geteuid() != 0 {
			sv.log.Warn("jobs run as the entrypoint's own user and can read AZP_TOKEN_FILE; start the container as root (the agent then runs as AZP_RUN_AS) or use AZP_SECRET_ID", "path", sv.s.TokenFile)
		}
		return
	}
	st, err := os.Stat(sv.s.TokenFile)
	if err != nil {
		return
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	mode := st.Mode().Perm()
	inGroup := false
	for _, g := range append([]uint32{uint32(sv.user.GID)}, sv.user.Groups...) {
		inGroup = inGroup || g == sys.Gid
	}
	if mode&0o004 != 0 || (sys.Uid == uint32(sv.user.UID) && mode&0o400 != 0) || (inGroup && mode&0o040 != 0) {
		sv.log.Warn("AZP_TOKEN_FILE is readable by the agent's user, so jobs can read the token; make it root's with mode 0600", "path", sv.s.TokenFile, "mode", mode.String(), "agent_user", sv.user.Name)
	}
}

// resolveECS reads task metadata when running on ECS: the default agent name and task protection.
func (sv *supervisor) resolveECS(ctx context.Context) {
	s := sv.s
	host, _ := os.Hostname()
	sv.name = s.AgentName
	meta, onECS := ecs.FromEnv(sv.o.Getenv)
	if onECS {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		task, terr := meta.Task(mctx)
		ctr, cerr := meta.Container(mctx)
		if terr == nil && cerr == nil {
			sv.taskID = ecs.TaskID(task.TaskARN)
			if sv.name == "" {
				sv.name = ecs.AgentName(s.AgentNamePrefix, sv.taskID, ctr.Name)
			}
		} else {
			sv.log.Warn("ECS task metadata unavailable; naming the agent after the hostname", "err", errors.Join(terr, cerr))
		}
	}
	if sv.name == "" {
		sv.name = s.AgentNamePrefix + host
		if len(sv.name) > 64 {
			sv.name = sv.name[:64]
		}
	}
	if s.ECSTaskProtection.Resolve(onECS) {
		if p, ok := ecs.ProtectionFromEnv(sv.o.Getenv); ok {
			sv.protector = newProtector(p, sv.stop, sv.log)
		} else if s.ECSTaskProtection == config.On {
			sv.log.Warn("AZP_ECS_TASK_PROTECTION=true but ECS_AGENT_URI is not set; task protection is off")
		}
	}
	_ = sv.state.set(func(st *State) { st.Agent, st.Pool = sv.name, s.Pool })
}
