package ecssim

import (
	"time"
)

// requestStop asks the lifecycle goroutine to stop the task. Call with s.mu held.
func (t *task) requestStop() { t.stopOnce.Do(func() { close(t.stopReq) }) }

// stop is StopTask: desiredStatus STOPPED at once, the container gets SIGTERM, and after the
// container's stopTimeout SIGKILL (API_StopTask). Call with s.mu held.
func (t *task) stop(code, reason string) {
	if t.desiredStatus == StatusStopped {
		return
	}
	t.desiredStatus = StatusStopped
	t.stopCode, t.stoppedReason = code, reason
	t.version++
	t.s.changedLocked()
	t.requestStop()
}

// setStatus moves lastStatus; call without s.mu.
func (t *task) setStatus(st string, at func(now time.Time)) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.lastStatus = st
	t.version++
	if at != nil {
		at(time.Now())
	}
	t.s.changedLocked()
}

// wait sleeps d unless a stop is requested first; it reports whether the task may go on.
func (t *task) wait(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-t.stopReq:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.stopReq:
		return false
	}
}

// stopTimeout is the essential container's stopTimeout, default 30 s (API_ContainerDefinition:
// "For tasks using the Fargate launch type ... If this parameter isn't specified, the default
// value of 30 seconds is used. The maximum value is 120 seconds.").
func (t *task) stopTimeout() time.Duration {
	if cd := containerDef(t.td, t.container); cd != nil && cd.StopTimeout != nil {
		return time.Duration(min(*cd.StopTimeout, 120)) * time.Second
	}
	return 30 * time.Second
}

// lifecycle drives the task through the statuses of the developer guide's "Amazon ECS task
// lifecycle": PROVISIONING (ENI), PENDING (image pull), RUNNING (container started), and on the
// way out STOPPING, DEPROVISIONING (ENI detached), STOPPED.
func (t *task) lifecycle() {
	defer t.s.wg.Done()
	d := t.s.opts.Delays
	ok := t.wait(d.Provisioning)
	if ok {
		t.setStatus(StatusPending, func(now time.Time) { t.pullStartedAt = now })
		ok = t.wait(d.Pending)
	}
	var proc Process
	if ok {
		t.s.mu.Lock()
		t.proc = nil
		t.s.mu.Unlock()
		t.s.mu.Lock()
		env := map[string]string{}
		for k, v := range t.env {
			env[k] = v
		}
		for k, v := range t.bootEnv {
			env[k] = v
		}
		spec := LaunchSpec{TaskARN: t.arn, TaskID: t.id, Cluster: t.cluster.name, Family: t.td.Family, Revision: t.td.Revision,
			Container: t.container, Env: env, Command: t.command}
		t.s.mu.Unlock()
		p, err := t.s.opts.Launcher.Launch(t.s.ctx, spec)
		if err != nil {
			// A container that cannot start: stopCode TaskFailedToStart, the container's reason
			// "CannotStartContainerError: ..." (developer guide, "Amazon ECS stopped task error messages").
			t.s.log.Info("ecssim: container failed to start", "task", t.id, "err", err)
			t.s.mu.Lock()
			t.desiredStatus, t.stopCode = StatusStopped, "TaskFailedToStart"
			t.stoppedReason = "CannotStartContainerError: " + err.Error()
			t.containerReason = t.stoppedReason
			t.s.mu.Unlock()
		} else {
			proc = p
			t.s.mu.Lock()
			t.proc = p
			t.s.mu.Unlock()
			t.setStatus(StatusRunning, func(now time.Time) { t.pullStoppedAt, t.startedAt = now, now })
		}
	}
	if proc != nil {
		select {
		case <-proc.Done():
			// The essential container exited: ECS stops the task with stopCode
			// EssentialContainerExited, stoppedReason "Essential container in task exited".
			t.s.mu.Lock()
			if t.desiredStatus != StatusStopped {
				t.desiredStatus, t.stopCode, t.stoppedReason = StatusStopped, "EssentialContainerExited", "Essential container in task exited"
			}
			t.s.mu.Unlock()
			t.setStatus(StatusStopping, func(now time.Time) { t.stoppingAt = now })
		case <-t.stopReq:
			t.setStatus(StatusStopping, func(now time.Time) { t.stoppingAt = now })
			proc.Terminate()
			tm := time.NewTimer(t.stopTimeout())
			select {
			case <-proc.Done():
			case <-tm.C:
				proc.Kill()
				<-proc.Done()
			case <-t.s.ctx.Done(): // the simulator is closing: no grace
				proc.Kill()
				<-proc.Done()
			}
			tm.Stop()
		}
		code := proc.ExitCode()
		t.s.mu.Lock()
		t.exitCode = &code
		t.s.mu.Unlock()
	} else {
		t.s.mu.Lock()
		if t.desiredStatus != StatusStopped {
			t.desiredStatus = StatusStopped
		}
		t.s.mu.Unlock()
		t.setStatus(StatusStopping, func(now time.Time) { t.stoppingAt = now })
	}
	t.setStatus(StatusDeprovisioning, func(now time.Time) { t.execStoppedAt = now })
	if d.Deprovisioning > 0 {
		select {
		case <-time.After(d.Deprovisioning):
		case <-t.s.ctx.Done():
		}
	}
	t.setStatus(StatusStopped, func(now time.Time) { t.stoppedAt = now })
}
