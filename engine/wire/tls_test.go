package wire_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

// accepted is what the server side saw of one connection.
type accepted struct {
	dn  string // peer DN after the protocol handshake
	err error  // of the protocol handshake
}

// serveTLS listens with conf (nil for plain TCP) and runs the protocol handshake on every connection, echoing one frame
// after a successful one. Each connection's outcome is sent on the returned channel.
func serveTLS(tb testing.TB, conf *tls.Config) (addr string, results <-chan accepted) {
	tb.Helper()
	ln, err := wire.Listen("127.0.0.1:0", conf)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	out := make(chan accepted, 16)
	done := make(chan struct{})
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			serveOne(tb, wire.NewConn(nc, 0), out)
		}
	}()
	return ln.Addr().String(), out
}

func serveOne(tb testing.TB, c *wire.Conn, out chan<- accepted) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := wire.ServerHandshake(ctx, c, func(wire.Hello) (wire.Welcome, error) {
		return wire.Welcome{Software: "test", Member: "server"}, nil
	})
	out <- accepted{dn: c.PeerDN(), err: err}
	if err != nil {
		return
	}
	f, err := c.ReadFrame()
	if err != nil {
		return
	}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindPong, ReqID: f.ReqID, Payload: f.Payload}); err != nil {
		tb.Errorf("echo: %v", err)
	}
}

// connect dials addr and runs the client side of the protocol handshake.
func connect(tb testing.TB, addr string, conf *tls.Config) (*wire.Conn, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := wire.Dial(ctx, addr, conf)
	if err != nil {
		return nil, err
	}
	c := wire.NewConn(nc, 0)
	if _, err := wire.ClientHandshake(ctx, c, wire.Hello{Software: "test", Purpose: wire.PurposeClient, Name: "t"}); err != nil {
		c.Close()
		return nil, err
	}
	tb.Cleanup(func() { c.Close() })
	return c, nil
}

func serverConfig(tb testing.TB, f wire.TLSFiles) *tls.Config {
	tb.Helper()
	conf, err := f.ServerConfig()
	if err != nil {
		tb.Fatalf("server config: %v", err)
	}
	return conf
}

func clientConfig(tb testing.TB, f wire.TLSFiles) *tls.Config {
	tb.Helper()
	conf, err := f.ClientConfig()
	if err != nil {
		tb.Fatalf("client config: %v", err)
	}
	return conf
}

func receive(tb testing.TB, results <-chan accepted) accepted {
	tb.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(10 * time.Second):
		tb.Fatal("server saw no connection")
		return accepted{}
	}
}

func TestMutualTLSRoundTrip(t *testing.T) {
	pki := testpki.New(t)
	addr, results := serveTLS(t, serverConfig(t, pki.Issue(t, "member-a")))
	c, err := connect(t, addr, clientConfig(t, pki.Issue(t, "member-b")))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if r := receive(t, results); r.err != nil || r.dn != "CN=member-b,O=mirrorkit" {
		t.Fatalf("server saw DN %q, err %v; want CN=member-b,O=mirrorkit", r.dn, r.err)
	}
	if dn := c.PeerDN(); dn != "CN=member-a,O=mirrorkit" {
		t.Fatalf("client saw DN %q, want CN=member-a,O=mirrorkit", dn)
	}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindPing, ReqID: 7, Payload: []byte("over tls")}); err != nil {
		t.Fatalf("write: %v", err)
	}
	f, err := c.ReadFrame()
	if err != nil || f.Kind != wire.KindPong || f.ReqID != 7 || string(f.Payload) != "over tls" {
		t.Fatalf("read %+v, %v; want the echoed ping", f, err)
	}
}

func TestPeerDNPlain(t *testing.T) {
	addr, results := serveTLS(t, nil)
	c, err := connect(t, addr, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if r := receive(t, results); r.err != nil || r.dn != "" {
		t.Fatalf("server saw DN %q, err %v; want none", r.dn, r.err)
	}
	if dn := c.PeerDN(); dn != "" {
		t.Fatalf("client saw DN %q on a plain connection", dn)
	}
	if dn := wire.PeerDN(nil); dn != "" {
		t.Fatalf("PeerDN(nil) = %q", dn)
	}
}

func TestPeerDNOfTLSConn(t *testing.T) {
	pki := testpki.New(t)
	addr, results := serveTLS(t, serverConfig(t, pki.Issue(t, "member-a")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := wire.Dial(ctx, addr, clientConfig(t, pki.Issue(t, "member-b")))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer nc.Close()
	if dn := wire.PeerDN(nc); dn != "CN=member-a,O=mirrorkit" {
		t.Fatalf("PeerDN(*tls.Conn) = %q, want CN=member-a,O=mirrorkit", dn)
	}
	nc.Close()
	receive(t, results)
}

func TestTLSRefusals(t *testing.T) {
	pki := testpki.New(t)
	other := testpki.Other(t)
	serverFiles := pki.Issue(t, "member-a")
	clientFiles := pki.Issue(t, "member-b")

	noCert := clientConfig(t, clientFiles).Clone()
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil
	}
	// The intruder trusts any server, so only the server's verification of the intruder is under test.
	intruder := clientConfig(t, other.Issue(t, "intruder")).Clone()
	intruder.VerifyConnection = nil

	tests := []struct {
		name               string
		server, client     *tls.Config
		clientKind         error
		clientSays         string
		serverKind         error
		serverSays         string
		serverHandshakeErr bool // false: the TLS handshake fails before the server's protocol handshake starts
	}{
		{
			name: "client without certificate", server: serverConfig(t, serverFiles), client: noCert,
			clientKind: wire.ErrCertificateRefused, clientSays: "requires a client certificate",
			serverKind: wire.ErrCertificateRefused, serverSays: "presented no certificate",
		},
		{
			name: "client certificate from another CA", server: serverConfig(t, serverFiles), client: intruder,
			clientKind: wire.ErrCertificateRefused, clientSays: "refused this side's certificate (unknown certificate authority)",
			serverKind: wire.ErrCertificateRefused, serverSays: "is not trusted",
		},
		{
			name: "server certificate from another CA", server: serverConfig(t, other.Issue(t, "impostor")),
			client:     clientConfig(t, clientFiles),
			clientKind: wire.ErrCertificateRefused, clientSays: "is not trusted",
			serverKind: wire.ErrCertificateRefused, serverSays: "refused this side's certificate (bad certificate)",
		},
		{
			name: "plaintext client, TLS server", server: serverConfig(t, serverFiles), client: nil,
			clientKind: wire.ErrPlaintextPeer, clientSays: "the member probably requires it",
			serverKind: wire.ErrPlaintextPeer, serverSays: "did not start TLS",
		},
		{
			name: "TLS client, plaintext server", server: nil, client: clientConfig(t, clientFiles),
			clientKind: wire.ErrPlaintextPeer, clientSays: "does not use TLS but this side does",
			serverKind: wire.ErrPlaintextPeer, serverSays: "started TLS but this member does not use TLS",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := serveTLS(t, tt.server)
			_, err := connect(t, addr, tt.client)
			if err == nil {
				t.Fatal("connection accepted")
			}
			explained := wire.ExplainTLSError(err, addr)
			if !errors.Is(explained, tt.clientKind) || !strings.Contains(explained.Error(), tt.clientSays) ||
				!strings.Contains(explained.Error(), addr) || !errors.Is(explained, err) {
				t.Errorf("client: %v\nexplained as %v\nwant %v naming %s and saying %q", err, explained, tt.clientKind, addr, tt.clientSays)
			}
			r := receive(t, results)
			if r.err == nil {
				t.Fatal("server accepted the connection")
			}
			explained = wire.ExplainTLSError(r.err, "127.0.0.1:1")
			if !errors.Is(explained, tt.serverKind) || !strings.Contains(explained.Error(), tt.serverSays) {
				t.Errorf("server: %v\nexplained as %v\nwant %v saying %q", r.err, explained, tt.serverKind, tt.serverSays)
			}
		})
	}
}

func TestExplainTLSErrorLeavesOthers(t *testing.T) {
	if err := wire.ExplainTLSError(nil, "x"); err != nil {
		t.Fatalf("ExplainTLSError(nil) = %v", err)
	}
	other := errors.New("disk full")
	if err := wire.ExplainTLSError(other, "x"); err != other {
		t.Fatalf("ExplainTLSError(disk full) = %v", err)
	}
	// A client that goes away before saying anything tells the server nothing about TLS.
	addr, results := serveTLS(t, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	nc.Close()
	r := receive(t, results)
	if r.err == nil {
		t.Fatal("server handshake succeeded on a closed connection")
	}
	if err := wire.ExplainTLSError(r.err, addr); err != r.err {
		t.Fatalf("server-side EOF explained as %v", err)
	}
}

// waitForDN dials until the DN seen by one side becomes want. Reloads happen at most once a second, so it takes that long.
func waitForDN(tb testing.TB, want string, dial func() (string, error)) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		dn, err := dial()
		if err == nil && dn == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("DN still %q (last error %v), want %q", dn, err, want)
		}
		<-tick.C
	}
}

func TestCertificateReload(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		pki := testpki.New(t)
		addr, results := serveTLS(t, serverConfig(t, pki.Issue(t, "member-a")))
		client := clientConfig(t, pki.Issue(t, "member-b"))
		dial := func() (string, error) {
			c, err := connect(t, addr, client)
			receive(t, results)
			if err != nil {
				return "", err
			}
			defer c.Close()
			return c.PeerDN(), nil
		}
		waitForDN(t, "CN=member-a,O=mirrorkit", dial)
		pki.Reissue(t, "member-a", "member-a2")
		waitForDN(t, "CN=member-a2,O=mirrorkit", dial)
	})
	t.Run("client", func(t *testing.T) {
		t.Parallel()
		pki := testpki.New(t)
		addr, results := serveTLS(t, serverConfig(t, pki.Issue(t, "member-a")))
		client := clientConfig(t, pki.Issue(t, "member-b"))
		dial := func() (string, error) {
			c, err := connect(t, addr, client)
			r := receive(t, results)
			if err != nil {
				return "", err
			}
			c.Close()
			return r.dn, r.err
		}
		waitForDN(t, "CN=member-b,O=mirrorkit", dial)
		pki.Reissue(t, "member-b", "member-b2")
		waitForDN(t, "CN=member-b2,O=mirrorkit", dial)
	})
}

func TestCertDN(t *testing.T) {
	pki := testpki.New(t)
	f := pki.Issue(t, "operator")
	dn, err := wire.CertDN(f.Cert)
	if err != nil || dn != "CN=operator,O=mirrorkit" {
		t.Fatalf("CertDN = %q, %v; want CN=operator,O=mirrorkit", dn, err)
	}
	if _, err := wire.CertDN(f.Key); !errors.Is(err, wire.ErrTLSFiles) || !strings.Contains(err.Error(), f.Key) {
		t.Fatalf("CertDN of a key: %v", err)
	}
}

func TestTLSFilesValidate(t *testing.T) {
	pki := testpki.New(t)
	good := pki.Issue(t, "member-a")
	otherKey := pki.Issue(t, "member-b").Key
	foreign := testpki.Other(t).Issue(t, "foreign")
	now := time.Now()
	expired := pki.IssueBetween(t, "expired", now.Add(-2*time.Hour), now.Add(-time.Hour))
	premature := pki.IssueBetween(t, "premature", now.Add(time.Hour), now.Add(2*time.Hour))
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.crt")

	tests := []struct {
		name  string
		files wire.TLSFiles
		says  string // "" for valid
	}{
		{"none", wire.TLSFiles{}, ""},
		{"complete", good, ""},
		{"no certificate", wire.TLSFiles{Key: good.Key, CA: good.CA}, "no certificate file set"},
		{"no key", wire.TLSFiles{Cert: good.Cert, CA: good.CA}, "no key file set"},
		{"no CA", wire.TLSFiles{Cert: good.Cert, Key: good.Key}, "no CA file set"},
		{"unreadable certificate", wire.TLSFiles{Cert: missing, Key: good.Key, CA: good.CA}, missing},
		{"unreadable key", wire.TLSFiles{Cert: good.Cert, Key: missing, CA: good.CA}, missing},
		{"unreadable CA", wire.TLSFiles{Cert: good.Cert, Key: good.Key, CA: missing}, missing},
		{"malformed certificate", wire.TLSFiles{Cert: garbage, Key: good.Key, CA: good.CA}, "certificate " + garbage},
		{"malformed CA", wire.TLSFiles{Cert: good.Cert, Key: good.Key, CA: garbage}, "CA " + garbage},
		{"key of another certificate", wire.TLSFiles{Cert: good.Cert, Key: otherKey, CA: good.CA}, "key " + otherKey},
		{"signed by another CA", wire.TLSFiles{Cert: foreign.Cert, Key: foreign.Key, CA: good.CA}, "not signed by the CA in " + good.CA},
		{"expired", expired, "certificate " + expired.Cert + " expired"},
		{"not yet valid", premature, "certificate " + premature.Cert + " is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.files.Validate()
			if tt.says == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, wire.ErrTLSFiles) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Validate = %v, want %v saying %q", err, wire.ErrTLSFiles, tt.says)
			}
			if _, err := tt.files.ServerConfig(); !errors.Is(err, wire.ErrTLSFiles) {
				t.Fatalf("ServerConfig = %v, want %v", err, wire.ErrTLSFiles)
			}
			if _, err := tt.files.ClientConfig(); !errors.Is(err, wire.ErrTLSFiles) {
				t.Fatalf("ClientConfig = %v, want %v", err, wire.ErrTLSFiles)
			}
		})
	}
}

func TestTLSFilesEnabled(t *testing.T) {
	tests := []struct {
		files wire.TLSFiles
		want  bool
	}{
		{wire.TLSFiles{}, false},
		{wire.TLSFiles{Cert: "c", Key: "k"}, false},
		{wire.TLSFiles{Cert: "c", Key: "k", CA: "ca"}, true},
	}
	for _, tt := range tests {
		if got := tt.files.Enabled(); got != tt.want {
			t.Errorf("%+v.Enabled() = %v, want %v", tt.files, got, tt.want)
		}
	}
}
