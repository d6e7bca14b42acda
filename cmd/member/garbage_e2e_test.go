package main_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// TestGarbageDoesNotDisturbOthers sends hostile input on many connections while a well-behaved client keeps working: each bad
// connection is closed by the member, and the good client never sees an error.
func TestGarbageDoesNotDisturbOthers(t *testing.T) {
	m := memberproc.Start(t, memberproc.Config{Name: "garbage"})
	memberproc.CLI(t, "db", "create", "APP", "--member", m.Addr)
	good := m.Client(t, 2)

	stop := make(chan struct{})
	goodErr := make(chan error, 1)
	var goodOps int
	go func() {
		defer close(goodErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := good.Set(ctx, "APP", fmt.Sprintf(`^G(%d)`, i), []byte("ok"))
			cancel()
			if err != nil {
				goodErr <- err
				return
			}
			goodOps++
		}
	}()

	handshake := func(c net.Conn) *wire.Conn {
		wc := wire.NewConn(c, wire.DefaultMaxFrame)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := wire.ClientHandshake(ctx, wc, wire.Hello{Protocol: wire.ProtocolVersion, MinProtocol: wire.MinProtocolVersion, Purpose: wire.PurposeClient, Name: "hostile"}); err != nil {
			t.Errorf("handshake: %v", err)
		}
		return wc
	}
	random := make([]byte, 4096)
	rand.Read(random)
	oversized := binary.BigEndian.AppendUint32(nil, 1<<31)
	oversized = append(oversized, byte(wire.KindRequest))
	oversized = binary.BigEndian.AppendUint64(oversized, 1)

	cases := []struct {
		name string
		send func(c net.Conn)
	}{
		{"random bytes", func(c net.Conn) { c.Write(random) }},
		{"wrong magic", func(c net.Conn) { c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }},
		{"oversized frame after handshake", func(c net.Conn) { handshake(c); c.Write(oversized) }},
		{"malformed request after handshake", func(c net.Conn) {
			wc := handshake(c)
			wc.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: 7, Payload: random[:100]})
		}},
		{"unknown frame kind", func(c net.Conn) {
			wc := handshake(c)
			wc.WriteFrame(wire.Frame{Kind: 99, ReqID: 1})
		}},
		{"truncated frame then close", func(c net.Conn) { handshake(c); c.Write(oversized[:6]) }},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", m.Addr)
				if err != nil {
					t.Errorf("%s: dial: %v", tc.name, err)
					return
				}
				defer c.Close()
				tc.send(c)
				if tc.name == "truncated frame then close" {
					return
				}
				// The member must close the connection (possibly after an error frame), not hang on it.
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.Copy(io.Discard, c); err != nil {
					t.Errorf("%s: member did not close the connection: %v", tc.name, err)
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	if err := <-goodErr; err != nil {
		t.Fatalf("well-behaved client failed while others sent garbage: %v", err)
	}
	if goodOps == 0 {
		t.Fatal("well-behaved client made no progress")
	}
	if !m.Running() {
		t.Fatalf("member died:\n%s", m.LogTail(20))
	}
}
