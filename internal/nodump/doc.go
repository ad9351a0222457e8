// Package nodump makes the process safe to exec in a job's sight: importing it (cmd/azp-entrypoint
// does, as its first import) marks the process non-dumpable and rewrites its initial environment
// block so that no secret remains in it, before any other package of ours initialises.
//
// Why both. A job runs as the agent's user. In non-root mode (ECS or compose with a user) the
// entrypoint and every one of its subcommands run as that same user, and ECS runs `health` with
// the container's whole environment: AZP_TOKEN, AZP_CLIENTSECRET and the task role's
// AWS_CONTAINER_CREDENTIALS_* URI. /proc/PID/environ and /proc/PID/mem of a dumpable process are
// readable by any process of the same uid. PR_SET_DUMPABLE 0 closes them to everything without
// CAP_SYS_PTRACE (ptrace_may_access), and the scrub removes the values from the block the kernel
// serves as environ, for whatever can still read it (root in the container). The values stay
// available to Go (os.Getenv) from the runtime's own copy.
//
// The window before this package's init (the Go runtime's start and the standard library's
// initialisation) cannot be closed from Go; the package imports only the standard library and
// x/sys so it runs as early as Go allows.
package nodump
