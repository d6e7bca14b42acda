package mirror

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// batchBytes is the most uncompressed journal data one JournalBatch frame carries.
const batchBytes = 256 << 10

// replica is the primary's view of one connected backup or async.
type replica struct {
	name  string
	typ   MemberType
	conn  *wire.Conn
	codec wire.Codec
	done  chan struct{} // closed when the stream ends
	// guarded by the mirror's mu
	acked          journal.Position
	applied        journal.Position
	active         bool // backup only: the primary waits for its acks
	activating     bool // backup only: caught up once; active when acked reaches activateAt
	activateAt     journal.Position
	connected      time.Time
	lastSeen       time.Time
	caughtUp       time.Time // when acked last reached the primary's durable end
	wireBytes      uint64
	rawBytes       uint64
	handoff        chan wire.HandoffDone
	disconnectedAt time.Time
	echo           uint8     // backup: the wire.State* flags it last echoed (the mode it acts in if it loses this primary)
	told           uint8     // backup: the flags last sent to it
	toldAt         time.Time // when they were sent
	// followedAt is when this primary sent the latest state the backup echoed: at that time (this member's clock), the
	// backup still followed it. The primary's lease counts from it, never from when a frame arrived (a frame read late —
	// after a pause, from a socket buffer — proves nothing about now).
	followedAt time.Time
	// sent maps the timestamps of the states sent and not yet echoed to the local (monotonic) time they were sent at, so
	// the lease does not depend on the wall clock: guarded by the mirror's mu, oldest first.
	sent []sentState
}

type sentState struct {
	unixNano int64
	at       time.Time
}

// noteSentLocked records a state sent to the backup at `at`, for its echo. Call with the mirror's mu held.
func (r *replica) noteSentLocked(at time.Time) int64 {
	if len(r.sent) >= 256 { // the backup is not echoing: forget the oldest
		r.sent = r.sent[1:]
	}
	n := at.UnixNano()
	r.sent = append(r.sent, sentState{unixNano: n, at: at})
	return n
}

// echoedLocked moves followedAt to the local time the echoed state was sent at, if it is one this primary sent.
func (r *replica) echoedLocked(unixNano int64) {
	for i, s := range r.sent {
		if s.unixNano == unixNano {
			if s.at.After(r.followedAt) {
				r.followedAt = s.at
			}
			r.sent = r.sent[i+1:]
			return
		}
	}
}

func (r *replica) close() {
	if r.conn != nil {
		r.conn.Close()
	}
}

func (r *replica) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func fromWire(p wire.Position) journal.Position {
	return journal.Position{Epoch: p.Epoch, Segment: p.Segment, Offset: p.Offset}
}

func toWire(p journal.Position) wire.Position {
	return wire.Position{Epoch: p.Epoch, Segment: p.Segment, Offset: p.Offset}
}

// ServeStream serves one journal stream connection from a backup or async (the data port's handshake is done).
func (m *Manager) ServeStream(c *wire.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		return fmt.Errorf("stream start: %w", err)
	}
	if f.Kind != wire.KindStreamStart {
		return fmt.Errorf("stream: expected a stream start, got frame kind %s", f.Kind)
	}
	start, err := wire.DecodeStreamStart(f.Payload)
	if err != nil {
		return fmt.Errorf("stream start: %w", err)
	}
	c.SetDeadline(time.Time{})
	mir, err := m.Mirror(start.Mirror)
	if err != nil {
		refuse(c, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
		return err
	}
	return mir.serveReplica(c, start)
}

func refuse(c *wire.Conn, e *wire.Error) {
	c.WriteFrame(wire.Frame{Kind: wire.KindError, Payload: wire.EncodeError(nil, e)})
}

func (mir *Mirror) serveReplica(c *wire.Conn, start wire.StreamStart) error {
	from := fromWire(start.From)
	mir.mu.Lock()
	cfg := mir.st.Config.clone()
	if mir.role != RolePrimary {
		err := mir.notPrimaryLocked("(stream)")
		mir.mu.Unlock()
		refuse(c, err.(*wire.Error))
		return err
	}
	mc, ok := cfg.Member(start.Member)
	if !ok || start.Member == mir.mgr.opts.Self {
		mir.mu.Unlock()
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("member %s is not a member of mirror %s; join it first", start.Member, mir.name)}
		refuse(c, e)
		return e
	}
	if start.Epoch > cfg.Epoch {
		mir.mu.Unlock()
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("member %s knows epoch %d of mirror %s, newer than this primary's %d", start.Member, start.Epoch, mir.name, cfg.Epoch)}
		refuse(c, e)
		return e
	}
	if why := streamRefusal(&cfg, mc.Name, mc.Type, start.Software, int(start.Level)); why != "" {
		mir.mu.Unlock()
		mir.log.Warn().Str("peer", mc.Name).Msg(why)
		mir.noteMemberVersion(mc.Name, start.Software, int(start.Level)) // so that status and finalize show what it runs
		e := &wire.Error{Code: wire.CodeVersion, Message: why}
		refuse(c, e)
		return e
	}
	if levelOr1(int(start.Level)) < version.Level {
		mir.log.Warn().Str("peer", mc.Name).Str("its_version", describeMember(start.Software, int(start.Level))).
			Msg("reporting async runs an older format level; it receives the journal until the upgrade is finalized")
	}
	accFrom := from
	if fork, ok := cfg.forkPoint(from); ok {
		// The member holds records of an older epoch that this primary's history does not have: it cuts them first.
		accFrom = fork
	} else if end := mir.jrn.WrittenEnd(); end.Less(from) {
		mir.mu.Unlock()
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("member %s has mirror %s journal up to %s, beyond this primary's end %s: its copy diverged and must be rebuilt", start.Member, mir.name, from, end)}
		refuse(c, e)
		return e
	}
	if mir.jrn.Purged(from) {
		mir.mu.Unlock()
		e := &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("mirror %s journal from %s is purged on the primary %s (it starts at %s); rebuild member %s from a newer backup", mir.name, from, mir.mgr.opts.Self, mir.jrn.FirstPosition(), start.Member)}
		refuse(c, e)
		return e
	}
	mir.mu.Unlock()
	if err := mir.checkPeerDN(mc, c.PeerDN()); err != nil {
		refuse(c, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
		return err
	}
	mir.mu.Lock()
	codec, err := cfg.codecFor(mc.Type)
	if err != nil {
		codec = wire.CodecNone
	}
	if !acceptsCodec(start.Codecs, codec) {
		codec = wire.CodecNone
	}
	if old, ok := mir.replicas[mc.Name]; ok {
		old.close()
	}
	now := mir.mgr.opts.Now()
	r := &replica{name: mc.Name, typ: mc.Type, conn: c, codec: codec, done: make(chan struct{}), acked: from, connected: now, lastSeen: now}
	mir.replicas[mc.Name] = r
	qos := cfg.QoS.Duration
	mir.notifyLocked()
	mir.mu.Unlock()

	defer func() {
		mir.mu.Lock()
		close(r.done)
		mir.backupLostLocked(r, "its stream ended")
		r.active, r.activating = false, false
		r.disconnectedAt = mir.mgr.opts.Now()
		mir.notifyLocked()
		mir.mu.Unlock()
		c.Close()
	}()
	accept := wire.StreamAccept{Primary: mir.mgr.opts.Self, Epoch: cfg.Epoch, Codec: codec, From: toWire(accFrom)}
	if err := c.WriteFrame(wire.Frame{Kind: wire.KindStreamAccept, Payload: wire.EncodeStreamAccept(nil, &accept)}); err != nil {
		return err
	}
	mir.noteMemberVersion(mc.Name, start.Software, int(start.Level))
	if err := mir.sendConfig(r); err != nil {
		return err
	}
	mir.log.Info().Str("peer", mc.Name).Str("type", string(mc.Type)).Str("from", from.String()).Str("codec", codec.String()).Msg("journal stream started")
	senderDone := make(chan error, 1)
	if accFrom != from {
		mir.log.Warn().Str("peer", mc.Name).Str("its_end", from.String()).Str("fork", accFrom.String()).Msg("member holds a divergent journal tail; it rolls back to the fork point")
	}
	go func() { senderDone <- mir.send(r, accFrom, qos) }()
	readErr := mir.readReplica(r, qos)
	r.close()
	sendErr := <-senderDone
	mir.log.Info().Str("peer", mc.Name).AnErr("read", readErr).AnErr("send", sendErr).Msg("journal stream ended")
	return nil
}

// countFrames counts the journal record frames in b (each starts with its little-endian payload length and a checksum).
func countFrames(b []byte) uint32 {
	n := uint32(0)
	for len(b) >= 8 {
		size := 8 + int(binary.LittleEndian.Uint32(b))
		if size > len(b) {
			break
		}
		b = b[size:]
		n++
	}
	return n
}

func acceptsCodec(list []wire.Codec, c wire.Codec) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

func (mir *Mirror) sendConfig(r *replica) error {
	data, err := json.Marshal(mir.Config())
	if err != nil {
		return err
	}
	return r.conn.WriteFrame(wire.Frame{Kind: wire.KindConfig, Payload: data})
}

// broadcastConfig pushes the configuration to every connected member.
func (mir *Mirror) broadcastConfig() {
	mir.mu.Lock()
	rs := make([]*replica, 0, len(mir.replicas))
	for _, r := range mir.replicas {
		if !r.ended() {
			rs = append(rs, r)
		}
	}
	mir.mu.Unlock()
	for _, r := range rs {
		if err := mir.sendConfig(r); err != nil {
			r.close()
		}
	}
}

// send ships journal records from pos to the replica as soon as they are written (while this member's sync is still under
// way, so the backup's sync overlaps it), compressed, and heartbeats when there is nothing to send.
func (mir *Mirror) send(r *replica, pos journal.Position, qos time.Duration) error {
	heartbeat := time.NewTicker(max(qos/4, 50*time.Millisecond))
	defer heartbeat.Stop()
	var buf []byte
	for {
		notify := mir.jrn.WrittenNotify()
		frames, next, err := mir.jrn.ReadWritten(pos, batchBytes)
		if err != nil {
			if errors.Is(err, journal.ErrPurged) {
				refuse(r.conn, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("mirror %s journal from %s is purged on the primary; rebuild member %s from a newer backup", mir.name, pos, r.name)})
			}
			return err
		}
		if len(frames) == 0 {
			if next != pos {
				pos = next // crossed into the next segment
				continue
			}
			mir.caughtUpSending(r, pos)
			select {
			case <-notify:
			case <-heartbeat.C:
				hb := wire.Heartbeat{Epoch: mir.jrn.Epoch(), UnixNano: mir.mgr.opts.Now().UnixNano(), End: toWire(pos)}
				if err := r.conn.WriteFrame(wire.Frame{Kind: wire.KindHeartbeat, Payload: wire.EncodeHeartbeat(nil, &hb)}); err != nil {
					return err
				}
			case <-r.done:
				return nil
			}
			continue
		}
		codec, payload := r.codec, frames
		if codec != wire.CodecNone {
			if buf, err = wire.Compress(codec, buf[:0], frames); err != nil {
				return err
			}
			payload = buf
			if len(buf) >= len(frames) { // small or incompressible batch: send it as it is
				codec, payload = wire.CodecNone, frames
			}
		}
		batch := wire.JournalBatch{Epoch: mir.jrn.Epoch(), First: toWire(pos), Next: toWire(next), Records: countFrames(frames), Codec: codec, RawLen: uint32(len(frames)),
			Payload: payload, PrimaryDurable: toWire(mir.jrn.DurableEnd()), SentUnixNano: mir.mgr.opts.Now().UnixNano()}
		if err := r.conn.WriteFrame(wire.Frame{Kind: wire.KindJournalBatch, Payload: wire.EncodeJournalBatch(nil, &batch)}); err != nil {
			return err
		}
		mir.mu.Lock()
		r.wireBytes += uint64(len(payload))
		r.rawBytes += uint64(len(frames))
		mir.mu.Unlock()
		pos = next
	}
}

// caughtUpSending is called when the sender has shipped everything written: a backup that is not yet active starts
// activating — from now on commits wait for its acks, and once it has acknowledged everything up to here it is Active.
func (mir *Mirror) caughtUpSending(r *replica, pos journal.Position) {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	if r.typ != Failover || r.active || r.activating || mir.role != RolePrimary || mir.st.Config.Primary != mir.mgr.opts.Self {
		return
	}
	r.activating, r.activateAt = true, pos
	mir.checkActiveLocked(r)
}

func (mir *Mirror) checkActiveLocked(r *replica) {
	if r.activating && !r.acked.Less(r.activateAt) {
		r.activating, r.active = false, true
		mir.log.Info().Str("peer", r.name).Str("pos", r.acked.String()).Msg("backup is Active")
	}
}

// readReplica handles what the replica sends: acks, heartbeats, handoff answers. A replica silent for the QoS timeout is
// considered lost.
func (mir *Mirror) readReplica(r *replica, qos time.Duration) error {
	for {
		r.conn.SetDeadline(time.Now().Add(qos))
		f, err := r.conn.ReadFrame()
		if err != nil {
			return err
		}
		now := mir.mgr.opts.Now()
		switch f.Kind {
		case wire.KindAck:
			ack, err := wire.DecodeAck(f.Payload)
			if err != nil {
				return err
			}
			mir.mu.Lock()
			if p := fromWire(ack.Durable); r.acked.Less(p) {
				r.acked = p
			}
			r.applied = fromWire(ack.Applied)
			r.lastSeen = now
			if !r.acked.Less(mir.jrn.DurableEnd()) {
				r.caughtUp = now
			}
			mir.checkActiveLocked(r)
			mir.notifyLocked()
			mir.mu.Unlock()
		case wire.KindHeartbeat:
			mir.mu.Lock()
			r.lastSeen = now
			mir.mu.Unlock()
		case wire.KindMirrorState:
			ms, err := wire.DecodeMirrorState(f.Payload)
			if err != nil {
				return err
			}
			mir.mu.Lock()
			r.echo, r.lastSeen = ms.Flags, now
			r.echoedLocked(ms.SentUnixNano)
			mir.notifyLocked()
			mir.mu.Unlock()
		case wire.KindHandoffDone:
			done, err := wire.DecodeHandoffDone(f.Payload)
			if err != nil {
				return err
			}
			mir.mu.Lock()
			ch := r.handoff
			mir.mu.Unlock()
			if ch != nil {
				ch <- done
			}
		default:
			return fmt.Errorf("unexpected frame %s on the stream from %s", f.Kind, r.name)
		}
	}
}

// backupLocked returns the connected replica of the backup, if any.
func (mir *Mirror) backupLocked() *replica {
	b, ok := mir.st.Config.backup()
	if !ok {
		return nil
	}
	r := mir.replicas[b.Name]
	if r == nil || r.ended() {
		return nil
	}
	return r
}

func (mir *Mirror) backupActive() bool {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	r := mir.backupLocked()
	return r != nil && r.active
}

// waitBackup makes a commit wait for the backup's durable receipt while the backup is Active (or becoming Active). A backup
// that does not acknowledge within the QoS timeout is no longer Active: the commit then proceeds without it, unless the
// backup might take over on its own, in which case the primary is In Trouble and the commit waits for that to be resolved.
// A commit of a primary that is deposed meanwhile fails with an unknown outcome: it may or may not survive.
func (mir *Mirror) waitBackup(ctx context.Context, pos journal.Position) error {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	var started time.Time
	defer func() {
		if !started.IsZero() {
			mir.mgr.ackLatency.Observe(since(started))
		}
	}()
	for {
		if mir.role != RolePrimary || mir.fo.deposed {
			return mir.unknownOutcomeLocked(pos, "this member is no longer the primary")
		}
		r := mir.backupLocked()
		waitAck := r != nil && (r.active || r.activating)
		if waitAck && !r.acked.Less(pos) {
			return nil
		}
		if mir.mgr.ctx.Err() != nil {
			// The member is shutting down: its mirrors have stopped, so nothing will resolve a trouble or deliver an ack,
			// and a commit waiting for either would hold the shutdown forever.
			return mir.unknownOutcomeLocked(pos, "the member is shutting down")
		}
		switch {
		case mir.fo.trouble || mir.fo.waiting || !mir.leaseLocked():
			// Neither acknowledged nor refused yet: it is decided when the trouble is.
			if !mir.waitLocked(ctx, mir.st.Config.QoS.Duration/8) && ctx.Err() != nil {
				return mir.unknownOutcomeLocked(pos, ctx.Err().Error())
			}
			continue
		case !waitAck:
			return nil
		}
		if started.IsZero() {
			started = time.Now()
		}
		left := time.Until(started.Add(mir.st.Config.QoS.Duration))
		if left <= 0 {
			mir.log.Warn().Str("peer", r.name).Str("pos", pos.String()).Dur("qos", mir.st.Config.QoS.Duration).Msg("backup did not acknowledge within the QoS timeout; it is no longer Active")
			mir.backupLostLocked(r, "no acknowledgement within the QoS timeout")
			r.active, r.activating = false, false
			r.close()
			mir.notifyLocked()
			continue
		}
		if !mir.waitLocked(ctx, left) && ctx.Err() != nil {
			return mir.unknownOutcomeLocked(pos, ctx.Err().Error())
		}
	}
}

func (mir *Mirror) unknownOutcomeLocked(pos journal.Position, why string) error {
	return &wire.Error{Code: wire.CodeOutcomeUnknown, Message: fmt.Sprintf("mirror %s: the commit at %s was not acknowledged (%s); it may or may not survive", mir.name, pos, why)}
}
