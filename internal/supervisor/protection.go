package supervisor

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
)

// protector holds ECS task scale-in protection while a job runs. Its calls go to the ECS agent,
// which calls the ECS API and can take seconds, so they run on their own goroutine: the watch
// loop and the stop sequence never wait for them. Only the latest wish counts.
type protector struct {
	p    *ecs.Protection
	stop *stopper
	log  *slog.Logger
	wish chan bool
	// enabledAt is when protection was last turned on (unix nanoseconds), 0 while off.
	enabledAt atomic.Int64
}

func newProtector(p *ecs.Protection, stop *stopper, log *slog.Logger) *protector {
	pr := &protector{p: p, stop: stop, log: log, wish: make(chan bool, 1)}
	go pr.run()
	return pr
}

// renew extends protection for a job that outlasts half its expiry.
func (pr *protector) renew() {
	if at := pr.enabledAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > time.Duration(protectionTTL/2)*time.Minute {
		pr.want(true)
	}
}

// want asks for protection on or off; a wish not yet carried out is replaced.
func (pr *protector) want(on bool) {
	select {
	case <-pr.wish:
	default:
	}
	pr.wish <- on
}

func (pr *protector) run() {
	for on := range pr.wish {
		// Once stopping, protection no longer matters: the task is going anyway.
		if pr.stop.isRequested() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := pr.p.Set(ctx, on, protectionTTL)
		cancel()
		if err != nil {
			pr.log.Warn("ECS task protection", "enabled", on, "err", err)
			continue
		}
		if on {
			pr.enabledAt.Store(time.Now().UnixNano())
		} else {
			pr.enabledAt.Store(0)
		}
		pr.log.Info("ECS task scale-in protection", "enabled", on)
	}
}
