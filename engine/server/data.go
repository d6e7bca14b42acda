package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// maxInflightPerConn bounds the pipelined requests one connection may have executing at once.
const maxInflightPerConn = 256

const handshakeTimeout = 10 * time.Second

func (s *Server) acceptData() {
	for {
		nc, err := s.dataLn.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn().Err(err).Msg("accept on data port")
			continue
		}
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.serveConn(nc)
		}()
	}
}

func (s *Server) serveConn(nc net.Conn) {
	c := wire.NewConn(nc, s.cfg.MaxFrame)
	defer c.Close()
	log := s.log.With().Str("peer", nc.RemoteAddr().String()).Logger()

	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	hello, err := wire.ServerHandshake(ctx, c, s.welcome)
	cancel()
	if err != nil {
		log.Warn().Err(wire.ExplainTLSError(err, nc.RemoteAddr().String())).Msg("handshake refused")
		return
	}
	log = log.With().Str("client", hello.Name).Logger()

	sv := &served{clients: hello.Purpose != wire.PurposeStream && hello.Purpose != wire.PurposeShadow}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.conns[c] = sv
	s.mu.Unlock()
	s.metrics.connections.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.metrics.connections.Dec()
	}()

	if hello.Purpose == wire.PurposeStream {
		if err := s.mirrors.ServeStream(c); err != nil {
			log.Warn().Err(err).Msg("journal stream refused")
		}
		return
	}
	if hello.Purpose == wire.PurposeShadow {
		if err := s.shadows.Serve(c); err != nil {
			log.Warn().Err(err).Msg("shadow stream refused")
		}
		return
	}
	slots := make(chan struct{}, maxInflightPerConn)
	for {
		f, err := c.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) {
				s.metrics.badFrames.Inc()
				log.Warn().Err(err).Msg("closing connection: bad frame")
				s.refuse(c, f.ReqID, wire.CodeBadRequest, err)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug().Err(err).Msg("connection ended")
			}
			break
		}
		if sv.goneAway.Load() {
			continue // told the client nothing more is executed: read until it closes, so that closing sends no reset
		}
		switch f.Kind {
		case wire.KindRequest:
			req, err := wire.DecodeRequest(f.Payload)
			if err != nil {
				s.metrics.badFrames.Inc()
				log.Warn().Err(err).Uint64("request", f.ReqID).Msg("closing connection: malformed request")
				s.refuse(c, f.ReqID, wire.CodeBadRequest, err)
				return
			}
			if !s.beginRequest() {
				s.respond(c, f.ReqID, &wire.Response{Err: &wire.Error{Code: wire.CodeShuttingDown, Message: "member " + s.cfg.Name + " is shutting down"}})
				continue
			}
			slots <- struct{}{}
			go func() {
				defer func() { <-slots }()
				defer s.inflight.Done()
				s.respond(c, f.ReqID, s.execute(&req))
			}()
		case wire.KindPing:
			if err := c.WriteFrame(wire.Frame{Kind: wire.KindPong, ReqID: f.ReqID}); err != nil {
				return
			}
		default:
			s.metrics.badFrames.Inc()
			log.Warn().Uint8("kind", uint8(f.Kind)).Msg("closing connection: unexpected frame kind")
			s.refuse(c, f.ReqID, wire.CodeBadRequest, fmt.Errorf("unexpected frame kind %d", f.Kind))
			return
		}
	}
}

// served is what the server knows of a connection it serves.
type served struct {
	clients  bool        // a client or admin connection (not a journal or shadow stream)
	goneAway atomic.Bool // told the client that nothing more is executed on it
}

// goAwayLinger is how long a connection told that the member is shutting down waits for the client to close it.
const goAwayLinger = 2 * time.Second

// goAway tells a client, once every request the member executed has been answered, that the requests it has no answer to
// were not executed (so it sends them to another member whatever they are), ends the sending side, and lets the reader
// loop run until the client closes: closing with a request unread would reset the connection, which can lose the notice.
func (s *Server) goAway(c *wire.Conn, sv *served) {
	sv.goneAway.Store(true)
	msg := fmt.Sprintf("member %s is shutting down: the requests it did not answer on this connection were not executed", s.cfg.Name)
	_ = c.WriteFrame(wire.Frame{Kind: wire.KindError, Payload: wire.EncodeError(nil, &wire.Error{Code: wire.CodeShuttingDown, Message: msg})})
	if err := c.CloseWrite(); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Now().Add(goAwayLinger))
}

// beginRequest registers an in-flight request unless the member is draining.
func (s *Server) beginRequest() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) welcome(h wire.Hello) (wire.Welcome, error) {
	if h.Purpose != wire.PurposeClient && h.Purpose != wire.PurposeAdmin && h.Purpose != wire.PurposeStream && h.Purpose != wire.PurposeShadow {
		return wire.Welcome{}, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("member %s does not serve %s connections yet", s.cfg.Name, h.Purpose)}
	}
	return wire.Welcome{Software: version.Software, Member: s.cfg.Name, AdminAddr: s.AdminAddr(), MaxFrame: uint32(s.cfg.MaxFrame)}, nil
}

func (s *Server) execute(req *wire.Request) *wire.Response {
	start := time.Now()
	results, pos, err := s.store.Exec(context.Background(), req.DB, req.Ops)
	if err != nil {
		we := toWireError(err)
		s.metrics.requests.WithLabelValues(codeLabel(we.Code)).Inc()
		return &wire.Response{Err: we}
	}
	s.metrics.requests.WithLabelValues("ok").Inc()
	resp := &wire.Response{Results: results}
	if !pos.IsZero() {
		resp.Pos = pos.String()
		s.metrics.commits.Inc()
		s.metrics.commitLatency.Observe(time.Since(start).Seconds())
	}
	return resp
}

func (s *Server) respond(c *wire.Conn, id uint64, resp *wire.Response) {
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindResponse, ReqID: id, Payload: wire.EncodeResponse(nil, resp)}); err != nil && !errors.Is(err, net.ErrClosed) {
		c.Close() // the reader loop sees the closed connection and ends
	}
}

// refuse sends a connection-level error before the connection is closed.
func (s *Server) refuse(c *wire.Conn, id uint64, code wire.Code, err error) {
	_ = c.WriteFrame(wire.Frame{Kind: wire.KindError, ReqID: id, Payload: wire.EncodeError(nil, &wire.Error{Code: code, Message: err.Error()})})
}

// toWireError keeps a typed error's code and the full message (which names the database and key involved).
func toWireError(err error) *wire.Error {
	var we *wire.Error
	if errors.As(err, &we) {
		return &wire.Error{Code: we.Code, Message: err.Error(), Redirect: we.Redirect}
	}
	return &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
}

func codeLabel(c wire.Code) string { return fmt.Sprintf("error_%d", c) }
