package arbiter

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Purpose is the connection purpose an arbiter client announces in its Hello. A member's data port refuses it, so a
// member configured with a member's address instead of the arbiter's fails at once with a clear error.
const Purpose = wire.Purpose(5)

// Frame kinds of the arbiter protocol (the range 64..79 is the arbiter's). A request and its answer share a request id.
const (
	KindAuth     wire.Kind = 64 // client → arbiter, right after the Hello: payload Auth (the shared token)
	KindReport   wire.Kind = 65 // client → arbiter: payload Report, answered by KindView
	KindView     wire.Kind = 66 // arbiter → client: payload View
	KindTakeover wire.Kind = 67 // client → arbiter: payload TakeoverRequest, answered by KindDecision
	KindContinue wire.Kind = 68 // client → arbiter: payload ContinueRequest, answered by KindDecision
	KindRejoined wire.Kind = 69 // client → arbiter: payload RejoinedRequest, answered by KindDecision
	KindDecision wire.Kind = 70 // arbiter → client: payload Decision
	KindFailure  wire.Kind = 71 // arbiter → client: a request could not be decided; payload as wire.EncodeError
)

// messageVersion leads every payload, so fields can be added later.
const messageVersion = 1

// Report is what a failover member tells the arbiter every QoS/4, and at once when something changes.
type Report struct {
	Mirror       string
	Member       string
	Epoch        uint64 // the epoch this member knows
	Primary      bool   // this member is primary in Epoch
	ActiveBackup bool   // (sent by the backup) this member is the Active backup
	SeesPeer     bool   // this member is currently connected to the other failover member
	QoS          time.Duration
}

// View is the arbiter's answer to every Report.
type View struct {
	Epoch      uint64        // the arbiter's recorded epoch for the mirror (0 if it never recorded one)
	Primary    string        // member recorded primary in that epoch ("" if none)
	PeerSeen   bool          // the arbiter hears from the other failover member (within QoS)
	PeerReport Report        // the other member's last report (zero if none)
	PeerAge    time.Duration // time since the arbiter last heard from the other member
	BackupLost uint64        // epoch in which the arbiter confirmed the backup is no longer active (0: never)
}

// TakeoverRequest asks that the backup Member become primary in NewEpoch = Epoch+1.
type TakeoverRequest struct {
	Mirror, Member  string
	Epoch, NewEpoch uint64
}

// ContinueRequest asks that the primary Member continue without its backup in Epoch.
type ContinueRequest struct {
	Mirror, Member string
	Epoch          uint64
}

// RejoinedRequest tells the arbiter that the backup of the primary Member is Active again in Epoch.
type RejoinedRequest struct {
	Mirror, Member string
	Epoch          uint64
}

// Decision answers a request. Epoch and Primary are the arbiter's record after the decision, granted or not: a member
// whose earlier request was granted but whose answer was lost recognises its grant there (Primary is itself in the
// epoch it asked for), since asking again with its old epoch is refused as stale.
type Decision struct {
	Granted bool
	Epoch   uint64
	Primary string
	Reason  string // why the request was refused, in a sentence ("" when granted)
}

// Auth is the client's second frame: the shared token ("" when it has none).
type Auth struct {
	Token string
}

// Report flags.
const (
	flagPrimary      = 1 << 0
	flagActiveBackup = 1 << 1
	flagSeesPeer     = 1 << 2
	reportFlags      = flagPrimary | flagActiveBackup | flagSeesPeer
)

// Single-flag bytes of View (peer seen) and Decision (granted).
const flagSet = 1

// EncodeReport appends the encoding of r to dst:
//
//	1 | mirror str | member str | epoch uvarint | flags u8 | qos varint
func EncodeReport(dst []byte, r *Report) []byte {
	return appendReport(append(dst, messageVersion), r)
}

// DecodeReport decodes a Report.
func DecodeReport(b []byte) (Report, error) {
	d := decoder{what: "report", b: b}
	d.version()
	r := d.report()
	return r, d.finish()
}

func appendReport(dst []byte, r *Report) []byte {
	dst = appendString(dst, r.Mirror)
	dst = appendString(dst, r.Member)
	dst = binary.AppendUvarint(dst, r.Epoch)
	var flags byte
	if r.Primary {
		flags |= flagPrimary
	}
	if r.ActiveBackup {
		flags |= flagActiveBackup
	}
	if r.SeesPeer {
		flags |= flagSeesPeer
	}
	dst = append(dst, flags)
	return binary.AppendVarint(dst, int64(r.QoS))
}

func (d *decoder) report() Report {
	r := Report{Mirror: d.string(), Member: d.string(), Epoch: d.uvarint()}
	flags := d.flags(reportFlags)
	r.Primary, r.ActiveBackup, r.SeesPeer = flags&flagPrimary != 0, flags&flagActiveBackup != 0, flags&flagSeesPeer != 0
	r.QoS = time.Duration(d.varint())
	return r
}

// EncodeView appends the encoding of v to dst:
//
//	1 | epoch uvarint | primary str | flags u8 | peer report (Report without its version) | peerAge varint | backupLost uvarint
func EncodeView(dst []byte, v *View) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, v.Epoch)
	dst = appendString(dst, v.Primary)
	dst = append(dst, flag(v.PeerSeen))
	dst = appendReport(dst, &v.PeerReport)
	dst = binary.AppendVarint(dst, int64(v.PeerAge))
	return binary.AppendUvarint(dst, v.BackupLost)
}

// DecodeView decodes a View.
func DecodeView(b []byte) (View, error) {
	d := decoder{what: "view", b: b}
	d.version()
	v := View{Epoch: d.uvarint(), Primary: d.string(), PeerSeen: d.flags(flagSet) != 0, PeerReport: d.report()}
	v.PeerAge = time.Duration(d.varint())
	v.BackupLost = d.uvarint()
	return v, d.finish()
}

// EncodeTakeover appends the encoding of r to dst:
//
//	1 | mirror str | member str | epoch uvarint | newEpoch uvarint
func EncodeTakeover(dst []byte, r *TakeoverRequest) []byte {
	dst = appendRequest(dst, r.Mirror, r.Member, r.Epoch)
	return binary.AppendUvarint(dst, r.NewEpoch)
}

// DecodeTakeover decodes a TakeoverRequest.
func DecodeTakeover(b []byte) (TakeoverRequest, error) {
	d := decoder{what: "takeover request", b: b}
	d.version()
	r := TakeoverRequest{Mirror: d.string(), Member: d.string(), Epoch: d.uvarint(), NewEpoch: d.uvarint()}
	return r, d.finish()
}

// EncodeContinue appends the encoding of r to dst:
//
//	1 | mirror str | member str | epoch uvarint
func EncodeContinue(dst []byte, r *ContinueRequest) []byte {
	return appendRequest(dst, r.Mirror, r.Member, r.Epoch)
}

// DecodeContinue decodes a ContinueRequest.
func DecodeContinue(b []byte) (ContinueRequest, error) {
	d := decoder{what: "continue request", b: b}
	d.version()
	r := ContinueRequest{Mirror: d.string(), Member: d.string(), Epoch: d.uvarint()}
	return r, d.finish()
}

// EncodeRejoined appends the encoding of r to dst, laid out as a ContinueRequest.
func EncodeRejoined(dst []byte, r *RejoinedRequest) []byte {
	return appendRequest(dst, r.Mirror, r.Member, r.Epoch)
}

// DecodeRejoined decodes a RejoinedRequest.
func DecodeRejoined(b []byte) (RejoinedRequest, error) {
	d := decoder{what: "rejoined request", b: b}
	d.version()
	r := RejoinedRequest{Mirror: d.string(), Member: d.string(), Epoch: d.uvarint()}
	return r, d.finish()
}

func appendRequest(dst []byte, mirror, member string, epoch uint64) []byte {
	dst = append(dst, messageVersion)
	dst = appendString(dst, mirror)
	dst = appendString(dst, member)
	return binary.AppendUvarint(dst, epoch)
}

// EncodeDecision appends the encoding of dec to dst:
//
//	1 | flags u8 | epoch uvarint | primary str | reason str
func EncodeDecision(dst []byte, dec *Decision) []byte {
	dst = append(dst, messageVersion, flag(dec.Granted))
	dst = binary.AppendUvarint(dst, dec.Epoch)
	dst = appendString(dst, dec.Primary)
	return appendString(dst, dec.Reason)
}

// DecodeDecision decodes a Decision.
func DecodeDecision(b []byte) (Decision, error) {
	d := decoder{what: "decision", b: b}
	d.version()
	dec := Decision{Granted: d.flags(flagSet) != 0, Epoch: d.uvarint(), Primary: d.string(), Reason: d.string()}
	return dec, d.finish()
}

// EncodeAuth appends the encoding of a to dst:
//
//	1 | token str
func EncodeAuth(dst []byte, a *Auth) []byte {
	return appendString(append(dst, messageVersion), a.Token)
}

// DecodeAuth decodes an Auth.
func DecodeAuth(b []byte) (Auth, error) {
	d := decoder{what: "auth", b: b}
	d.version()
	a := Auth{Token: d.string()}
	return a, d.finish()
}

func flag(b bool) byte {
	if b {
		return flagSet
	}
	return 0
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads a payload. The first failure sticks and later reads return zero values, so a decode function checks
// the error once, in finish. Integers must be minimally encoded, so every accepted payload re-encodes to the same bytes.
type decoder struct {
	what string // message name, for errors
	b    []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s at offset %d", wire.ErrMalformed, d.what, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != messageVersion {
		d.off--
		d.fail("unknown format version %d", v)
	}
}

// flags reads a flag byte and refuses bits outside known.
func (d *decoder) flags(known byte) byte {
	v := d.byte()
	if d.err == nil && v&^known != 0 {
		d.off--
		d.fail("unknown flags %#x", v&^known)
		return 0
	}
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("non-minimal uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n != len(binary.AppendVarint(nil, v)) {
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("string of %d bytes past the end", n)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}

// maxMirrorName and maxMemberName are the longest names MIRRORING.md §1 allows.
const (
	maxMirrorName = 15
	maxMemberName = 32
)

// canonicalMirror validates a mirror name (1 to 15 letters or digits) and returns it upper-cased, as members store it.
func canonicalMirror(name string) (string, error) {
	if name == "" || len(name) > maxMirrorName {
		return "", fmt.Errorf("mirror name %q must be 1 to %d letters or digits: %w", name, maxMirrorName, wire.ErrInvalidName)
	}
	for i, c := range name {
		if !isLetter(c) && !isDigit(c) {
			return "", fmt.Errorf("mirror name %q: character %q at %d is not a letter or digit: %w", name, c, i+1, wire.ErrInvalidName)
		}
	}
	return strings.ToUpper(name), nil
}

// validMember checks a member name: 1 to 32 letters, digits, '_' or '-'.
func validMember(name string) error {
	if name == "" || len(name) > maxMemberName {
		return fmt.Errorf("member name %q must be 1 to %d letters, digits, '_' or '-': %w", name, maxMemberName, wire.ErrInvalidName)
	}
	for i, c := range name {
		if !isLetter(c) && !isDigit(c) && c != '_' && c != '-' {
			return fmt.Errorf("member name %q: character %q at %d is not a letter, digit, '_' or '-': %w", name, c, i+1, wire.ErrInvalidName)
		}
	}
	return nil
}

func isLetter(c rune) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c rune) bool  { return c >= '0' && c <= '9' }
