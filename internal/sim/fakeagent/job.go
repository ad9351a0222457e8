package fakeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// JobBody is the body of a PipelineAgentJobRequest message from the simulator.
type JobBody struct {
	RequestID      int64   `json:"requestId"`
	JobID          string  `json:"jobId"`
	JobDisplayName string  `json:"jobDisplayName"`
	LockToken      string  `json:"lockToken"`
	Sim            JobSpec `json:"sim"`
}

// JobSpec is the simulator's description of what the fake job does.
type JobSpec struct {
	DurationMs int64  `json:"durationMs"`
	Result     string `json:"result"`
	Orphans    int    `json:"orphans"`
	// IgnoreCancelMs is how long the step takes to end after the worker's SIGINT: 0 (default) never,
	// so the worker's SIGINT and SIGTERM timeouts (7.5 s + 2.5 s) run out; < 0 at once. See cancelTime.
	IgnoreCancelMs int64 `json:"ignoreCancelMs"`
	// SigintTimeoutMs and SigtermTimeoutMs shorten the worker's PROCESS_SIGINT_TIMEOUT and
	// PROCESS_SIGTERM_TIMEOUT for this job (test knob; < 0 means 0).
	SigintTimeoutMs  int64 `json:"sigintTimeoutMs,omitempty"`
	SigtermTimeoutMs int64 `json:"sigtermTimeoutMs,omitempty"`
	// FailFirstRenew makes the listener's first renewal of the job request fail as if the server
	// no longer knew the request (TaskAgentJobNotFoundException): JobDispatcher.RunAsync then returns
	// after "Running job" without starting a worker or printing "completed".
	FailFirstRenew bool `json:"failFirstRenew,omitempty"`
	// CancelBeforeWorker: the job is cancelled while the listener waits for the first renewal, so
	// JobDispatcher.RunJobAsync completes the request as Canceled (CompleteJobRequestAsync) and
	// returns without starting a worker and without printing "completed".
	CancelBeforeWorker bool `json:"cancelBeforeWorker,omitempty"`
	OrphanSeconds      int  `json:"orphanSeconds,omitempty"`
}

type jobResult struct {
	job    *runningJob
	result string // succeeded | failed | canceled
}

type runningJob struct {
	body       JobBody
	cmd        *exec.Cmd
	pipe       *os.File
	cancelOnce sync.Once
	shutdown   bool // canceled because the agent is stopping
}

func (j *runningJob) cancel(shutdown bool) {
	j.cancelOnce.Do(func() {
		j.shutdown = shutdown
		msg := "cancel\n"
		if shutdown {
			msg = "shutdown\n"
		}
		j.pipe.WriteString(msg)
	})
}

func (l *listener) workerCommand() *exec.Cmd {
	w := filepath.Join(l.root.binDir, "Agent.Worker")
	if st, err := os.Stat(w); err == nil && st.Mode()&0o111 != 0 {
		return exec.Command(w, "spawnclient", "3")
	}
	return exec.Command(l.root.exe, RoleWorker, "spawnclient", "3")
}

func (l *listener) startJob(b JobBody) {
	name := b.JobDisplayName
	if name == "" {
		name = "Job"
	}
	b.JobDisplayName = name
	l.out.say("RunningJob", time.Now(), name) // JobDispatcher.RunAsync
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// JobDispatcher.RunJobAsync waits for the first renewal of the request and does not even start
	// the worker when it fails for good (RenewJobRequestAsync: TaskAgentJobNotFoundException,
	// TaskAgentJobTokenExpiredException, or retries exhausted): the dispatch ends with no
	// "completed" line and the request is left to the server.
	err := l.srv.updateRequest(ctx, b.RequestID, b.LockToken, jobRequestUpdate{RequestID: b.RequestID})
	if err == nil && b.Sim.FailFirstRenew {
		err = errors.New("TaskAgentJobNotFoundException (scripted by the job's failFirstRenew)")
	}
	if err != nil && (statusOf(err) == http.StatusNotFound || b.Sim.FailFirstRenew) {
		l.out.tracef("Unable to renew job request for job %s for the first time, stop dispatching job to worker: %v", b.JobID, err)
		return
	} else if err != nil {
		l.out.tracef("renew job request %d: %v", b.RequestID, err)
	}
	if b.Sim.CancelBeforeWorker {
		l.out.tracef("Job cancellation requested during setup - stopping job request renewal for job: %s", b.JobID)
		now := time.Now().UTC()
		if err := l.srv.updateRequest(ctx, b.RequestID, b.LockToken, jobRequestUpdate{RequestID: b.RequestID, FinishTime: &now, Result: "canceled"}); err != nil {
			l.out.tracef("complete job request %d: %v", b.RequestID, err)
		}
		return
	}
	j := &runningJob{body: b}
	l.job = j
	r, w, err := os.Pipe()
	if err != nil {
		go func() { l.jobDone <- jobResult{job: j, result: "failed"} }()
		return
	}
	j.pipe = w
	c := l.workerCommand()
	c.ExtraFiles = []*os.File{r}
	c.Dir = l.root.dir
	j.cmd = c
	if err := c.Start(); err != nil {
		r.Close()
		l.out.errorf("An error occurred: start worker: %v", err)
		go func() { l.jobDone <- jobResult{job: j, result: "failed"} }()
		return
	}
	r.Close()
	l.out.tracef("worker pid %d for request %d", c.Process.Pid, b.RequestID)
	line, _ := json.Marshal(b)
	w.Write(append(line, '\n'))
	go func() {
		err := c.Wait()
		w.Close()
		res := "failed"
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		switch code {
		case 100 + taskSucceeded:
			res = "succeeded"
		case 100 + taskFailed:
			res = "failed"
		case 100 + taskCanceled:
			res = "canceled"
		}
		l.jobDone <- jobResult{job: j, result: res}
	}()
}

func (l *listener) complete(r jobResult) {
	res := r.result
	if res == "canceled" && r.job.shutdown {
		if _, ok := os.LookupEnv("FAIL_JOB_WHEN_AGENT_DIES"); ok {
			res = "failed"
		}
	}
	b := r.job.body
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	if err := l.srv.updateRequest(ctx, b.RequestID, b.LockToken, jobRequestUpdate{RequestID: b.RequestID, FinishTime: &now, Result: res}); err != nil {
		l.out.errorf("An error occurred: finish job request %d: %s", b.RequestID, describe(err, l.settings.ServerURL))
	}
	l.out.say("JobCompleted", time.Now(), b.JobDisplayName, strings.ToUpper(res[:1])+res[1:])
}

// readLines reads newline-terminated messages from r until EOF.
func readLines(r *bufio.Reader, fn func(string)) {
	for {
		s, err := r.ReadString('\n')
		if s = strings.TrimSpace(s); s != "" {
			fn(s)
		}
		if err != nil {
			return
		}
	}
}
