package agentpkg

import (
	"os"
	"sync"
)

// owner gives extracted entries to the agent's run-as user while they are created, so that no
// recursive chown over tens of thousands of files is needed afterwards. Only root can do that; an
// unprivileged installer owns what it creates anyway.
type owner struct {
	uid, gid int
	on       bool
}

func newOwner(uid, gid int) owner {
	return owner{uid: uid, gid: gid, on: os.Geteuid() == 0 && (uid > 0 || gid > 0)}
}

func (o owner) lchown(p string) error {
	if !o.on {
		return nil
	}
	return os.Lchown(p, o.uid, o.gid)
}

func (o owner) fchown(f *os.File) error {
	if !o.on {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}

// budget is a byte semaphore.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int
}

func newBudget(n int) *budget {
	b := &budget{free: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) take(n int) {
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}
