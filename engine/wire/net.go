package wire

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// keepAlive is the TCP keepalive period of data connections: dead peers behind silent networks are noticed by the kernel
// even when no request is outstanding.
const keepAlive = 15 * time.Second

// Listen opens the data port. tlsConf == nil serves plain TCP; otherwise every accepted connection is TLS, and whether
// clients must present certificates is decided by tlsConf.
func Listen(addr string, tlsConf *tls.Config) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if tlsConf == nil {
		return ln, nil
	}
	return tls.NewListener(ln, tlsConf), nil
}

// Dial connects to a data port with TCP_NODELAY and keepalive. tlsConf == nil dials plain TCP; otherwise the TLS handshake
// completes before Dial returns (ServerName defaults to the host of addr).
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (net.Conn, error) {
	d := net.Dialer{KeepAlive: keepAlive}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			nc.Close()
			return nil, fmt.Errorf("dial %s: set nodelay: %w", addr, err)
		}
	}
	if tlsConf == nil {
		return nc, nil
	}
	conf := tlsConf
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("dial %s: tls handshake: %w", addr, err)
	}
	return tc, nil
}
