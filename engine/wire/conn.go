package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Protocol constants.
const (
	Magic              = "MKWP"
	ProtocolVersion    = 1 // highest protocol this build speaks
	MinProtocolVersion = 1 // lowest protocol this build accepts
	DefaultMaxFrame    = 16 << 20
)

const (
	headerLen = 13 // length u32, kind u8, request id u64

	readBufferSize = 64 << 10
	// maxPending bounds the bytes queued for the flusher: a writer faster than the network waits instead of growing memory.
	maxPending = 1 << 20
	// maxRetained bounds the write buffers kept between flushes, so one huge frame does not pin its memory forever.
	maxRetained = 4 << 20
	// allocChunk is how much payload memory a frame header alone can make ReadFrame allocate; larger payloads grow as
	// their bytes actually arrive, so a lying length prefix cannot reserve maxFrame bytes.
	allocChunk = 1 << 20
	// closeLinger bounds how long Close waits for queued frames to reach a peer that stopped reading.
	closeLinger = time.Second
	// Before writing a batch smaller than yieldBelow, the flusher yields the processor up to maxYields times while the
	// batch keeps growing: goroutines about to write (handlers finishing, callers whose responses just arrived) join it.
	// On loopback this packs about fifteen frames per syscall under load where waking at once sent one or two.
	yieldBelow = 32 << 10
	maxYields  = 4
)

// Kind is the type of a frame.
type Kind uint8

// Frame kinds. 16..63 are reserved for journal streams and shadowing.
const (
	KindHello    Kind = 1 // client → server, first frame, payload Hello
	KindWelcome  Kind = 2 // server → client, payload Welcome
	KindRequest  Kind = 3 // payload Request
	KindResponse Kind = 4 // payload Response, same request id as its request
	KindError    Kind = 5 // connection-level error, payload Error; the sender closes afterwards
	KindPing     Kind = 6
	KindPong     Kind = 7

	KindStreamStart  Kind = 16 // replica → primary, payload StreamStart
	KindStreamAccept Kind = 17 // primary → replica, payload StreamAccept
	KindJournalBatch Kind = 18 // primary → replica, payload JournalBatch
	KindAck          Kind = 19 // replica → primary, payload Ack
	KindHeartbeat    Kind = 20 // both ways, payload Heartbeat
	KindConfig       Kind = 21 // primary → replica: the mirror configuration (JSON bytes, opaque to wire)
	KindHandoff      Kind = 22 // primary → backup: planned failover request, payload Handoff
	KindHandoffDone  Kind = 23 // backup → primary, payload HandoffDone
	KindMirrorState  Kind = 24 // primary → backup: failover state, payload MirrorState; backup → primary: the same, echoed
)

var kindNames = map[Kind]string{
	KindHello: "hello", KindWelcome: "welcome", KindRequest: "request", KindResponse: "response",
	KindError: "error", KindPing: "ping", KindPong: "pong",
	KindStreamStart: "stream start", KindStreamAccept: "stream accept", KindJournalBatch: "journal batch", KindAck: "ack",
	KindHeartbeat: "heartbeat", KindConfig: "config", KindHandoff: "handoff", KindHandoffDone: "handoff done",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind " + strconv.Itoa(int(k))
}

// Frame is one unit on the wire.
type Frame struct {
	Kind    Kind
	ReqID   uint64
	Payload []byte
}

// Conn frames a net.Conn. Reads are buffered and meant for one reader goroutine. Writes are queued and sent by a flusher
// goroutine owned by the Conn: whatever accumulates while one write syscall is in flight (or while the flusher yields
// before a small batch) leaves in the next one, so pipelined traffic costs few syscalls under load, and a writer never
// waits for the network unless the queue is full.
type Conn struct {
	nc       net.Conn
	r        *bufio.Reader
	maxFrame int

	mu        sync.Mutex
	dataReady sync.Cond // the flusher waits for frames, closing or failure
	spaceFree sync.Cond // writers wait for the queue to drain below maxPending
	queue     []byte    // frames waiting for the flusher
	spare     []byte    // the buffer the flusher last wrote, reused as the next queue
	idle      bool      // the flusher is waiting on dataReady
	werr      error     // first write failure; the connection is unusable afterwards
	closing   bool

	flushed   chan struct{} // closed when the flusher exits
	closeOnce sync.Once
	closeErr  error
}

// NewConn wraps nc and starts its flusher goroutine, which runs until Close. maxFrame bounds the payload of frames read
// (DefaultMaxFrame when <= 0).
func NewConn(nc net.Conn, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	c := &Conn{
		nc:       nc,
		r:        bufio.NewReaderSize(nc, readBufferSize),
		maxFrame: maxFrame,
		flushed:  make(chan struct{}),
	}
	c.dataReady.L = &c.mu
	c.spaceFree.L = &c.mu
	go c.flushLoop()
	return c
}

// ReadFrame reads the next frame. The payload is a fresh slice owned by the caller (nil when empty). A payload larger than
// the limit fails with ErrFrameTooLarge; after any error the stream is out of step and the Conn must be closed.
func (c *Conn) ReadFrame() (Frame, error) {
	hdr, err := c.r.Peek(headerLen)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	f := Frame{Kind: Kind(hdr[4]), ReqID: binary.BigEndian.Uint64(hdr[5:13])}
	if _, err := c.r.Discard(headerLen); err != nil {
		return Frame{}, fmt.Errorf("read frame: %w", err)
	}
	if uint64(n) > uint64(c.maxFrame) {
		return Frame{}, fmt.Errorf("read frame: %w: %d bytes, limit %d", ErrFrameTooLarge, n, c.maxFrame)
	}
	if f.Kind == 0 {
		return Frame{}, fmt.Errorf("read frame: %w: frame kind 0", ErrMalformed)
	}
	if f.Payload, err = readPayload(c.r, int(n)); err != nil {
		return Frame{}, fmt.Errorf("read frame payload of %d bytes: %w", n, err)
	}
	return f, nil
}

func readPayload(r io.Reader, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if n <= allocChunk {
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		return p, nil
	}
	p := make([]byte, 0, allocChunk)
	for len(p) < n {
		if len(p) == cap(p) {
			p = slices.Grow(p, min(cap(p), n-len(p)))
		}
		k, err := io.ReadFull(r, p[len(p):min(cap(p), n)])
		p = p[:len(p)+k]
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// readMagic reads the connection preamble.
func (c *Conn) readMagic() ([]byte, error) {
	m := make([]byte, len(Magic))
	if _, err := io.ReadFull(c.r, m); err != nil {
		return nil, err
	}
	return m, nil
}

// AppendFrame appends the wire form of f to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Payload)))
	dst = append(dst, byte(f.Kind))
	dst = binary.BigEndian.AppendUint64(dst, f.ReqID)
	return append(dst, f.Payload...)
}

// WriteFrame queues f for sending; it is safe for concurrent use and copies the payload, so the caller may reuse it at
// once. It blocks only while the queue is full. A nil error means the frame was queued: a later network failure shows up
// as an error from the next WriteFrame and from ReadFrame.
func (c *Conn) WriteFrame(f Frame) error {
	return c.write(nil, f)
}

// write queues prefix (raw bytes, for the magic) and f together, so they leave in one syscall.
func (c *Conn) write(prefix []byte, f Frame) error {
	if uint64(len(f.Payload)) > math.MaxUint32 {
		return fmt.Errorf("write frame: %w: %d bytes", ErrFrameTooLarge, len(f.Payload))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) >= maxPending && c.werr == nil && !c.closing {
		c.spaceFree.Wait()
	}
	if c.werr != nil {
		return fmt.Errorf("write frame: %w", c.werr)
	}
	if c.closing {
		return fmt.Errorf("write frame: %w", net.ErrClosed)
	}
	c.queue = append(c.queue, prefix...)
	c.queue = AppendFrame(c.queue, f)
	if c.idle {
		c.dataReady.Signal()
	}
	return nil
}

func (c *Conn) flushLoop() {
	defer close(c.flushed)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.queue) == 0 && !c.closing && c.werr == nil {
			c.idle = true
			c.dataReady.Wait()
		}
		c.idle = false
		if c.werr != nil || len(c.queue) == 0 {
			return
		}
		for n, yields := 0, 0; yields < maxYields && len(c.queue) < yieldBelow && len(c.queue) != n && !c.closing; yields++ {
			n = len(c.queue)
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		out := c.queue
		c.queue = c.spare[:0]
		c.spaceFree.Broadcast()
		c.mu.Unlock()
		_, err := c.nc.Write(out)
		c.mu.Lock()
		if cap(out) <= maxRetained {
			c.spare = out[:0]
		} else {
			c.spare = nil
		}
		if err != nil {
			c.werr = err
			c.spaceFree.Broadcast()
			// A partial frame may have left: the stream is out of step, so the reader must fail too.
			c.nc.Close()
			return
		}
	}
}

// SetDeadline sets the read and write deadline of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// stopWriting refuses further frames and waits until the flusher has sent the queued ones (at most closeLinger for a peer
// that does not read) and stopped.
func (c *Conn) stopWriting() {
	c.mu.Lock()
	c.closing = true
	c.dataReady.Signal()
	c.spaceFree.Broadcast()
	c.mu.Unlock()
	// An error here means the connection is already broken, which only makes the flusher finish sooner.
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeLinger))
	<-c.flushed
}

// CloseWrite sends the frames already queued (waiting at most closeLinger for a peer that does not read), then shuts down
// the sending side, so the peer reads them and then the end of the stream; reading goes on until Close. Later writes fail.
func (c *Conn) CloseWrite() error {
	c.stopWriting()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("close the sending side: %w", err)
		}
	}
	return nil
}

// Close sends the frames already queued (waiting at most closeLinger for a peer that does not read), then closes the
// connection. It is safe to call more than once and concurrently with other methods.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.stopWriting()
		// The flusher closes the connection itself after a write failure; that is not a failure of Close.
		if err := c.nc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
	})
	return c.closeErr
}
