package wire

import (
	"context"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a real loopback TCP connection, framed, closed at cleanup.
func tcpPair(tb testing.TB, maxFrame int) (client, server *Conn) {
	tb.Helper()
	ln, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- nc
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cnc, err := Dial(ctx, ln.Addr().String(), nil)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	var snc net.Conn
	select {
	case snc = <-accepted:
	case err := <-acceptErr:
		tb.Fatalf("accept: %v", err)
	}
	client, server = NewConn(cnc, maxFrame), NewConn(snc, maxFrame)
	tb.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}
