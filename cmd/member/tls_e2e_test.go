package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

// TestTLSMirrorAuthorization runs a mirror that requires mutual TLS: a joining member is pending until its certificate DN is
// authorized on the primary, plaintext peers are refused with a clear error, and a changed certificate needs re-authorization.
func TestTLSMirrorAuthorization(t *testing.T) {
	pki := testpki.New(t)
	c := testcluster.New(t)
	A := c.AddTLS("A", pki.Issue(t, "A"))
	B := c.AddTLS("B", pki.Issue(t, "B"))
	P := c.Add("P") // no certificate
	defer dumpLogs(t, c)
	c.Start()
	dnOf := func(n *testcluster.Node) string {
		dn, err := wire.CertDN(n.TLS.Cert)
		if err != nil {
			t.Fatal(err)
		}
		return dn
	}

	if r := P.CLI(t, "mirror", "create", "PLAIN", "--require-tls"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "no certificate") {
		t.Fatalf("TLS mirror on a member without a certificate: exit %d %q", r.ExitCode, r.Stderr)
	}
	mustNode(t, A, "mirror", "create", "MIR", "--qos", "2s", "--require-tls")
	r := B.CLI(t, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "pending authorization") || !strings.Contains(r.Stderr, dnOf(B)) {
		t.Fatalf("join before authorization: exit %d %q", r.ExitCode, r.Stderr)
	}
	if out := mustNode(t, A, "mirror", "pending", "MIR"); !strings.Contains(out, dnOf(B)) {
		t.Fatalf("pending list lacks %s:\n%s", dnOf(B), out)
	}
	mustNode(t, A, "mirror", "authorize", "MIR", "--dn", dnOf(B))
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	mustNode(t, A, "db", "create", "APP", "--mirror", "MIR")
	c.WaitFor(t, "create APP on B", 30*time.Second, func() (bool, error) {
		r := B.CLI(t, "db", "create", "APP", "--mirror", "MIR")
		return r.ExitCode == 0, fmt.Errorf("%s", r.Stderr)
	})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	writeN(t, A, "T", 100)
	waitConverged(t, c, A, B)

	// Plaintext peers are refused, with a sentence that says why.
	if r := P.CLI(t, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "dr"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "TLS") {
		t.Fatalf("plaintext member joining a TLS mirror: exit %d %q", r.ExitCode, r.Stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Dial(ctx, A.Addr, client.Options{Conns: 1}); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("plaintext client against a TLS member: %v", err)
	}

	// A certificate change on the backup needs re-authorization before it may stream again.
	newFiles := pki.Reissue(t, "B", "B-renewed")
	B.Terminate()
	B.Restart()
	newDN, _ := wire.CertDN(newFiles.Cert)
	c.WaitFor(t, "B's new certificate is pending on A", 30*time.Second, func() (bool, error) {
		out := A.CLI(t, "mirror", "pending", "MIR")
		return strings.Contains(out.Stdout, newDN), fmt.Errorf("pending: %q", out.Stdout)
	})
	mustNode(t, A, "mirror", "authorize", "MIR", "--dn", newDN)
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	writeN(t, A, "U", 50)
	waitConverged(t, c, A, B)
}
