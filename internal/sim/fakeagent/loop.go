package fakeagent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"time"
)

type pollEvent struct {
	msg  *agentMessage
	exit int // >= 0: the loop must end with this code
}

// poll long-polls messages until ctx ends, acknowledging each one (DELETE) before handing it over.
func (l *listener) poll(ctx context.Context, events chan<- pollEvent) {
	var last uint64
	backoff := envDuration(EnvPollBackoff, 15*time.Second)
	erroring := false
	refreshed := false
	send := func(e pollEvent) bool {
		select {
		case events <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		m, err := l.srv.getMessage(ctx, l.session(), last)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.out.tracef("get message: %v", err)
			st, key := statusOf(err), typeKeyOf(err)
			var te *tokenError
			switch {
			case key == "TaskAgentSessionExpiredException":
				if code := l.createSession(ctx); code >= 0 {
					send(pollEvent{exit: code})
					return
				}
				continue
			case key == "TaskAgentAccessTokenExpiredException":
				l.out.line(MsgTokenRevoked)
				send(pollEvent{exit: ExitSuccess})
				return
			case st == http.StatusUnauthorized && !refreshed:
				refreshed = true // the token may have expired: get a fresh one once
				if _, err := l.srv.auth.get(ctx, true); err == nil {
					continue
				}
				fallthrough
			case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusNotFound ||
				(errors.As(err, &te) && te.status >= 400 && te.status < 500):
				l.out.errorf("An error occurred: %s", describe(err, l.settings.ServerURL))
				send(pollEvent{exit: ExitRetryableError})
				return
			default:
				if !erroring {
					l.out.sayErr("QueueConError", time.Now(), describe(err, l.settings.ServerURL))
					erroring = true
				}
				if !sleepCtx(ctx, backoff) {
					return
				}
				continue
			}
		}
		refreshed = false
		if erroring {
			l.out.say("QueueConnected", time.Now())
			erroring = false
		}
		if m == nil {
			continue
		}
		last = m.MessageID
		if err := l.srv.deleteMessage(ctx, l.session(), m.MessageID); err != nil {
			l.out.tracef("delete message %d: %v", m.MessageID, err)
		}
		if !send(pollEvent{msg: m}) {
			return
		}
	}
}

func (l *listener) loop(ctx context.Context) int {
	pollCtx, cancelPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	l.stopPoll = func() {
		cancelPoll()
		<-pollDone
	}
	defer cancelPoll()
	events := make(chan pollEvent)
	go func() {
		defer close(pollDone)
		l.poll(pollCtx, events)
	}()
	stopCh := l.stopCh
	for {
		select {
		case <-stopCh:
			stopCh = nil
			l.stopping = true
			cancelPoll()
			if l.job == nil {
				return l.finish(ExitSuccess)
			}
			l.job.cancel(true) // JobDispatcher.ShutdownAsync: no time limit on the worker
		case ev := <-events:
			if ev.msg == nil {
				l.abortJob()
				return l.finish(ev.exit)
			}
			if code := l.handle(ev.msg); code >= 0 {
				return code
			}
		case r := <-l.jobDone:
			l.complete(r)
			l.job = nil
			if l.pending != "" {
				return l.update(l.pending)
			}
			if l.stopping || l.once {
				return l.finish(ExitSuccess)
			}
		}
	}
}

// handle processes one message; a code >= 0 ends the listener with it.
func (l *listener) handle(m *agentMessage) int {
	l.out.tracef("message %d %s: %s", m.MessageID, m.MessageType, m.Body)
	switch m.MessageType {
	case MsgTypeJobRequest:
		var b JobBody
		if err := json.Unmarshal([]byte(m.Body), &b); err != nil {
			l.out.errorf("An error occurred: bad job message: %v", err)
			return -1
		}
		if l.job != nil || l.stopping || l.pending != "" {
			l.out.tracef("ignoring job %d: busy", b.RequestID)
			return -1
		}
		l.startJob(b)
	case MsgTypeCancellation:
		var b struct {
			JobID string `json:"jobId"`
		}
		json.Unmarshal([]byte(m.Body), &b)
		if l.job != nil && (b.JobID == "" || strings.EqualFold(b.JobID, l.job.body.JobID)) {
			l.job.cancel(false)
		}
	case MsgTypeRefresh:
		var b struct {
			AgentID       int    `json:"agentId"`
			TargetVersion string `json:"targetVersion"`
		}
		json.Unmarshal([]byte(m.Body), &b)
		if _, off := os.LookupEnv("agent.disableupdate"); off {
			l.out.tracef("agent.disableupdate is set: ignoring the update to %s", b.TargetVersion)
			return -1
		}
		if b.TargetVersion == "" || b.TargetVersion == l.root.version {
			return -1
		}
		if l.job != nil {
			l.pending = b.TargetVersion // the real updater waits for the running job
			return -1
		}
		return l.update(b.TargetVersion)
	case MsgTypeSimScript:
		var s map[string]any
		json.Unmarshal([]byte(m.Body), &s)
		if v, ok := s["hang"]; ok && v != false {
			l.hang()
		}
		if v, ok := s["crash"]; ok && v != false {
			kind := "kill"
			if str, ok := v.(string); ok {
				kind = strings.ToLower(str)
			}
			if sig, ok := s["signal"].(string); ok {
				kind = strings.ToLower(sig)
			}
			crash(kind)
		}
		if v, ok := s["exit"].(float64); ok {
			l.out.errorf("An error occurred: scripted exit %d", int(v))
			l.abortJob()
			return l.finish(int(v))
		}
	default:
		l.out.tracef("ignoring message type %s", m.MessageType)
	}
	return -1
}
