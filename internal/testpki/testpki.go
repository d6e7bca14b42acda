package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Organization is the O of every certificate a PKI issues.
const Organization = "mirrorkit"

const (
	validity = 24 * time.Hour
	// backdate starts certificates in the past, so clock skew cannot make them premature.
	backdate = time.Hour
)

// PKI is a throwaway CA for tests, written into a directory.
type PKI struct {
	Dir    string // where the CA and the issued certificates are written
	CAFile string // the CA certificate, PEM

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// New makes a CA (ECDSA P-256, valid one day) in tb.TempDir().
func New(tb testing.TB) *PKI {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "test CA", Organization: []string{Organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse CA certificate: %v", err)
	}
	p := &PKI{Dir: tb.TempDir(), caCert: cert, caKey: key}
	p.CAFile = filepath.Join(p.Dir, "ca.crt")
	writePEM(tb, p.CAFile, "CERTIFICATE", der, 0o644)
	return p
}

// Other makes a CA unrelated to any other, for tests of refused certificates.
func Other(tb testing.TB) *PKI {
	tb.Helper()
	return New(tb)
}

// Issue writes name.crt and name.key: a certificate for Subject CN=name, O=mirrorkit, usable as server and as client,
// valid as long as the CA. The returned files include the CA.
func (p *PKI) Issue(tb testing.TB, name string) wire.TLSFiles {
	tb.Helper()
	return p.write(tb, name, name, p.caCert.NotBefore, p.caCert.NotAfter)
}

// IssueBetween is Issue with a chosen validity period, for tests of expired or premature certificates.
func (p *PKI) IssueBetween(tb testing.TB, name string, notBefore, notAfter time.Time) wire.TLSFiles {
	tb.Helper()
	return p.write(tb, name, name, notBefore, notAfter)
}

// Reissue overwrites name.crt and name.key with a certificate for CN=newCN: a certificate change on a running member.
// The files' modification times are made later than the old ones, so the change is visible however coarse the file
// system's clock.
func (p *PKI) Reissue(tb testing.TB, name, newCN string) wire.TLSFiles {
	tb.Helper()
	return p.write(tb, name, newCN, p.caCert.NotBefore, p.caCert.NotAfter)
}

func (p *PKI) write(tb testing.TB, name, cn string, notBefore, notAfter time.Time) wire.TLSFiles {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{Organization}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatalf("create certificate %s: %v", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("marshal key of %s: %v", cn, err)
	}
	f := wire.TLSFiles{
		Cert: filepath.Join(p.Dir, name+".crt"),
		Key:  filepath.Join(p.Dir, name+".key"),
		CA:   p.CAFile,
	}
	// The key goes first: a reader catching the pair between the two writes sees a mismatch, never a stale pair.
	writePEM(tb, f.Key, "PRIVATE KEY", keyDER, 0o600)
	writePEM(tb, f.Cert, "CERTIFICATE", der, 0o644)
	return f
}

// writePEM replaces path atomically, with a modification time later than the replaced file's.
func writePEM(tb testing.TB, path, blockType string, der []byte, perm os.FileMode) {
	tb.Helper()
	old, statErr := os.Stat(path)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), perm); err != nil {
		tb.Fatalf("write %s: %v", tmp, err)
	}
	if statErr == nil {
		fi, err := os.Stat(tmp)
		if err != nil {
			tb.Fatalf("stat %s: %v", tmp, err)
		}
		if !fi.ModTime().After(old.ModTime()) {
			later := old.ModTime().Add(time.Second)
			if err := os.Chtimes(tmp, later, later); err != nil {
				tb.Fatalf("touch %s: %v", tmp, err)
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatalf("rename %s: %v", tmp, err)
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("serial number: %v", err)
	}
	return n
}
