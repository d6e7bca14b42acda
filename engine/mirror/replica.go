package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// receiverStatus is the backup's or async's view of its stream from the primary.
type receiverStatus struct {
	connected      bool
	primary        string
	since          time.Time // connected or disconnected since
	lastReceived   time.Time // journal time of the newest record received
	primaryDurable journal.Position
	wireBytes      uint64
	rawBytes       uint64
	rate           rate
	err            string
}

// runReceiver keeps a stream from the primary open, finding the primary among the failover members when it moves.
func (mir *Mirror) runReceiver(ctx context.Context) {
	backoff := 20 * time.Millisecond
	redirect, lastRefusal := "", ""
	for ctx.Err() == nil {
		addrs := mir.primaryCandidates(redirect)
		redirect = ""
		progressed := false
		for _, addr := range addrs {
			next, got, err := mir.streamFrom(ctx, addr)
			progressed = progressed || got
			if ctx.Err() != nil {
				return
			}
			mir.mu.Lock()
			if mir.recv.connected || mir.recv.since.IsZero() {
				mir.recv.since = mir.mgr.opts.Now()
			}
			mir.recv.connected = false
			var notPrimary *wire.Error
			if err != nil && !(errors.As(err, &notPrimary) && notPrimary.Code == wire.CodeNotPrimary) {
				// A member that is not primary only redirects: the primary's own refusal says more.
				mir.recv.err = err.Error()
			}
			mir.notifyLocked()
			mir.mu.Unlock()
			var refused *wire.Error
			switch {
			case err == nil:
			case errors.As(err, &refused) && refused.Code != wire.CodeNotPrimary:
				// The primary refused this member: say it once per distinct reason, the operator must act.
				if refused.Message != lastRefusal {
					mir.log.Warn().Str("addr", addr).Str("reason", refused.Message).Msg("the primary refused the journal stream")
					lastRefusal = refused.Message
				}
			default:
				mir.log.Debug().Err(err).Str("addr", addr).Msg("stream from primary ended")
			}
			if next != "" {
				redirect = next
				break
			}
		}
		if progressed {
			backoff = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// primaryCandidates lists the data addresses to try: a redirect first, then the configured primary, then the other
// failover members.
func (mir *Mirror) primaryCandidates(redirect string) []string {
	cfg := mir.Config()
	var out []string
	if redirect != "" {
		out = append(out, redirect)
	}
	if p, ok := cfg.Member(cfg.Primary); ok && p.Name != mir.mgr.opts.Self {
		out = append(out, mir.mgr.peerAddr(p))
	}
	for _, m := range cfg.Members {
		if m.Type == Failover && m.Name != cfg.Primary && m.Name != mir.mgr.opts.Self {
			out = append(out, mir.mgr.peerAddr(m))
		}
	}
	// Last, the asyncs: a DR async may have been promoted while this member was away; the others redirect.
	for _, m := range cfg.Members {
		if m.Type != Failover && m.Name != cfg.Primary && m.Name != mir.mgr.opts.Self {
			out = append(out, mir.mgr.peerAddr(m))
		}
	}
	return out
}

// streamFrom runs one stream from addr until it breaks. It returns a redirect address when addr is not the primary, and
// whether any journal data arrived.
func (mir *Mirror) streamFrom(ctx context.Context, addr string) (redirect string, progressed bool, err error) {
	cfg := mir.Config()
	qos := cfg.QoS.Duration
	dialCtx, cancel := context.WithTimeout(ctx, qos)
	nc, err := wire.Dial(dialCtx, addr, mir.mgr.opts.TLS)
	cancel()
	if err != nil {
		return "", false, wire.ExplainTLSError(err, addr)
	}
	c := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	hsCtx, cancel := context.WithTimeout(ctx, qos)
	_, err = wire.ClientHandshake(hsCtx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeStream, Name: mir.mgr.opts.Self})
	cancel()
	if err != nil {
		return "", false, wire.ExplainTLSError(err, addr)
	}
	from := mir.jrn.AppendedEnd()
	start := wire.StreamStart{Mirror: mir.name, Member: mir.mgr.opts.Self, Epoch: cfg.Epoch, From: toWire(from),
		Codecs: []wire.Codec{wire.CodecLZ4, wire.CodecZstd, wire.CodecNone}, ConfigVersion: cfg.Version,
		Software: version.Software, Level: uint16(version.Level)}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindStreamStart, Payload: wire.EncodeStreamStart(nil, &start)}); err != nil {
		return "", false, err
	}
	c.SetDeadline(time.Now().Add(qos))
	f, err := c.ReadFrame()
	if err != nil {
		return "", false, err
	}
	switch f.Kind {
	case wire.KindError:
		we, derr := wire.DecodeError(f.Payload)
		if derr != nil {
			return "", false, derr
		}
		if we.Code == wire.CodeNotPrimary {
			return we.Redirect, false, we
		}
		if we.Code == wire.CodeVersion {
			// The primary answered: it is alive, whatever it thinks of this member's version.
			mir.mu.Lock()
			mir.fo.primaryHeard = mir.mgr.opts.Now()
			mir.mu.Unlock()
			mir.noteVersionRefusal(we.Message)
		}
		return "", false, we
	case wire.KindStreamAccept:
	default:
		return "", false, fmt.Errorf("stream from %s: unexpected frame %s", addr, f.Kind)
	}
	accept, err := wire.DecodeStreamAccept(f.Payload)
	if err != nil {
		return "", false, err
	}
	if acc := fromWire(accept.From); acc.Less(from) {
		// This member's journal holds records of an older epoch the primary's does not: cut them back (with the dejournaler
		// stopped, so the role restarts) and stream again from there.
		return "", false, mir.requestRollback(acc, accept.Primary)
	}
	mir.mu.Lock()
	mir.recv = receiverStatus{connected: true, primary: accept.Primary, since: mir.mgr.opts.Now(), lastReceived: mir.recv.lastReceived,
		wireBytes: mir.recv.wireBytes, rawBytes: mir.recv.rawBytes, rate: mir.recv.rate}
	mir.fo.flags = 0 // not Active until this primary says so
	mir.fo.primaryHeard = mir.mgr.opts.Now()
	mir.notifyLocked()
	mir.mu.Unlock()
	mir.log.Info().Str("primary", accept.Primary).Str("from", from.String()).Str("codec", accept.Codec.String()).Msg("receiving the mirror journal")
	mir.noteVersionRefusal("") // accepted: whatever refused this version before no longer does

	ackCtx, stopAcks := context.WithCancel(ctx)
	defer stopAcks()
	received := make(chan struct{}, 1)
	ackErr := make(chan error, 1)
	go func() { ackErr <- mir.ackLoop(ackCtx, c, received, qos) }()

	var raw []byte
	for {
		c.SetDeadline(time.Now().Add(qos))
		f, err := c.ReadFrame()
		if err != nil {
			select {
			case aerr := <-ackErr:
				if aerr != nil {
					return "", progressed, aerr
				}
			default:
			}
			return "", progressed, err
		}
		switch f.Kind {
		case wire.KindJournalBatch:
			b, err := wire.DecodeJournalBatch(f.Payload)
			if err != nil {
				return "", progressed, err
			}
			if raw, err = wire.Decompress(b.Codec, raw[:0], b.Payload, int(b.RawLen)); err != nil {
				return "", progressed, fmt.Errorf("journal batch at %s: %w", fromWire(b.First), err)
			}
			if _, _, err := mir.jrn.AppendEncoded(raw); err != nil {
				return "", progressed, fmt.Errorf("journal batch at %s from %s: %w", fromWire(b.First), accept.Primary, err)
			}
			progressed = true
			mir.mu.Lock()
			mir.fo.primaryHeard = mir.mgr.opts.Now()
			mir.recv.lastReceived = time.Unix(0, b.SentUnixNano)
			mir.recv.primaryDurable = fromWire(b.PrimaryDurable)
			mir.recv.wireBytes += uint64(len(b.Payload))
			mir.recv.rawBytes += uint64(len(raw))
			mir.recv.rate.add(mir.mgr.opts.Now(), mir.recv.wireBytes, mir.recv.rawBytes)
			mir.mu.Unlock()
			select {
			case received <- struct{}{}:
			default:
			}
		case wire.KindHeartbeat:
			hb, err := wire.DecodeHeartbeat(f.Payload)
			if err != nil {
				return "", progressed, err
			}
			mir.mu.Lock()
			mir.fo.primaryHeard = mir.mgr.opts.Now()
			mir.recv.primaryDurable = fromWire(hb.End)
			if !mir.jrn.AppendedEnd().Less(fromWire(hb.End)) {
				mir.recv.lastReceived = time.Unix(0, hb.UnixNano) // caught up: nothing is older than this heartbeat
			}
			mir.mu.Unlock()
		case wire.KindMirrorState:
			ms, err := wire.DecodeMirrorState(f.Payload)
			if err != nil {
				return "", progressed, err
			}
			mir.mu.Lock()
			mir.fo.primaryHeard = mir.mgr.opts.Now()
			changed := mir.fo.flags != ms.Flags
			mir.fo.flags = ms.Flags
			mir.notifyLocked()
			mir.mu.Unlock()
			if changed {
				mir.kickReport()
			}
			// Echo: the primary learns which mode this member acts in should they lose each other.
			if err := c.WriteFrame(wire.Frame{Kind: wire.KindMirrorState, Payload: wire.EncodeMirrorState(nil, &ms)}); err != nil {
				return "", progressed, err
			}
		case wire.KindConfig:
			mir.mu.Lock()
			mir.fo.primaryHeard = mir.mgr.opts.Now()
			mir.mu.Unlock()
			if err := mir.applyConfig(f.Payload); err != nil {
				return "", progressed, err
			}
		case wire.KindHandoff:
			h, err := wire.DecodeHandoff(f.Payload)
			if err != nil {
				return "", progressed, err
			}
			stopAcks()
			<-ackErr
			return "", progressed, mir.takeOver(ctx, c, h)
		case wire.KindError:
			we, _ := wire.DecodeError(f.Payload)
			return "", progressed, fmt.Errorf("primary %s ended the stream: %w", accept.Primary, we)
		default:
			return "", progressed, fmt.Errorf("unexpected frame %s from primary %s", f.Kind, accept.Primary)
		}
	}
}

// ackLoop acknowledges durable receipt: it waits for what has been appended to become durable (one sync for many batches)
// and sends the durable end; it also heartbeats so the primary knows this member is alive while nothing arrives.
func (mir *Mirror) ackLoop(ctx context.Context, c *wire.Conn, received <-chan struct{}, qos time.Duration) error {
	tick := time.NewTicker(max(qos/4, 50*time.Millisecond))
	defer tick.Stop()
	var acked journal.Position
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-received:
		case <-tick.C:
		}
		end := mir.jrn.AppendedEnd()
		if err := mir.jrn.WaitDurable(ctx, end); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if end == acked {
			hb := wire.Heartbeat{Epoch: mir.jrn.Epoch(), UnixNano: mir.mgr.opts.Now().UnixNano(), End: toWire(end)}
			if err := c.WriteFrame(wire.Frame{Kind: wire.KindHeartbeat, Payload: wire.EncodeHeartbeat(nil, &hb)}); err != nil {
				return err
			}
			continue
		}
		ack := wire.Ack{Epoch: mir.jrn.Epoch(), Durable: toWire(end), Applied: toWire(mir.lowestApplied()), UnixNano: mir.mgr.opts.Now().UnixNano()}
		if err := c.WriteFrame(wire.Frame{Kind: wire.KindAck, Payload: wire.EncodeAck(nil, &ack)}); err != nil {
			return err
		}
		acked = end
	}
}

func (mir *Mirror) lowestApplied() journal.Position {
	mir.mu.Lock()
	dj := mir.dj
	mir.mu.Unlock()
	if dj == nil {
		return journal.Position{}
	}
	st := dj.Status()
	var low journal.Position
	for i, d := range st.Databases {
		if i == 0 || d.Applied.Less(low) {
			low = d.Applied
		}
	}
	return low
}

// applyConfig persists a newer configuration pushed by the primary.
func (mir *Mirror) applyConfig(data []byte) error {
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("mirror configuration from the primary: %w", err)
	}
	return mir.applyConfigValue(cfg)
}

// applyConfigValue persists a configuration from the primary if it is newer than this member's.
func (mir *Mirror) applyConfigValue(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("mirror configuration from the primary: %w", err)
	}
	mir.mu.Lock()
	defer mir.mu.Unlock()
	old := mir.st.Config
	// The primary of a later epoch owns the configuration whatever its version; within an epoch, versions order it.
	if cfg.Name != mir.name || cfg.Epoch < old.Epoch || cfg.Epoch == old.Epoch && cfg.Version <= old.Version {
		return nil
	}
	st := mir.st
	st.Config = cfg
	if err := mir.saveLocked(st); err != nil {
		return err
	}
	if _, ok := cfg.Member(mir.mgr.opts.Self); !ok {
		mir.log.Warn().Msg("this member was removed from the mirror by the primary")
		return errors.New("removed from the mirror")
	}
	if role := mir.roleFromConfig(); role != mir.role && role != RolePrimary {
		mir.role = role // backup demoted to DR, or DR promoted to backup, while a primary runs
	}
	return nil
}
