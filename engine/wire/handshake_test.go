package wire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func testWelcome(h Hello) (Welcome, error) {
	return Welcome{Software: "0.1.0", Member: "m1", AdminAddr: "127.0.0.1:8080"}, nil
}

type serverResult struct {
	hello Hello
	err   error
}

// serveHandshake runs ServerHandshake on server in the background.
func serveHandshake(tb testing.TB, server *Conn, welcome func(Hello) (Welcome, error)) <-chan serverResult {
	tb.Helper()
	out := make(chan serverResult, 1)
	go func() {
		h, err := ServerHandshake(testContext(tb), server, welcome)
		out <- serverResult{h, err}
	}()
	return out
}

func TestHandshake(t *testing.T) {
	client, server := tcpPair(t, 1<<20)
	done := serveHandshake(t, server, testWelcome)
	hello := Hello{Software: "0.1.0", Purpose: PurposeClient, Name: "app"}
	w, err := ClientHandshake(testContext(t), client, hello)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	want := Welcome{Protocol: ProtocolVersion, Software: "0.1.0", Member: "m1", AdminAddr: "127.0.0.1:8080", MaxFrame: 1 << 20}
	if w != want {
		t.Fatalf("welcome %+v, want %+v", w, want)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("server handshake: %v", res.err)
	}
	if res.hello.Name != "app" || res.hello.Purpose != PurposeClient || res.hello.Protocol != ProtocolVersion {
		t.Fatalf("server saw %+v", res.hello)
	}
	// The connection carries frames afterwards.
	if err := client.WriteFrame(Frame{Kind: KindPing, ReqID: 3}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if f, err := server.ReadFrame(); err != nil || f.Kind != KindPing || f.ReqID != 3 {
		t.Fatalf("read after handshake: %+v, %v", f, err)
	}
}

func TestHandshakeWrongMagic(t *testing.T) {
	client, server := tcpPair(t, 0)
	done := serveHandshake(t, server, testWelcome)
	if err := client.write([]byte("GET / HTTP/1.1\r\n\r\n"), Frame{Kind: KindHello}); err != nil {
		t.Fatalf("write: %v", err)
	}
	res := <-done
	if !errors.Is(res.err, ErrHandshake) || !errors.Is(res.err, ErrBadRequest) {
		t.Fatalf("server: got %v, want a bad-request handshake failure", res.err)
	}
	server.Close()
	f, err := client.ReadFrame()
	if err != nil || f.Kind != KindError {
		t.Fatalf("client got %+v, %v; want one error frame", f, err)
	}
	e, err := DecodeError(f.Payload)
	if err != nil || e.Code != CodeBadRequest || !strings.Contains(e.Message, "magic") {
		t.Fatalf("error frame %+v, %v", e, err)
	}
	if _, err := client.ReadFrame(); err == nil {
		t.Fatal("server kept the connection open after refusing it")
	}
}

func TestHandshakeVersionMismatch(t *testing.T) {
	tests := []struct {
		name     string
		min, max uint16
	}{
		{"client too new", ProtocolVersion + 1, ProtocolVersion + 3},
		{"client too old", 0, MinProtocolVersion - 1},
		{"inverted range", ProtocolVersion + 1, ProtocolVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t, 0)
			done := serveHandshake(t, server, testWelcome)
			// clientHandshake sends the range as given, where ClientHandshake would fill in a zero range.
			_, err := clientHandshake(testContext(t), client, Hello{Protocol: tt.max, MinProtocol: tt.min, Purpose: PurposeClient})
			if !errors.Is(err, ErrVersion) {
				t.Fatalf("client: got %v, want a version handshake failure", err)
			}
			for _, v := range []string{"client speaks", "server speaks", "1..1"} {
				if !strings.Contains(err.Error(), v) {
					t.Fatalf("client error %q does not name both ranges (%q missing)", err, v)
				}
			}
			if res := <-done; !errors.Is(res.err, ErrVersion) {
				t.Fatalf("server: got %v, want ErrVersion", res.err)
			}
		})
	}
}

func TestHandshakeRefusedByServer(t *testing.T) {
	client, server := tcpPair(t, 0)
	done := serveHandshake(t, server, func(h Hello) (Welcome, error) {
		return Welcome{}, &Error{Code: CodeShuttingDown, Message: "member m1 is shutting down"}
	})
	_, err := ClientHandshake(testContext(t), client, Hello{Purpose: PurposeClient})
	if !errors.Is(err, ErrHandshake) || !errors.Is(err, ErrShuttingDown) || !strings.Contains(err.Error(), "member m1 is shutting down") {
		t.Fatalf("client: got %v", err)
	}
	if res := <-done; !errors.Is(res.err, ErrShuttingDown) {
		t.Fatalf("server: got %v", res.err)
	}
}

func TestHandshakeUnknownPurpose(t *testing.T) {
	client, server := tcpPair(t, 0)
	done := serveHandshake(t, server, testWelcome)
	_, err := ClientHandshake(testContext(t), client, Hello{Purpose: 9})
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "purpose 9") {
		t.Fatalf("client: got %v", err)
	}
	<-done
}

func TestHandshakeContextDeadline(t *testing.T) {
	client, _ := tcpPair(t, 0) // the server never answers
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := ClientHandshake(ctx, client, Hello{Purpose: PurposeClient})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrHandshake) {
		t.Fatalf("got %v, want a deadline handshake failure", err)
	}
}

func TestHandshakeContextCancel(t *testing.T) {
	_, server := tcpPair(t, 0) // the client never speaks
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ServerHandshake(ctx, server, testWelcome)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestHandshakeOverTLS(t *testing.T) {
	serverConf, clientConf := testTLS(t)
	ln, err := Listen("127.0.0.1:0", serverConf)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		c := NewConn(nc, 0)
		defer c.Close()
		_, err = ServerHandshake(testContext(t), c, testWelcome)
		done <- err
	}()
	nc, err := Dial(testContext(t), ln.Addr().String(), clientConf)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := NewConn(nc, 0)
	defer c.Close()
	if _, ok := nc.(*tls.Conn); !ok {
		t.Fatalf("dialled a %T, want *tls.Conn", nc)
	}
	if _, err := ClientHandshake(testContext(t), c, Hello{Purpose: PurposeClient}); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// testTLS returns configurations for a self-signed server certificate valid for 127.0.0.1.
func testTLS(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "member"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool}
	return server, client
}
