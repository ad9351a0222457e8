package agentpkg

import (
	"errors"
	"io"
	"sync"
)

// chunkPipe runs a producer (reading from src) in its own goroutine and hands its output to the
// consumer in chunks through a bounded queue. It is how download+hash, gunzip and tar+write
// overlap on different cores, the way curl | tar -xz spreads over three processes.
type chunkPipe struct {
	full chan []byte
	free chan []byte
	done chan struct{}
	fin  chan struct{}
	once sync.Once
	cur  []byte
	buf  []byte // backing buffer of cur, returned to free when consumed
	err  error  // producer's final error, valid after fin is closed
}

var errPipeClosed = errors.New("pipe closed")

// newChunkPipe starts reading src with chunks of size bytes, at most depth of them queued.
// onChunk, when set, sees every chunk in order before it is queued; an error from it stops the
// producer (used for hashing and for writing the cache copy).
func newChunkPipe(src io.Reader, size, depth int, onChunk func([]byte) error) *chunkPipe {
	p := &chunkPipe{
		full: make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		done: make(chan struct{}),
		fin:  make(chan struct{}),
	}
	for range depth + 2 {
		p.free <- make([]byte, size)
	}
	go p.produce(src, onChunk)
	return p
}

func (p *chunkPipe) produce(src io.Reader, onChunk func([]byte) error) {
	defer close(p.fin)
	defer close(p.full)
	for {
		var b []byte
		select {
		case b = <-p.free:
		case <-p.done:
			p.err = errPipeClosed
			return
		}
		n, err := fill(src, b[:cap(b)])
		if n > 0 {
			if onChunk != nil {
				if cerr := onChunk(b[:n]); cerr != nil {
					p.err = cerr
					return
				}
			}
			select {
			case p.full <- b[:n]:
			case <-p.done:
				p.err = errPipeClosed
				return
			}
		}
		if err != nil {
			p.err = err // io.EOF at the normal end
			return
		}
	}
}

// fill reads until b is full or src fails. Unlike io.ReadFull it passes src's errors through
// unchanged, so a truncated source (io.ErrUnexpectedEOF) is not mistaken for its end.
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := src.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			p.free <- p.buf[:cap(p.buf)]
			p.buf = nil
		}
		c, ok := <-p.full
		if !ok {
			<-p.fin
			return 0, p.err
		}
		p.cur, p.buf = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Close stops the producer and waits for it. The producer's own read of src must be made to
// return (by cancelling its context) for Close to return promptly.
func (p *chunkPipe) Close() error {
	p.once.Do(func() { close(p.done) })
	for range p.full { // unblock a producer waiting to queue
	}
	<-p.fin
	return nil
}
