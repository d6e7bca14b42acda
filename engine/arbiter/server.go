package arbiter

import (
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

const (
	// maxFrame bounds the frames both sides read: every arbiter message is a few hundred bytes at most.
	maxFrame = 64 << 10
	// handshakeTimeout bounds a client's TLS handshake, magic, Hello and Auth.
	handshakeTimeout = 10 * time.Second
)

// ErrClosed is returned by Serve after Close, and by a Client's methods after its Close.
var ErrClosed = errors.New("arbiter closed")

// Options configure a Server.
type Options struct {
	Dir    string // where the decisions are persisted (created if missing)
	Logger zerolog.Logger
	// TLS is the server-side configuration; nil serves plain TCP. With TLS, clients are authenticated by their
	// certificates and the token is not checked.
	TLS *tls.Config
	Now func() time.Time // nil: time.Now
	// Token, when set and TLS is nil, must be presented by every client.
	Token string
}

// Server is an arbiter: it decides failover races between the two failover members of any number of mirrors.
type Server struct {
	opts    Options
	log     zerolog.Logger
	now     func() time.Time
	started time.Time
	store   *store
	lock    *os.File

	mu        sync.Mutex
	mirrors   map[string]*mirror
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// NewServer loads the persisted decisions from opts.Dir (creating it when missing) and locks the directory against a
// second arbiter. A state file that cannot be read is an error naming it, wrapping ErrBadState.
func NewServer(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("arbiter: no state directory set")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("arbiter state directory: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger.With().Str("component", "arbiter").Logger(),
		now:       opts.Now,
		started:   opts.Now(),
		store:     st,
		lock:      lock,
		mirrors:   map[string]*mirror{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	for name, rec := range st.durable {
		s.mirrors[name] = &mirror{name: name, rec: rec, members: map[string]*MemberSeen{}}
	}
	return s, nil
}

// Serve accepts connections on ln until Close, then returns nil. ln must be a plain TCP listener: the server speaks
// TLS on the connections itself when Options.TLS is set.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.log.Info().Str("listen", ln.Addr().String()).Bool("tls", s.opts.TLS != nil).Msg("arbiter serving")
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("arbiter accept on %s: %w", ln.Addr(), err)
		}
		if s.opts.TLS != nil {
			nc = tls.Server(nc, s.opts.TLS)
		}
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		go s.serveConn(nc)
	}
}

// track registers a connection so Close ends it; false means the server is closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

// Close stops every Serve, ends every connection and waits for their handlers, then releases the directory.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("arbiter: release %s: %w", lockFile, err)
	}
	return nil
}

// State returns a copy of what the arbiter knows of every mirror.
func (s *Server) State() map[string]MirrorState {
	s.mu.Lock()
	mirrors := make([]*mirror, 0, len(s.mirrors))
	for _, m := range s.mirrors {
		mirrors = append(mirrors, m)
	}
	s.mu.Unlock()
	out := make(map[string]MirrorState, len(mirrors))
	for _, m := range mirrors {
		out[m.name] = m.state()
	}
	return out
}

// serveConn runs one client connection: the handshake, then each request in turn.
func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	addr := nc.RemoteAddr().String()
	log := s.log.With().Str("remote", addr).Logger()
	c, err := s.handshake(nc)
	if err != nil {
		nc.Close()
		log.Warn().Err(wire.ExplainTLSError(err, addr)).Msg("arbiter handshake failed")
		return
	}
	defer c.Close()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug().Err(err).Msg("arbiter connection ended")
			}
			return
		}
		kind, payload := s.handle(f)
		if err := c.WriteFrame(wire.Frame{Kind: kind, ReqID: f.ReqID, Payload: payload}); err != nil {
			log.Debug().Err(err).Msg("arbiter connection ended")
			return
		}
	}
}

// handshake reads the magic, the Hello and the Auth, and answers a Welcome; a refusal is answered with a KindError
// frame. The arbiter does its own handshake because wire.ServerHandshake serves only the data port's purposes; the
// frames are the same, so wire.ExplainTLSError and the data port's refusal of Purpose still apply.
func (s *Server) handshake(nc net.Conn) (*wire.Conn, error) {
	// Network deadlines follow the wall clock, not Options.Now, which only times the members' silences.
	if err := nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	magic := make([]byte, len(wire.Magic))
	if _, err := io.ReadFull(nc, magic); err != nil {
		return nil, fmt.Errorf("%w with %s: read magic: %w", wire.ErrHandshake, nc.RemoteAddr(), err)
	}
	c := wire.NewConn(nc, maxFrame)
	refusal := s.checkHello(c, magic, nc.RemoteAddr().String())
	if refusal != nil {
		// Best effort: the peer may be gone, and the handshake has failed either way.
		_ = c.WriteFrame(wire.Frame{Kind: wire.KindError, Payload: wire.EncodeError(nil, refusal)})
		c.Close()
		return nil, fmt.Errorf("%w with %s: %w", wire.ErrHandshake, nc.RemoteAddr(), refusal)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// checkHello reads the Hello and Auth frames and sends the Welcome, or returns the refusal to send.
func (s *Server) checkHello(c *wire.Conn, magic []byte, remote string) *wire.Error {
	if string(magic) != wire.Magic {
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("not a mirrorkit arbiter connection: bad magic %q", magic)}
	}
	f, err := c.ReadFrame()
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	if f.Kind != wire.KindHello {
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("expected hello, got %s frame", f.Kind)}
	}
	h, err := wire.DecodeHello(f.Payload)
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	proto, err := wire.Negotiate(h)
	if err != nil {
		var e *wire.Error
		if errors.As(err, &e) {
			return e
		}
		return &wire.Error{Code: wire.CodeVersion, Message: err.Error()}
	}
	if h.Purpose != Purpose {
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(
			"this is an arbiter: connection purpose %s is not served here", h.Purpose)}
	}
	if f, err = c.ReadFrame(); err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	if f.Kind != KindAuth {
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("expected auth, got %s frame", f.Kind)}
	}
	auth, err := DecodeAuth(f.Payload)
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	if s.opts.TLS == nil && s.opts.Token != "" && subtle.ConstantTimeCompare([]byte(auth.Token), []byte(s.opts.Token)) != 1 {
		what := "a wrong token"
		if auth.Token == "" {
			what = "no token"
		}
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(
			"the arbiter requires a shared token and the client at %s presented %s", remote, what)}
	}
	w := wire.Welcome{Protocol: proto, Software: version.Software, Member: "arbiter", MaxFrame: maxFrame}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindWelcome, Payload: wire.EncodeWelcome(nil, &w)}); err != nil {
		return &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
	}
	return nil
}

// handle decides one request and returns the answer frame's kind and payload.
func (s *Server) handle(f wire.Frame) (wire.Kind, []byte) {
	var (
		dec Decision
		err error
	)
	switch f.Kind {
	case KindReport:
		var r Report
		if r, err = DecodeReport(f.Payload); err == nil {
			var v View
			if v, err = s.report(r); err == nil {
				return KindView, EncodeView(nil, &v)
			}
		}
		return failure(err)
	case KindTakeover:
		var r TakeoverRequest
		if r, err = DecodeTakeover(f.Payload); err == nil {
			dec, err = s.takeover(r)
		}
	case KindContinue:
		var r ContinueRequest
		if r, err = DecodeContinue(f.Payload); err == nil {
			dec, err = s.continueWithout(r)
		}
	case KindRejoined:
		var r RejoinedRequest
		if r, err = DecodeRejoined(f.Payload); err == nil {
			dec, err = s.rejoined(r)
		}
	default:
		err = badRequest("the arbiter does not serve %s frames", f.Kind)
	}
	if err != nil {
		return failure(err)
	}
	return KindDecision, EncodeDecision(nil, &dec)
}

// failure encodes err as a KindFailure payload, keeping the code of a *wire.Error it wraps (bad request, invalid name).
func failure(err error) (wire.Kind, []byte) {
	e := &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		e.Code = we.Code
	case errors.Is(err, wire.ErrMalformed):
		e.Code = wire.CodeBadRequest
	}
	return KindFailure, wire.EncodeError(nil, e)
}
