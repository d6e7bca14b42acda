package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	client, server := tcpPair(t, 0)
	frames := []Frame{
		{Kind: KindRequest, ReqID: 1, Payload: []byte("hello")},
		{Kind: KindResponse, ReqID: 1<<64 - 1},
		{Kind: KindPing, ReqID: 0, Payload: []byte{0}},
		{Kind: Kind(40), ReqID: 7, Payload: bytes.Repeat([]byte{0xAB}, readBufferSize*3+5)},
		{Kind: KindError, ReqID: 9, Payload: bytes.Repeat([]byte{1, 2, 3}, allocChunk)},
	}
	for _, f := range frames {
		if err := client.WriteFrame(f); err != nil {
			t.Fatalf("write %s frame: %v", f.Kind, err)
		}
	}
	for _, want := range frames {
		got, err := server.ReadFrame()
		if err != nil {
			t.Fatalf("read %s frame: %v", want.Kind, err)
		}
		if got.Kind != want.Kind || got.ReqID != want.ReqID || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("got %s frame id %d with %d bytes, want %s frame id %d with %d bytes",
				got.Kind, got.ReqID, len(got.Payload), want.Kind, want.ReqID, len(want.Payload))
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"oversize", AppendFrame(nil, Frame{Kind: KindRequest, Payload: make([]byte, 101)}), ErrFrameTooLarge},
		{"length lies", []byte{0xFF, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 0, 0, 0, 0, 1}, ErrFrameTooLarge},
		{"kind zero", AppendFrame(nil, Frame{Kind: 0, Payload: []byte("x")}), ErrMalformed},
		{"truncated header", []byte{0, 0, 0, 1, 3}, io.ErrUnexpectedEOF},
		{"truncated payload", AppendFrame(nil, Frame{Kind: KindRequest, Payload: []byte("abcdef")})[:16], io.ErrUnexpectedEOF},
		{"empty stream", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConn(&bufferConn{r: bytes.NewReader(tt.input)}, 100)
			defer c.Close()
			_, err := c.ReadFrame()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOversizeFrameOverTCP(t *testing.T) {
	client, server := tcpPair(t, 1024)
	if err := client.WriteFrame(Frame{Kind: KindRequest, ReqID: 1, Payload: make([]byte, 1025)}); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, err := server.ReadFrame()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestConcurrentWriteFrame(t *testing.T) {
	client, server := tcpPair(t, 0)
	const writers, perWriter = 32, 500
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := uint64(w)<<32 | uint64(i)
				payload := bytes.Repeat([]byte{byte(w)}, i%300)
				if err := client.WriteFrame(Frame{Kind: KindRequest, ReqID: id, Payload: payload}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	next := make([]int, writers) // frames of one writer arrive in the order it wrote them
	for range writers * perWriter {
		f, err := server.ReadFrame()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		w, i := int(f.ReqID>>32), int(f.ReqID&0xFFFFFFFF)
		if w >= writers || i != next[w] {
			t.Fatalf("frame %d of writer %d arrived, want frame %d", i, w, next[w])
		}
		next[w]++
		if want := bytes.Repeat([]byte{byte(w)}, i%300); f.Kind != KindRequest || !bytes.Equal(f.Payload, want) {
			t.Fatalf("frame %d of writer %d damaged", i, w)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
}

func TestCloseSendsQueuedFrames(t *testing.T) {
	client, server := tcpPair(t, 0)
	const n = 1000
	for i := range n {
		if err := client.WriteFrame(Frame{Kind: KindPing, ReqID: uint64(i), Payload: make([]byte, 1000)}); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- client.Close() }()
	for i := range n {
		f, err := server.ReadFrame()
		if err != nil || f.ReqID != uint64(i) {
			t.Fatalf("frame %d: got id %d, err %v", i, f.ReqID, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := server.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: got %v, want EOF", err)
	}
	if err := client.WriteFrame(Frame{Kind: KindPing}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: got %v, want net.ErrClosed", err)
	}
}

func TestWriteFailureIsSticky(t *testing.T) {
	client, server := tcpPair(t, 0)
	server.Close()
	var err error
	// The first writes may still fit the kernel buffers; the peer's reset fails a later one.
	for i := 0; err == nil; i++ {
		if i > 100000 {
			t.Fatal("writes to a closed peer kept succeeding")
		}
		err = client.WriteFrame(Frame{Kind: KindPing, Payload: make([]byte, 1000)})
	}
	if err2 := client.WriteFrame(Frame{Kind: KindPing}); err2 == nil {
		t.Fatal("write after a failure succeeded")
	}
	if _, err := client.ReadFrame(); err == nil {
		t.Fatal("read after a write failure succeeded")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Frame{Kind: KindRequest, ReqID: 5, Payload: []byte("abc")}))
	f.Add(AppendFrame(AppendFrame(nil, Frame{Kind: KindPing}), Frame{Kind: KindPong, ReqID: 1 << 40}))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, input []byte) {
		c := NewConn(&bufferConn{r: bytes.NewReader(input)}, 1<<10)
		defer c.Close()
		var reencoded []byte
		for {
			fr, err := c.ReadFrame()
			if err != nil {
				break
			}
			if len(fr.Payload) > 1<<10 {
				t.Fatalf("payload of %d bytes passed the limit", len(fr.Payload))
			}
			reencoded = AppendFrame(reencoded, fr)
		}
		if !bytes.HasPrefix(input, reencoded) {
			t.Fatalf("frames re-encode to %x, not a prefix of the input %x", reencoded, input)
		}
	})
}

func BenchmarkWriteFrame(b *testing.B) {
	client, server := tcpPair(b, 0)
	go func() {
		for {
			if _, err := server.ReadFrame(); err != nil {
				return
			}
		}
	}()
	payload := make([]byte, 64)
	b.SetBytes(int64(len(payload) + headerLen))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := client.WriteFrame(Frame{Kind: KindRequest, Payload: payload}); err != nil {
				b.Errorf("write: %v", err)
				return
			}
		}
	})
}

// bufferConn is a net.Conn reading from r and discarding writes, for decoding tests without a network.
type bufferConn struct {
	net.Conn
	r io.Reader
}

func (b *bufferConn) Read(p []byte) (int, error)       { return b.r.Read(p) }
func (b *bufferConn) Write(p []byte) (int, error)      { return len(p), nil }
func (b *bufferConn) Close() error                     { return nil }
func (b *bufferConn) SetWriteDeadline(time.Time) error { return nil }
