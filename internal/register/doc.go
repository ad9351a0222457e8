// Package register registers the agent over REST from the entrypoint itself, the way the real
// agent's `configure` does, and writes `.agent`, `.credentials` and `.credentials_rsaparams` in the
// format the real listener reads. No `configure` child process ever exists, so the operator's PAT,
// client secret or task-role credential never reaches a process a job could read.
//
// Files are written beneath a directory descriptor opened without following symlinks; when the
// entrypoint runs as root they are root-owned, group agent, mode 0440: the listener reads them and
// no job can rewrite them.
package register
