// Package workdir prepares the agent's work directory and tool cache on whatever storage the
// container was given (container layer, task storage or bind mount, EBS, EFS, tmpfs): it detects
// the storage, creates and owns what is missing for the agent's user, checks access and space, and
// on shared volumes leases a slot AZP_WORK/slot-N under an open-file-description lock held for the
// life of the process, so that two live agents never work in the same directory.
//
// It must never chown a tree recursively (work trees are large and may sit on EFS), never delete
// anything in the work directory, and never let two live processes hold the same slot.
package workdir

import (
	"log/slog"
	"time"
)

// DefaultMinFree is the contract's default for AZP_WORK_MIN_FREE (2 GiB).
const DefaultMinFree int64 = 2 << 30

// Holder identifies the process holding a slot. It is written next to the slot for people and
// for `azp-entrypoint check`; it is information only, the lock alone decides who holds a slot.
type Holder struct {
	Agent string    `json:"agent,omitempty"`
	Task  string    `json:"task,omitempty"` // ECS task ARN or id, if any
	Host  string    `json:"host,omitempty"` // defaults to os.Hostname()
	PID   int       `json:"pid,omitempty"`  // defaults to os.Getpid()
	Since time.Time `json:"since"`          // defaults to now
}

// Options configures Prepare and Check.
type Options struct {
	Root    string       // absolute AZP_WORK path
	Shared  *bool        // AZP_WORK_SHARED; nil = auto (true on NFS)
	MinFree int64        // AZP_WORK_MIN_FREE in bytes; warn below; <= 0 disables the warning
	UID     int          // run-as user; -1 = leave ownership alone
	GID     int          // run-as group; -1 = leave the group alone
	Holder  Holder       // recorded for the leased slot
	Logger  *slog.Logger // nil = discard
}

// Lease is a prepared work directory. On a shared volume it holds the slot's lock until Release
// or until the process ends, however it ends.
type Lease struct {
	Dir      string // the directory to hand to the agent as its work folder
	Slot     int    // -1 when not shared
	Mount    Mount
	Shared   bool
	Warnings []string // also logged; for `check` and tests

	lock *slotLock
}

// Level is the severity of a Finding.
type Level string

const (
	LevelOK    Level = "ok"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

// Finding is one line of `azp-entrypoint check` output about the work directory.
type Finding struct {
	Level   Level
	Path    string
	Message string
	Err     error // set for LevelError; marked with an exit kind
}
