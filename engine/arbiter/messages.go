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
	d := newDecoder("report", b)
	d.Version()
	r := d.report()
	return r, d.Finish()
}

func appendReport(dst []byte, r *Report) []byte {
	dst = wire.AppendString(dst, r.Mirror)
	dst = wire.AppendString(dst, r.Member)
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
	r := Report{Mirror: d.String(), Member: d.String(), Epoch: d.Uvarint()}
	flags := d.Flags(reportFlags)
	r.Primary, r.ActiveBackup, r.SeesPeer = flags&flagPrimary != 0, flags&flagActiveBackup != 0, flags&flagSeesPeer != 0
	r.QoS = time.Duration(d.Varint())
	return r
}

// EncodeView appends the encoding of v to dst:
//
//	1 | epoch uvarint | primary str | flags u8 | peer report (Report without its version) | peerAge varint | backupLost uvarint
func EncodeView(dst []byte, v *View) []byte {
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, v.Epoch)
	dst = wire.AppendString(dst, v.Primary)
	dst = append(dst, flag(v.PeerSeen))
	dst = appendReport(dst, &v.PeerReport)
	dst = binary.AppendVarint(dst, int64(v.PeerAge))
	return binary.AppendUvarint(dst, v.BackupLost)
}

// DecodeView decodes a View.
func DecodeView(b []byte) (View, error) {
	d := newDecoder("view", b)
	d.Version()
	v := View{Epoch: d.Uvarint(), Primary: d.String(), PeerSeen: d.Flags(flagSet) != 0, PeerReport: d.report()}
	v.PeerAge = time.Duration(d.Varint())
	v.BackupLost = d.Uvarint()
	return v, d.Finish()
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
	d := newDecoder("takeover request", b)
	d.Version()
	r := TakeoverRequest{Mirror: d.String(), Member: d.String(), Epoch: d.Uvarint(), NewEpoch: d.Uvarint()}
	return r, d.Finish()
}

// EncodeContinue appends the encoding of r to dst:
//
//	1 | mirror str | member str | epoch uvarint
func EncodeContinue(dst []byte, r *ContinueRequest) []byte {
	return appendRequest(dst, r.Mirror, r.Member, r.Epoch)
}

// DecodeContinue decodes a ContinueRequest.
func DecodeContinue(b []byte) (ContinueRequest, error) {
	d := newDecoder("continue request", b)
	d.Version()
	r := ContinueRequest{Mirror: d.String(), Member: d.String(), Epoch: d.Uvarint()}
	return r, d.Finish()
}

// EncodeRejoined appends the encoding of r to dst, laid out as a ContinueRequest.
func EncodeRejoined(dst []byte, r *RejoinedRequest) []byte {
	return appendRequest(dst, r.Mirror, r.Member, r.Epoch)
}

// DecodeRejoined decodes a RejoinedRequest.
func DecodeRejoined(b []byte) (RejoinedRequest, error) {
	d := newDecoder("rejoined request", b)
	d.Version()
	r := RejoinedRequest{Mirror: d.String(), Member: d.String(), Epoch: d.Uvarint()}
	return r, d.Finish()
}

func appendRequest(dst []byte, mirror, member string, epoch uint64) []byte {
	dst = append(dst, messageVersion)
	dst = wire.AppendString(dst, mirror)
	dst = wire.AppendString(dst, member)
	return binary.AppendUvarint(dst, epoch)
}

// EncodeDecision appends the encoding of dec to dst:
//
//	1 | flags u8 | epoch uvarint | primary str | reason str
func EncodeDecision(dst []byte, dec *Decision) []byte {
	dst = append(dst, messageVersion, flag(dec.Granted))
	dst = binary.AppendUvarint(dst, dec.Epoch)
	dst = wire.AppendString(dst, dec.Primary)
	return wire.AppendString(dst, dec.Reason)
}

// DecodeDecision decodes a Decision.
func DecodeDecision(b []byte) (Decision, error) {
	d := newDecoder("decision", b)
	d.Version()
	dec := Decision{Granted: d.Flags(flagSet) != 0, Epoch: d.Uvarint(), Primary: d.String(), Reason: d.String()}
	return dec, d.Finish()
}

// EncodeAuth appends the encoding of a to dst:
//
//	1 | token str
func EncodeAuth(dst []byte, a *Auth) []byte {
	return wire.AppendString(append(dst, messageVersion), a.Token)
}

// DecodeAuth decodes an Auth.
func DecodeAuth(b []byte) (Auth, error) {
	d := newDecoder("auth", b)
	d.Version()
	a := Auth{Token: d.String()}
	return a, d.Finish()
}

func flag(b bool) byte {
	if b {
		return flagSet
	}
	return 0
}

// decoder is wire's payload decoder with the arbiter's message readers on top.
type decoder struct{ *wire.Decoder }

func newDecoder(what string, b []byte) decoder { return decoder{wire.NewDecoder(what, b)} }

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
