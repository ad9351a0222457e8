// Package pid1 is everything that makes azp-entrypoint a good init: it installs the stop-signal
// handlers a PID 1 must install (the kernel drops default-disposition signals for PID 1), owns every
// wait for child processes (one reaper dispatches each exit status by PID, so orphans are reaped
// and supervised children never lose their status to a stray wait4(-1)), makes the process a child
// subreaper when something else is PID 1 (ECS initProcessEnabled, docker run --init), and starts
// children in their own process group as an unprivileged user resolved from the image's
// /etc/passwd and /etc/group (AZP_RUN_AS).
//
// Rules this package keeps and callers must keep too:
//   - Once a Reaper runs, every child of the process is started through Reaper.Start or
//     Reaper.Run. exec.Cmd.Wait, exec.Cmd.Run/Output and os.Process.Wait would race the reaper
//     for the status ("wait: no child processes").
//   - Signals go to one PID at a time. Nothing here signals -1 or a process group: on a CI agent
//     that would cancel the running job's processes (and the agent's own cancel path) at once.
//   - No Pdeathsig: in Go it fires when the forking OS thread exits, not the process.
package pid1
