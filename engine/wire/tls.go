package wire

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	// ErrTLSFiles is wrapped by every error about a certificate, key or CA file: unset, unreadable, malformed, mismatched
	// or outside its validity period. The message names the file.
	ErrTLSFiles = errors.New("bad tls files")
	// ErrPlaintextPeer is wrapped by ExplainTLSError when one side of a connection uses TLS and the other does not.
	ErrPlaintextPeer = errors.New("tls on one side only")
	// ErrCertificateRefused is wrapped by ExplainTLSError when a handshake failed because one side missed, or did not
	// trust, the other's certificate.
	ErrCertificateRefused = errors.New("certificate refused")
)

// reloadInterval bounds how often the certificate files are checked for changes, so handshakes do not stat on every
// connection.
const reloadInterval = time.Second

// TLSFiles names a member's (or an operator's) certificate, key and the CA bundle that signs every certificate of the mirror.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether all three files are set.
func (f TLSFiles) Enabled() bool { return f.Cert != "" && f.Key != "" && f.CA != "" }

// Validate accepts either no files at all or a complete set: a readable certificate and matching key, currently valid
// and signed by the CA bundle. Errors wrap ErrTLSFiles and name the file at fault.
func (f TLSFiles) Validate() error {
	if f == (TLSFiles{}) {
		return nil
	}
	_, err := f.load(time.Now())
	return err
}

// ServerConfig returns a mutual-TLS server configuration (TLS 1.3 at least): it presents the certificate and requires a
// client certificate signed by the CA. The files are checked for changes at most once a second during handshakes and
// reloaded when they change, so a new certificate or CA takes effect without a restart; a changed set that fails to load
// fails the handshakes (naming the file) until it is fixed. Handshakes use a configuration rebuilt from the files, so
// fields changed on the returned config are ignored.
func (f TLSFiles) ServerConfig() (*tls.Config, error) {
	r, err := newReloader(f, time.Now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		// A resumed session carries the peer certificate of an earlier handshake, which would hide a certificate change
		// that must be authorized again.
		SessionTicketsDisabled: true,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s, err := r.current()
			if err != nil {
				return nil, err
			}
			return s.server, nil
		},
	}, nil
}

// ClientConfig returns a client configuration (TLS 1.3 at least) that presents the certificate, reloaded like
// ServerConfig's, and verifies the server's certificate chain against the CA.
//
// Members are reached by IP:port and their certificates name members, not addresses, so the server's certificate is not
// required to name the dialed address. Go verifies names whenever it verifies the chain itself, so the standard
// verification is switched off (InsecureSkipVerify) and VerifyConnection verifies the chain against the CA instead:
// every connection, resumed or not, still requires a server certificate signed by the mirror's CA.
func (f TLSFiles) ClientConfig() (*tls.Config, error) {
	r, err := newReloader(f, time.Now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			s, err := r.current()
			if err != nil {
				return nil, err
			}
			return s.cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			s, err := r.current()
			if err != nil {
				return err
			}
			return verifyPeer(cs.PeerCertificates, s.roots, r.now())
		},
	}, nil
}

// verifyPeer verifies a server's chain against roots, without checking names.
func verifyPeer(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if len(certs) == 0 {
		return errors.New("tls: server presented no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	return nil
}

// PeerDN returns the subject DN (e.g. "CN=member-b,O=mirrorkit") of the peer certificate of a TLS connection whose
// handshake is complete (a server-side connection performs it on its first read), or "" for a plain connection. The
// configurations of this package only complete handshakes with verified peer certificates.
func PeerDN(c net.Conn) string {
	for c != nil {
		if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
			cs := tc.ConnectionState()
			if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
				return ""
			}
			return cs.PeerCertificates[0].Subject.String()
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ""
		}
		c = u.NetConn()
	}
	return ""
}

// PeerDN returns the subject DN of the peer certificate of c's TLS connection, "" for a plain connection.
func (c *Conn) PeerDN() string { return PeerDN(c.nc) }

// CertDN returns the subject DN of the first certificate in a PEM file: what an operator authorizes.
func CertDN(certFile string) (string, error) {
	cert, err := readCert(certFile)
	if err != nil {
		return "", err
	}
	return cert.Subject.String(), nil
}

// ExplainTLSError recognises the ways a connection fails when its two sides disagree about TLS or certificates, and wraps
// err (from dialing or from the protocol handshake, on either side) with a sentence naming the peer at addr and saying
// what to do; the result wraps ErrPlaintextPeer or ErrCertificateRefused. Other errors, and nil, are returned unchanged.
func ExplainTLSError(err error, addr string) error {
	if err == nil {
		return nil
	}
	explain := func(kind error, format string, args ...any) error {
		return fmt.Errorf("%s: %w (%w)", fmt.Sprintf(format, args...), kind, err)
	}
	if rh, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		if bytes.HasPrefix(rh.RecordHeader[:], []byte(Magic)) {
			return explain(ErrPlaintextPeer, "client at %s did not start TLS; this member requires TLS, so the client "+
				"needs the mirror's certificate, key and CA files", addr)
		}
		return explain(ErrPlaintextPeer, "member at %s does not use TLS but this side does; TLS is all or nothing in a "+
			"mirror, so configure certificate, key and CA files on both sides or on neither", addr)
	}
	if e, ok := errors.AsType[*Error](err); ok && e.Code == CodeBadRequest && strings.Contains(e.Message, tlsMagic) {
		return explain(ErrPlaintextPeer, "client at %s started TLS but this member does not use TLS; TLS is all or "+
			"nothing in a mirror, so configure certificate, key and CA files on both sides or on neither", addr)
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		switch alert := op.Err.Error(); alert {
		case "tls: certificate required":
			return explain(ErrCertificateRefused, "member at %s requires a client certificate; configure this side's "+
				"certificate, key and CA files", addr)
		case "tls: bad certificate", "tls: unknown certificate authority", "tls: certificate expired",
			"tls: unsupported certificate", "tls: certificate revoked", "tls: certificate unknown":
			return explain(ErrCertificateRefused, "%s refused this side's certificate (%s); it must be signed by the "+
				"mirror's CA and currently valid", addr, strings.TrimPrefix(alert, "tls: "))
		}
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return explain(ErrCertificateRefused, "certificate of %s is not trusted; it must be signed by the mirror's CA "+
			"and currently valid", addr)
	}
	if strings.Contains(err.Error(), "tls: client didn't provide a certificate") {
		return explain(ErrCertificateRefused, "client at %s presented no certificate; it needs the mirror's "+
			"certificate, key and CA files", addr)
	}
	// A server seeing its client go away learns nothing about TLS; ServerHandshake's first step is reading the magic.
	if closedByPeer(err) && !strings.Contains(err.Error(), "read magic") {
		if errors.Is(err, ErrHandshake) {
			// A TLS member closes a plaintext client's connection without a word.
			return explain(ErrPlaintextPeer, "member at %s closed the connection during the handshake; if this side "+
				"does not use TLS, the member probably requires it: configure this side's certificate, key and CA files", addr)
		}
		return explain(ErrPlaintextPeer, "member at %s closed the connection during the TLS handshake: it may not use "+
			"TLS, or may have refused this side's certificate", addr)
	}
	return err
}

func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// tlsMagic is how ServerHandshake quotes a bad magic that is the start of a TLS record carrying a handshake message.
var tlsMagic = strings.TrimSuffix(fmt.Sprintf("bad magic %q", "\x16\x03"), `"`)

// tlsState is one loaded set of files.
type tlsState struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	server *tls.Config // what a server handshake uses
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
}

// reloader holds the files' current state and reloads it when a file changes.
type reloader struct {
	files TLSFiles
	now   func() time.Time

	mu      sync.Mutex
	state   *tlsState
	stamps  [3]fileStamp
	checked time.Time // of the last check that found the files loaded; zero after a failed load
}

func newReloader(f TLSFiles, now func() time.Time) (*reloader, error) {
	r := &reloader{files: f, now: now}
	if _, err := r.current(); err != nil {
		return nil, err
	}
	return r, nil
}

// current returns the loaded state, reloading the files if a check is due and one of them changed. A failed load keeps
// failing handshakes, and is retried on each of them, until the files load.
func (r *reloader) current() (*tlsState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.state != nil && !r.checked.IsZero() && now.Sub(r.checked) < reloadInterval {
		return r.state, nil
	}
	// Stamps are taken before reading, so a change racing with the load is seen at the next check.
	stamps, err := r.files.stamps()
	if err != nil {
		r.checked = time.Time{}
		return nil, err
	}
	if r.state != nil && stamps == r.stamps && !r.checked.IsZero() {
		r.checked = now
		return r.state, nil
	}
	s, err := r.files.load(now)
	if err != nil {
		r.checked = time.Time{}
		return nil, err
	}
	s.server = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAndVerifyClientCert,
		SessionTicketsDisabled: true,
		Certificates:           []tls.Certificate{*s.cert},
		ClientCAs:              s.roots,
		Time:                   r.now,
	}
	r.state, r.stamps, r.checked = s, stamps, now
	return s, nil
}

func (f TLSFiles) stamps() ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, name := range []string{f.Cert, f.Key, f.CA} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("%w: %w", ErrTLSFiles, err)
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

// load reads and checks the three files.
func (f TLSFiles) load(now time.Time) (*tlsState, error) {
	for _, file := range []struct{ what, name string }{{"certificate", f.Cert}, {"key", f.Key}, {"CA", f.CA}} {
		if file.name == "" {
			return nil, fmt.Errorf("%w: no %s file set; a certificate, its key and the CA go together", ErrTLSFiles, file.what)
		}
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: read certificate: %w", ErrTLSFiles, err)
	}
	leaf, err := parseCert(f.Cert, certPEM)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: read key: %w", ErrTLSFiles, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s does not fit certificate %s: %w", ErrTLSFiles, f.Key, f.Cert, err)
	}
	roots, err := readCA(f.CA)
	if err != nil {
		return nil, err
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: certificate %s is not valid before %s", ErrTLSFiles, f.Cert, leaf.NotBefore.UTC())
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: certificate %s expired at %s", ErrTLSFiles, f.Cert, leaf.NotAfter.UTC())
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %s: intermediate: %w", ErrTLSFiles, f.Cert, err)
		}
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("%w: certificate %s is not signed by the CA in %s: %w", ErrTLSFiles, f.Cert, f.CA, err)
	}
	return &tlsState{cert: &pair, roots: roots}, nil
}

// readCert parses the first certificate of a PEM file.
func readCert(name string) (*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%w: read certificate: %w", ErrTLSFiles, err)
	}
	return parseCert(name, data)
}

// parseCert parses the first certificate of the PEM data of file name.
func parseCert(name string, data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: certificate %s holds no PEM certificate", ErrTLSFiles, name)
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate %s: %w", ErrTLSFiles, name, err)
			}
			return c, nil
		}
	}
}

// readCA parses every certificate of a CA bundle; unlike CertPool.AppendCertsFromPEM it refuses a malformed one.
func readCA(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%w: read CA: %w", ErrTLSFiles, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CA %s: certificate %d: %w", ErrTLSFiles, name, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: CA %s holds no PEM certificate", ErrTLSFiles, name)
	}
	return pool, nil
}
