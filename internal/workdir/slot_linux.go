//go:build linux

package workdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

const (
	slotPrefix = "slot-"
	lockSuffix = ".lock"
	// maxSlots bounds the search; far more agents than any task or volume should carry.
	maxSlots = 4096
)

// slotRecord is the content of AZP_WORK/slot-N.lock while the slot is held.
type slotRecord struct {
	Slot int `json:"slot"`
	Holder
}

// slotLock is an open file description carrying an exclusive OFD lock on slot-N.lock. The lock
// lives exactly as long as the description: closing it, or the death of the process by any
// signal, releases it. Open-file-description locks (not flock, not classic POSIX locks) because
// they are per open file rather than per process (closing another descriptor of the same file in
// this process cannot drop them), and because over NFS the kernel turns both flock and fcntl into
// NFS byte-range locks, so one lock type must be used everywhere.
type slotLock struct {
	mu   sync.Mutex
	f    *os.File
	n    int
	path string
}

func lockPath(root string, n int) string {
	return filepath.Join(root, slotPrefix+strconv.Itoa(n)+lockSuffix)
}

func slotDir(root string, n int) string {
	return filepath.Join(root, slotPrefix+strconv.Itoa(n))
}

// parseSlotName returns N for "slot-N" (with suffix removed by the caller), rejecting leading
// zeros and signs so that every slot has exactly one name.
func parseSlotName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, slotPrefix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= maxSlots {
		return 0, false
	}
	return n, true
}

// listSlots returns the numbers of existing slot directories and of lock files, ascending.
func listSlots(root string) (dirs, locks []int, err error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, lockSuffix); ok {
			// Every type is listed, so that check reports a FIFO or link planted there.
			if n, ok := parseSlotName(base); ok {
				locks = append(locks, n)
			}
			continue
		}
		if n, ok := parseSlotName(name); ok && e.IsDir() {
			dirs = append(dirs, n)
		}
	}
	sort.Ints(dirs)
	sort.Ints(locks)
	return dirs, locks, nil
}

// errBusy means another open file description holds the lock.
var errBusy = errors.New("slot is held")

// unusable marks a slot that cannot be used safely; it counts as taken, and the lease moves on with
// a warning naming it.
func unusable(p, why string) error {
	return fmt.Errorf("%s: %w (skipped: %s; remove it to free the slot)", p, errBusy, why)
}

// checkLockFile tells whether the open lock file is one we may lock and write: a regular file
// (not a FIFO, device or socket a job put there), with one name (not a hard link to a file
// elsewhere, which root would truncate and write), owned by the user we run as.
func checkLockFile(p string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return unusable(p, fmt.Sprintf("not a regular file (mode %#o)", st.Mode&unix.S_IFMT))
	case st.Nlink != 1:
		return unusable(p, fmt.Sprintf("it has %d hard links", st.Nlink))
	case int(st.Uid) != os.Geteuid():
		return unusable(p, fmt.Sprintf("owned by uid %d, not by the user the entrypoint runs as (%d)", st.Uid, os.Geteuid()))
	}
	return nil
}

// checkSlotDir tells whether slot n's directory, if it exists, is a directory (a symlink, FIFO or
// file planted at slot-N would otherwise make every start fail when it creates the slot).
func checkSlotDir(root string, n int) error {
	d := slotDir(root, n)
	var st unix.Stat_t
	err := unix.Lstat(d, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return unusable(d, err.Error())
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		what := "not a directory"
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, _ := os.Readlink(d)
			what = fmt.Sprintf("a symbolic link to %q", target)
		}
		return unusable(d, what)
	}
	return nil
}

// tryLock takes slot n's lock without waiting. It returns an error wrapping errBusy when the slot
// is held or unusable. The lock file is opened O_NOFOLLOW|O_NONBLOCK (a symlink is refused, a
// FIFO does not block the open) and checked with fstat before anything is locked or written.
func tryLock(root string, n int) (*slotLock, error) {
	if err := checkSlotDir(root, n); err != nil {
		return nil, err
	}
	p := lockPath(root, n)
	for attempt := 0; attempt < 3; attempt++ {
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
		if err != nil {
			switch {
			case errors.Is(err, unix.ELOOP):
				return nil, unusable(p, "a symbolic link")
			case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
				return nil, unusable(p, "another user's file: "+err.Error())
			case errors.Is(err, unix.ENXIO), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EWOULDBLOCK):
				return nil, unusable(p, "not a regular file: "+err.Error())
			}
			return nil, fmt.Errorf("open slot lock %s: %w", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil {
			f.Close()
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		if err := checkLockFile(p, &fst); err != nil {
			f.Close()
			return nil, err
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			f.Close()
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
				return nil, errBusy
			}
			return nil, fmt.Errorf("lock %s: %w (on NFS, the volume must support locks: not mounted with nolock; EFS does)", p, err)
		}
		// Someone may have removed or replaced the lock file between our open and our lock; a
		// lock on an unlinked file protects nothing, so check that the path still names it.
		var pst unix.Stat_t
		if err := unix.Lstat(p, &pst); err != nil || pst.Ino != fst.Ino || pst.Dev != fst.Dev {
			f.Close()
			continue
		}
		// Linked meanwhile: root must not write into a file that has another name.
		if err := unix.Fstat(fd, &fst); err != nil || fst.Nlink != 1 {
			f.Close()
			return nil, unusable(p, "it gained a hard link while being locked")
		}
		return &slotLock{f: f, n: n, path: p}, nil
	}
	return nil, fmt.Errorf("%s: %w (replaced while locking)", p, errBusy)
}

// writeRecord replaces the lock file's content with the holder record. It is synced so that
// `check` on another NFS client sees it.
func (l *slotLock) writeRecord(h Holder) error {
	b, err := json.Marshal(slotRecord{Slot: l.n, Holder: h})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return err
	}
	return l.f.Sync()
}

func (l *slotLock) release() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	// Clear the record first so that nobody reads us as the holder after we let go; a holder that
	// dies without this leaves its record, which `check` shows as the last holder of a free slot.
	terr := l.f.Truncate(0)
	cerr := l.f.Close() // closing the last descriptor of the description drops the OFD lock
	l.f = nil
	if cerr != nil {
		return fmt.Errorf("release slot lock %s: %w", l.path, cerr)
	}
	if terr != nil {
		return fmt.Errorf("clear slot record %s: %w", l.path, terr)
	}
	return nil
}

// leaseSlot takes the lowest-numbered existing slot whose lock is free (a warm slot, whose
// checkouts and caches are reused); only when every existing slot is held does it make the next
// one. Two processes racing for the same new number are settled by the lock: the loser moves on.
func leaseSlot(ctx context.Context, root string, h Holder) (*slotLock, []string, error) {
	var notes []string
	dirs, _, err := listSlots(root)
	if err != nil {
		return nil, nil, exit.Runtime(fmt.Errorf("list slots in %s: %w", root, err))
	}
	have := make(map[int]bool, len(dirs))
	try := func(n int) (*slotLock, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := tryLock(root, n)
		if err != nil {
			if errors.Is(err, errBusy) {
				if msg := err.Error(); msg != errBusy.Error() {
					notes = append(notes, msg)
				}
				return nil, nil
			}
			return nil, exit.Runtime(err)
		}
		if err := l.writeRecord(h); err != nil {
			l.release()
			return nil, exit.Runtime(fmt.Errorf("write slot record %s: %w", l.path, err))
		}
		return l, nil
	}
	for _, n := range dirs {
		have[n] = true
		if l, err := try(n); l != nil || err != nil {
			return l, notes, err
		}
	}
	for n := 0; n < maxSlots; n++ {
		if have[n] {
			continue
		}
		if l, err := try(n); l != nil || err != nil {
			return l, notes, err
		}
	}
	return nil, notes, exit.Runtime(fmt.Errorf("no free slot in %s among %d: remove stale slot-N.lock files owned by other users or use another AZP_WORK", root, maxSlots))
}

// slotState reports, without taking it, whether slot n's lock is held and the last record.
type slotState struct {
	N      int
	Held   bool
	Record *slotRecord
	Err    error
}

func inspectSlot(root string, n int) slotState {
	st := slotState{N: n}
	p := lockPath(root, n)
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			st.Err = err
		}
		return st
	}
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		st.Err = err
		return st
	}
	if err := checkLockFile(p, &fst); err != nil {
		st.Err = err
		return st
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		st.Err = fmt.Errorf("query lock %s: %w", p, err)
		return st
	}
	st.Held = lk.Type != unix.F_UNLCK
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err == nil && len(b) > 0 {
		var r slotRecord
		if json.Unmarshal(b, &r) == nil {
			st.Record = &r
		}
	}
	return st
}

func (r *slotRecord) describe() string {
	if r == nil {
		return "no record"
	}
	parts := []string{}
	if r.Agent != "" {
		parts = append(parts, "agent "+r.Agent)
	}
	if r.Task != "" {
		parts = append(parts, "task "+r.Task)
	}
	if r.Host != "" {
		parts = append(parts, "host "+r.Host)
	}
	if r.PID != 0 {
		parts = append(parts, "pid "+strconv.Itoa(r.PID))
	}
	if !r.Since.IsZero() {
		parts = append(parts, "since "+r.Since.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return strings.Join(parts, ", ")
}
