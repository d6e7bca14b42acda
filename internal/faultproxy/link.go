package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	readBuffer = 32 << 10
	// queueChunks bounds each direction's delay line; a full line pushes back on the sender as a slow link would.
	queueChunks = 1024
	// burst is how much sending time a bandwidth-limited direction may save up while idle.
	burst = 20 * time.Millisecond
)

// link is one accepted connection and, once dialled, its connection to the target.
type link struct {
	client net.Conn
	// dead marks a black-holed link: everything read is dropped, no close is passed on, and it waits to be closed.
	dead atomic.Bool
	done chan struct{} // closed by close

	mu     sync.Mutex
	server net.Conn
	closed bool
}

// attach records the target connection; it reports false if the link was closed while dialling.
func (l *link) attach(server net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = server
	return true
}

// close closes both connections; reset makes the peers see a reset rather than an orderly end.
func (l *link) close(reset bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	server := l.server
	l.mu.Unlock()
	close(l.done)
	closeConn(l.client, reset)
	if server != nil {
		closeConn(server, reset)
	}
}

func closeConn(c net.Conn, reset bool) {
	if tc, ok := c.(*net.TCPConn); ok && reset {
		tc.SetLinger(0) // closing then sends RST
	}
	c.Close()
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.forget(l)
	if l.dead.Load() {
		p.discard(l)
		<-l.done
		return
	}
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		l.close(true)
		return
	}
	if !l.attach(server) {
		closeConn(server, true)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, l.client, server, &p.up, &p.toTarget) })
	wg.Go(func() { p.pipe(l, server, l.client, &p.down, &p.fromTarget) })
	wg.Wait()
	if l.dead.Load() {
		<-l.done
	}
	l.close(false)
}

// discard reads a black-holed connection that never reached the target, so its sender hears nothing but is not blocked.
func (p *Proxy) discard(l *link) {
	buf := make([]byte, readBuffer)
	for {
		n, err := l.client.Read(buf)
		p.dropped.Add(int64(n))
		if err != nil {
			return
		}
	}
}

type chunk struct {
	data []byte
	at   time.Time // when it was read; it may be written at+delay
}

// pipe copies one direction. Reading and writing run apart, joined by a bounded queue, so that delay holds bytes back
// without slowing the stream down.
func (p *Proxy) pipe(l *link, src, dst net.Conn, b *bucket, forwarded *atomic.Int64) {
	queue := make(chan chunk, queueChunks)
	var wg sync.WaitGroup
	wg.Go(func() { p.read(l, src, queue) })
	p.write(l, dst, queue, b, forwarded)
	wg.Wait()
}

func (p *Proxy) read(l *link, src net.Conn, queue chan<- chunk) {
	defer close(queue)
	buf := make([]byte, readBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{at: time.Now(), data: bytes.Clone(buf[:n])}
			if l.dead.Load() {
				p.dropped.Add(int64(n))
			} else {
				select {
				case queue <- c:
				case <-l.done:
					return
				}
			}
		}
		if err != nil {
			// An orderly end is passed on by the writer once the queue drains; anything else breaks the whole link,
			// unless it is black-holed, where nothing may reach the other side.
			if !errors.Is(err, io.EOF) && !l.dead.Load() {
				l.close(true)
			}
			return
		}
	}
}

func (p *Proxy) write(l *link, dst net.Conn, queue <-chan chunk, b *bucket, forwarded *atomic.Int64) {
	for {
		var (
			c  chunk
			ok bool
		)
		select {
		case c, ok = <-queue:
		case <-l.done:
			return
		}
		if !ok {
			p.endWrite(l, dst)
			return
		}
		if !p.waitDelay(l, c.at) {
			return
		}
		for data := c.data; len(data) > 0; {
			if l.dead.Load() {
				p.dropped.Add(int64(len(data)))
				break
			}
			n, at := b.take(len(data))
			if !waitUntil(l, at, nil) {
				return
			}
			forwarded.Add(int64(n))
			if _, err := dst.Write(data[:n]); err != nil {
				l.close(true)
				return
			}
			data = data[n:]
		}
	}
}

// endWrite passes an orderly end of stream on as a half close, keeping the other direction open.
func (p *Proxy) endWrite(l *link, dst net.Conn) {
	if l.dead.Load() {
		return
	}
	hc, ok := dst.(interface{ CloseWrite() error })
	if !ok || hc.CloseWrite() != nil {
		l.close(true)
	}
}

// waitDelay waits until the chunk read at `at` is due under the current delay; false means the link closed.
func (p *Proxy) waitDelay(l *link, at time.Time) bool {
	for {
		changed := p.delayChanged()
		due := at.Add(time.Duration(p.delay.Load()))
		if !time.Now().Before(due) {
			return true
		}
		if !waitUntil(l, due, changed) {
			return false
		}
	}
}

// waitUntil blocks until t, an early wake-up from wake, or the link closing (false).
func waitUntil(l *link, t time.Time, wake <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-l.done:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-wake:
		return true
	case <-l.done:
		return false
	}
}

// bucket paces one direction. It is a token bucket kept as the time at which the link is next free to send.
type bucket struct {
	mu   sync.Mutex
	rate int // bytes per second; 0 = unlimited
	free time.Time
}

func (b *bucket) set(rate int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = max(rate, 0)
	b.free = time.Time{}
}

// take books up to n bytes and returns how many and when they may be written. Pieces are at most one burst long, so a
// slow link sends steadily instead of in large lumps.
func (b *bucket) take(n int) (int, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return n, time.Time{}
	}
	n = min(n, max(1, int(int64(b.rate)*int64(burst)/int64(time.Second))))
	if earliest := time.Now().Add(-burst); b.free.Before(earliest) {
		b.free = earliest
	}
	b.free = b.free.Add(time.Duration(int64(n) * int64(time.Second) / int64(b.rate)))
	return n, b.free
}
