package shadow

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Source side: StreamStart.Mirror carries the shadow's name, Member the destination member, From the checkpoint (the zero
// position asks only for the journal end: the source accepts, sends one heartbeat with its durable end and closes).

const batchBytes = 1 << 20

// served is one stream this member serves to a shadow destination.
type served struct {
	conn      *wire.Conn
	shadow    string
	member    string
	peer      string
	connected time.Time
	sent      journal.Position
	acked     journal.Position
}

// Served describes a stream this member serves to a shadow destination (GET /api/v1/shadows, as a source).
type Served struct {
	Shadow    string           `json:"shadow"`
	Member    string           `json:"member"`
	Peer      string           `json:"peer"`
	Connected time.Time        `json:"connected"`
	Sent      journal.Position `json:"sent"`
	Applied   journal.Position `json:"applied"` // the destination's checkpoint as it last acknowledged it
}

// Serving lists the streams this member serves as a shadow source.
func (m *Manager) Serving() []Served {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Served{}
	for s := range m.served {
		out = append(out, Served{Shadow: s.shadow, Member: s.member, Peer: s.peer, Connected: s.connected, Sent: s.sent, Applied: s.acked})
	}
	slices.SortFunc(out, func(a, b Served) int { return strings.Compare(a.Shadow+"/"+a.Member, b.Shadow+"/"+b.Member) })
	return out
}

// Serve streams this member's local journal to a shadow destination (the data port's handshake is done).
func (m *Manager) Serve(c *wire.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		return fmt.Errorf("shadow stream start: %w", err)
	}
	if f.Kind != wire.KindStreamStart {
		return fmt.Errorf("shadow stream: expected a stream start, got frame kind %s", f.Kind)
	}
	start, err := wire.DecodeStreamStart(f.Payload)
	if err != nil {
		return fmt.Errorf("shadow stream start: %w", err)
	}
	c.SetDeadline(time.Time{})
	jrn := m.opts.Local
	from := fromWire(start.From)
	probe := from.IsZero()
	if probe {
		from = jrn.DurableEnd()
	}
	if jrn.Purged(from) {
		first := jrn.FirstPosition()
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("the local journal of %s from %s is purged (it starts at %s): restore the shadow's databases from a newer copy of the source's and start the shadow again from a newer position", m.opts.Self, from, first)}
		refuse(c, e)
		return e
	}
	if end := jrn.DurableEnd(); end.Less(from) {
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("shadow %s asks for the local journal of %s from %s, beyond its end %s: it was started against another source or the source's journal was replaced", start.Mirror, m.opts.Self, from, end)}
		refuse(c, e)
		return e
	}
	codec := wire.CodecNone
	for _, want := range []wire.Codec{wire.CodecZstd, wire.CodecLZ4} {
		if slices.Contains(start.Codecs, want) {
			codec = want
			break
		}
	}
	accept := wire.StreamAccept{Primary: m.opts.Self, Epoch: jrn.Epoch(), Codec: codec, From: toWire(from)}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindStreamAccept, Payload: wire.EncodeStreamAccept(nil, &accept)}); err != nil {
		return err
	}
	if probe {
		hb := wire.Heartbeat{Epoch: jrn.Epoch(), UnixNano: time.Now().UnixNano(), End: toWire(from)}
		return c.WriteFrame(wire.Frame{Kind: wire.KindHeartbeat, Payload: wire.EncodeHeartbeat(nil, &hb)})
	}
	s := &served{conn: c, shadow: start.Mirror, member: start.Member, peer: c.RemoteAddr().String(), connected: time.Now(), sent: from, acked: from}
	m.mu.Lock()
	if m.ctx != nil && m.ctx.Err() != nil {
		m.mu.Unlock()
		return errors.New("shutting down")
	}
	m.served[s] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.served, s)
		m.mu.Unlock()
		c.Close()
	}()
	m.log.Info().Str("shadow", start.Mirror).Str("destination", start.Member).Str("from", from.String()).Msg("serving the local journal to a shadow")
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.readAcks(s)
	}()
	err = m.send(s, from, codec, done)
	c.Close()
	<-done
	m.log.Info().Str("shadow", start.Mirror).Str("destination", start.Member).AnErr("err", err).Msg("shadow stream ended")
	return nil
}

func refuse(c *wire.Conn, e *wire.Error) {
	c.WriteFrame(wire.Frame{Kind: wire.KindError, Payload: wire.EncodeError(nil, e)})
}

func (m *Manager) readAcks(s *served) {
	for {
		f, err := s.conn.ReadFrame()
		if err != nil {
			return
		}
		if f.Kind != wire.KindAck {
			continue
		}
		if a, err := wire.DecodeAck(f.Payload); err == nil {
			m.mu.Lock()
			s.acked = fromWire(a.Applied)
			m.mu.Unlock()
		}
	}
}

// send ships the durable local journal from pos, and heartbeats with the position reached when there is nothing to send.
func (m *Manager) send(s *served, pos journal.Position, codec wire.Codec, done <-chan struct{}) error {
	jrn := m.opts.Local
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	var buf []byte
	idle := false
	for {
		notify := jrn.DurableNotify()
		frames, next, err := jrn.ReadEncoded(pos, batchBytes)
		if err != nil {
			// What reconnecting cannot cure is refused, so that the destination stops and says why.
			switch {
			case errors.Is(err, journal.ErrPurged):
				refuse(s.conn, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("the local journal of %s from %s is purged: restore the shadow's databases from a newer copy of the source's and start the shadow again from a newer position", m.opts.Self, pos)})
			case errors.Is(err, journal.ErrBadPosition):
				refuse(s.conn, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("no record of the local journal of %s starts at %s: start the shadow again from a position the source printed", m.opts.Self, pos)})
			case errors.Is(err, journal.ErrCorrupt):
				refuse(s.conn, &wire.Error{Code: wire.CodeInternal, Message: fmt.Sprintf("the local journal of %s cannot be served: %v", m.opts.Self, err)})
			}
			return err
		}
		if len(frames) == 0 {
			if next != pos {
				pos = next
				continue
			}
			if !idle {
				// Caught up: say so at once, so the destination's copies without traffic move here.
				idle = true
				if err := m.heartbeat(s, pos); err != nil {
					return err
				}
			}
			select {
			case <-notify:
			case <-heartbeat.C:
				if err := m.heartbeat(s, pos); err != nil {
					return err
				}
			case <-done:
				return nil
			}
			continue
		}
		idle = false
		bc, payload := codec, frames
		if bc != wire.CodecNone {
			if buf, err = wire.Compress(bc, buf[:0], frames); err != nil {
				return err
			}
			payload = buf
			if len(buf) >= len(frames) {
				bc, payload = wire.CodecNone, frames
			}
		}
		batch := wire.JournalBatch{Epoch: jrn.Epoch(), First: toWire(pos), Next: toWire(next), Records: countFrames(frames), Codec: bc, RawLen: uint32(len(frames)),
			Payload: payload, PrimaryDurable: toWire(jrn.DurableEnd()), SentUnixNano: time.Now().UnixNano()}
		if err := s.conn.WriteFrame(wire.Frame{Kind: wire.KindJournalBatch, Payload: wire.EncodeJournalBatch(nil, &batch)}); err != nil {
			return err
		}
		pos = next
		m.mu.Lock()
		s.sent = pos
		m.mu.Unlock()
	}
}

func (m *Manager) heartbeat(s *served, pos journal.Position) error {
	hb := wire.Heartbeat{Epoch: m.opts.Local.Epoch(), UnixNano: time.Now().UnixNano(), End: toWire(pos)}
	return s.conn.WriteFrame(wire.Frame{Kind: wire.KindHeartbeat, Payload: wire.EncodeHeartbeat(nil, &hb)})
}

func countFrames(b []byte) uint32 {
	n := uint32(0)
	for len(b) >= 8 {
		size := 8 + int(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24)
		if size > len(b) {
			break
		}
		b = b[size:]
		n++
	}
	return n
}

// dialSource opens a shadow stream from the source at addr, starting at from (zero: only ask for the end).
func dialSource(ctx context.Context, addr string, tlsConf *tls.Config, self, shadow string, from journal.Position) (*wire.Conn, wire.StreamAccept, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := wire.Dial(dctx, addr, tlsConf)
	if err != nil {
		return nil, wire.StreamAccept{}, wire.ExplainTLSError(err, addr)
	}
	c := wire.NewConn(nc, wire.DefaultMaxFrame)
	if _, err := wire.ClientHandshake(dctx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeShadow, Name: self}); err != nil {
		c.Close()
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeVersion {
			return nil, wire.StreamAccept{}, fmt.Errorf("source %s: %w: %w", addr, err, errPermanent)
		}
		return nil, wire.StreamAccept{}, wire.ExplainTLSError(err, addr)
	}
	start := wire.StreamStart{Mirror: shadow, Member: self, From: toWire(from), Codecs: []wire.Codec{wire.CodecZstd, wire.CodecLZ4, wire.CodecNone}}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindStreamStart, Payload: wire.EncodeStreamStart(nil, &start)}); err != nil {
		c.Close()
		return nil, wire.StreamAccept{}, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		c.Close()
		return nil, wire.StreamAccept{}, err
	}
	switch f.Kind {
	case wire.KindStreamAccept:
	case wire.KindError:
		c.Close()
		we, derr := wire.DecodeError(f.Payload)
		if derr != nil {
			return nil, wire.StreamAccept{}, derr
		}
		return nil, wire.StreamAccept{}, fmt.Errorf("source %s refused the shadow stream: %s: %w", addr, we.Message, errPermanent)
	default:
		c.Close()
		return nil, wire.StreamAccept{}, fmt.Errorf("source %s: unexpected frame %s", addr, f.Kind)
	}
	accept, err := wire.DecodeStreamAccept(f.Payload)
	if err != nil {
		c.Close()
		return nil, wire.StreamAccept{}, err
	}
	c.SetDeadline(time.Time{})
	return c, accept, nil
}

// probeSource asks the source where its durable local journal ends.
func probeSource(ctx context.Context, addr string, tlsConf *tls.Config, self, shadow string) (journal.Position, error) {
	c, _, err := dialSource(ctx, addr, tlsConf, self, shadow, journal.Position{})
	if err != nil {
		return journal.Position{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		return journal.Position{}, err
	}
	if f.Kind != wire.KindHeartbeat {
		return journal.Position{}, fmt.Errorf("source %s: unexpected frame %s", addr, f.Kind)
	}
	hb, err := wire.DecodeHeartbeat(f.Payload)
	if err != nil {
		return journal.Position{}, err
	}
	return fromWire(hb.End), nil
}
