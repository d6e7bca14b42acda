package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Journal stream messages travel on a connection opened with PurposeStream. The replica sends StreamStart; the primary
// answers StreamAccept, or a KindError frame (CodeNotPrimary with Redirect) and closes. The primary then sends
// JournalBatch, KindConfig (the mirror configuration as JSON, opaque here) and Heartbeat frames; the replica answers Ack
// and Heartbeat frames. Handoff and HandoffDone carry a planned failover on the backup's stream. Layouts, with the
// conventions of the package comment (pos = epoch uvarint | segment uvarint | offset uvarint, time = int64 BE Unix ns):
//
//	StreamStart  = 1 | mirror str | member str | epoch uvarint | from pos | codecs bytes | configVersion uvarint
//	StreamAccept = 1 | primary str | epoch uvarint | codec u8 | from pos
//	JournalBatch = 1 | epoch uvarint | first pos | next pos | records uvarint | codec u8 | rawLen uvarint |
//	               payload bytes | primaryDurable pos | sent time
//	Ack          = 1 | epoch uvarint | durable pos | applied pos | time
//	Heartbeat    = 1 | epoch uvarint | time | end pos
//	Handoff      = 1 | epoch uvarint | end pos
//	HandoffDone  = 1 | newEpoch uvarint | err str
//	MirrorState  = 1 | epoch uvarint | flags u8 (1 active, 2 arbiter mode, 4 no-failover) | sent time
//
// StreamAccept.From may be before the replica's StreamStart.From: the replica holds records of an older epoch that the
// primary's journal does not have (a former primary's divergent tail), and must cut its journal back to From first.

// Position is the wire copy of a journal position, so that this package need not know the journal.
type Position struct {
	Epoch   uint64
	Segment uint64
	Offset  uint64
}

// String prints p like the journal does: "epoch:segment:offset", the segment zero-padded to six digits.
func (p Position) String() string {
	return fmt.Sprintf("%d:%06d:%d", p.Epoch, p.Segment, p.Offset)
}

// StreamStart is the replica's first frame on a stream connection.
type StreamStart struct {
	Mirror        string
	Member        string   // the replica's member name
	Epoch         uint64   // highest epoch the replica knows
	From          Position // the replica's durable end of its copy of the mirror journal: where the stream resumes
	Codecs        []Codec  // codecs the replica accepts, in preference order; unknown ones are kept for the primary to skip
	ConfigVersion uint64   // version of the mirror configuration the replica holds
	Software      string   // the replica's software version
	Level         uint16   // the replica's format level: the newest journal record format it reads
}

// StreamAccept is the primary's answer to an acceptable StreamStart.
type StreamAccept struct {
	Primary string   // the primary's member name
	Epoch   uint64   // the primary's epoch
	Codec   Codec    // chosen for this stream among StreamStart.Codecs
	From    Position // where the primary starts sending; normally StreamStart.From
}

// JournalBatch carries consecutive encoded journal record frames, compressed together.
type JournalBatch struct {
	Epoch          uint64
	First          Position // position of the first record in the batch
	Next           Position // position after the last record
	Records        uint32
	Codec          Codec  // normally the stream's; a sender may use CodecNone for a batch that does not compress
	RawLen         uint32 // length of the uncompressed record frames
	Payload        []byte // the record frames compressed with Codec (CodecNone: the frames themselves)
	PrimaryDurable Position
	SentUnixNano   int64
}

// Frames appends the decompressed record frames of jb to dst; see Decompress.
func (jb *JournalBatch) Frames(dst []byte) ([]byte, error) {
	return Decompress(jb.Codec, dst, jb.Payload, int(jb.RawLen))
}

// Ack is the replica's acknowledgement of what it holds.
type Ack struct {
	Epoch    uint64
	Durable  Position // the replica's durable end of the mirror journal
	Applied  Position // the replica's lowest applied position across its mirrored databases, for status
	UnixNano int64
}

// Heartbeat keeps a quiet stream alive and carries the sender's journal end.
type Heartbeat struct {
	Epoch    uint64
	UnixNano int64
	End      Position
}

// MirrorState is what the primary tells its backup about failover, whenever it changes and every few heartbeats: whether
// the backup is Active, the failover mode, and the primary's no-failover flag. The backup echoes it as it is, so the
// primary knows which mode the backup will act in if they lose each other, and — by SentUnixNano, the primary's own clock
// when it sent the state — since when the backup is known to have still followed it (the primary's lease).
type MirrorState struct {
	Epoch        uint64
	Flags        uint8
	SentUnixNano int64
}

// MirrorState flags.
const (
	StateActive      uint8 = 1 << 0 // the backup is Active
	StateArbiterMode uint8 = 1 << 1 // Arbiter Controlled mode (else Agent Controlled)
	StateNoFailover  uint8 = 1 << 2 // the primary's no-failover flag is set
	stateFlags             = StateActive | StateArbiterMode | StateNoFailover
)

// Handoff asks the backup to take over: it must hold every record up to End and becomes primary in Epoch+1.
type Handoff struct {
	Epoch uint64
	End   Position
}

// HandoffDone is the backup's answer to a Handoff.
type HandoffDone struct {
	NewEpoch uint64 // the epoch the backup became primary in
	Err      string // non-empty: the backup refused, with the reason
}

func appendPosition(dst []byte, p Position) []byte {
	dst = binary.AppendUvarint(dst, p.Epoch)
	dst = binary.AppendUvarint(dst, p.Segment)
	return binary.AppendUvarint(dst, p.Offset)
}

func appendTime(dst []byte, unixNano int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(unixNano))
}

func (d *decoder) position() Position {
	return Position{Epoch: d.uvarint(), Segment: d.uvarint(), Offset: d.uvarint()}
}

func (d *decoder) time() int64 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return int64(v)
}

func (d *decoder) u32varint(field string) uint32 {
	v := d.uvarint()
	if d.err == nil && v > math.MaxUint32 {
		d.fail("%s %d overflows 32 bits", field, v)
		return 0
	}
	return uint32(v)
}

// codec reads a codec this build implements: a peer only ever uses one the receiver offered.
func (d *decoder) codec() Codec {
	c := Codec(d.byte())
	if d.err == nil && !c.valid() {
		d.off--
		d.fail("unknown %s", c)
		return 0
	}
	return c
}

// EncodeStreamStart appends the encoding of s to dst.
func EncodeStreamStart(dst []byte, s *StreamStart) []byte {
	dst = append(dst, messageVersion)
	dst = appendString(dst, s.Mirror)
	dst = appendString(dst, s.Member)
	dst = binary.AppendUvarint(dst, s.Epoch)
	dst = appendPosition(dst, s.From)
	dst = binary.AppendUvarint(dst, uint64(len(s.Codecs)))
	for _, c := range s.Codecs {
		dst = append(dst, byte(c))
	}
	dst = binary.AppendUvarint(dst, s.ConfigVersion)
	dst = appendString(dst, s.Software)
	return binary.BigEndian.AppendUint16(dst, s.Level)
}

// DecodeStreamStart decodes a StreamStart; an empty codec list is nil.
func DecodeStreamStart(b []byte) (StreamStart, error) {
	d := decoder{what: "stream start", b: b}
	d.version()
	s := StreamStart{Mirror: d.string(), Member: d.string(), Epoch: d.uvarint(), From: d.position()}
	if raw := d.bytes(); raw != nil {
		s.Codecs = make([]Codec, len(raw))
		for i, c := range raw {
			s.Codecs[i] = Codec(c)
		}
	}
	s.ConfigVersion = d.uvarint()
	s.Software = d.string()
	s.Level = d.u16()
	if err := d.finish(); err != nil {
		return StreamStart{}, err
	}
	return s, nil
}

// EncodeStreamAccept appends the encoding of a to dst.
func EncodeStreamAccept(dst []byte, a *StreamAccept) []byte {
	dst = append(dst, messageVersion)
	dst = appendString(dst, a.Primary)
	dst = binary.AppendUvarint(dst, a.Epoch)
	dst = append(dst, byte(a.Codec))
	return appendPosition(dst, a.From)
}

// DecodeStreamAccept decodes a StreamAccept; a codec this build does not implement is malformed.
func DecodeStreamAccept(b []byte) (StreamAccept, error) {
	d := decoder{what: "stream accept", b: b}
	d.version()
	a := StreamAccept{Primary: d.string(), Epoch: d.uvarint(), Codec: d.codec(), From: d.position()}
	if err := d.finish(); err != nil {
		return StreamAccept{}, err
	}
	return a, nil
}

// EncodeJournalBatch appends the encoding of jb to dst.
func EncodeJournalBatch(dst []byte, jb *JournalBatch) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, jb.Epoch)
	dst = appendPosition(dst, jb.First)
	dst = appendPosition(dst, jb.Next)
	dst = binary.AppendUvarint(dst, uint64(jb.Records))
	dst = append(dst, byte(jb.Codec))
	dst = binary.AppendUvarint(dst, uint64(jb.RawLen))
	dst = appendBytes(dst, jb.Payload)
	dst = appendPosition(dst, jb.PrimaryDurable)
	return appendTime(dst, jb.SentUnixNano)
}

// DecodeJournalBatch decodes a JournalBatch. Payload aliases b and is nil when empty. The lengths must agree: a batch
// has records exactly when it has bytes, and an uncompressed payload is RawLen long. Whether the payload really
// decompresses to RawLen bytes is checked by Frames, which needs the output buffer anyway.
func DecodeJournalBatch(b []byte) (JournalBatch, error) {
	d := decoder{what: "journal batch", b: b}
	d.version()
	jb := JournalBatch{
		Epoch:   d.uvarint(),
		First:   d.position(),
		Next:    d.position(),
		Records: d.u32varint("record count"),
		Codec:   d.codec(),
		RawLen:  d.u32varint("raw length"),
		Payload: d.bytes(),
	}
	switch {
	case d.err != nil:
	case (jb.Records == 0) != (jb.RawLen == 0):
		d.fail("%d records in %d raw bytes", jb.Records, jb.RawLen)
	case (jb.RawLen == 0) != (len(jb.Payload) == 0):
		d.fail("payload of %d bytes for %d raw bytes", len(jb.Payload), jb.RawLen)
	case jb.Codec == CodecNone && len(jb.Payload) != int(jb.RawLen):
		d.fail("uncompressed payload of %d bytes for %d raw bytes", len(jb.Payload), jb.RawLen)
	}
	jb.PrimaryDurable = d.position()
	jb.SentUnixNano = d.time()
	if err := d.finish(); err != nil {
		return JournalBatch{}, err
	}
	return jb, nil
}

// EncodeAck appends the encoding of a to dst.
func EncodeAck(dst []byte, a *Ack) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, a.Epoch)
	dst = appendPosition(dst, a.Durable)
	dst = appendPosition(dst, a.Applied)
	return appendTime(dst, a.UnixNano)
}

// DecodeAck decodes an Ack.
func DecodeAck(b []byte) (Ack, error) {
	d := decoder{what: "ack", b: b}
	d.version()
	a := Ack{Epoch: d.uvarint(), Durable: d.position(), Applied: d.position(), UnixNano: d.time()}
	if err := d.finish(); err != nil {
		return Ack{}, err
	}
	return a, nil
}

// EncodeHeartbeat appends the encoding of h to dst.
func EncodeHeartbeat(dst []byte, h *Heartbeat) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, h.Epoch)
	dst = appendTime(dst, h.UnixNano)
	return appendPosition(dst, h.End)
}

// DecodeHeartbeat decodes a Heartbeat.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	d := decoder{what: "heartbeat", b: b}
	d.version()
	h := Heartbeat{Epoch: d.uvarint(), UnixNano: d.time(), End: d.position()}
	if err := d.finish(); err != nil {
		return Heartbeat{}, err
	}
	return h, nil
}

// EncodeMirrorState appends the encoding of s to dst.
func EncodeMirrorState(dst []byte, s *MirrorState) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, s.Epoch)
	dst = append(dst, s.Flags)
	return appendTime(dst, s.SentUnixNano)
}

// DecodeMirrorState decodes a MirrorState; unknown flags are malformed.
func DecodeMirrorState(b []byte) (MirrorState, error) {
	d := decoder{what: "mirror state", b: b}
	d.version()
	s := MirrorState{Epoch: d.uvarint(), Flags: d.flags(stateFlags), SentUnixNano: d.time()}
	if err := d.finish(); err != nil {
		return MirrorState{}, err
	}
	return s, nil
}

// EncodeHandoff appends the encoding of h to dst.
func EncodeHandoff(dst []byte, h *Handoff) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, h.Epoch)
	return appendPosition(dst, h.End)
}

// DecodeHandoff decodes a Handoff.
func DecodeHandoff(b []byte) (Handoff, error) {
	d := decoder{what: "handoff", b: b}
	d.version()
	h := Handoff{Epoch: d.uvarint(), End: d.position()}
	if err := d.finish(); err != nil {
		return Handoff{}, err
	}
	return h, nil
}

// EncodeHandoffDone appends the encoding of h to dst.
func EncodeHandoffDone(dst []byte, h *HandoffDone) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, h.NewEpoch)
	return appendString(dst, h.Err)
}

// DecodeHandoffDone decodes a HandoffDone.
func DecodeHandoffDone(b []byte) (HandoffDone, error) {
	d := decoder{what: "handoff done", b: b}
	d.version()
	h := HandoffDone{NewEpoch: d.uvarint(), Err: d.string()}
	if err := d.finish(); err != nil {
		return HandoffDone{}, err
	}
	return h, nil
}
