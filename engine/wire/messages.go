package wire

import (
	"encoding/binary"
	"strconv"
)

// Purpose says what a connection is for; the server decides which purposes it serves.
type Purpose uint8

// Purposes.
const (
	PurposeClient Purpose = 1 // application requests
	PurposeStream Purpose = 2 // mirror journal stream between members
	PurposeShadow Purpose = 3 // shadow destination pulling a local journal
	PurposeAdmin  Purpose = 4 // administrative tools
)

func (p Purpose) String() string {
	switch p {
	case PurposeClient:
		return "client"
	case PurposeStream:
		return "stream"
	case PurposeShadow:
		return "shadow"
	case PurposeAdmin:
		return "admin"
	}
	return "purpose " + strconv.Itoa(int(p))
}

func (p Purpose) valid() bool { return p >= PurposeClient && p <= PurposeAdmin }

// Hello is the client's first frame.
type Hello struct {
	Protocol    uint16 // highest protocol the client speaks
	MinProtocol uint16 // lowest it accepts
	Software    string // software version, e.g. "0.1.0"
	Purpose     Purpose
	Name        string // client name or member name
}

// Welcome is the server's answer to an acceptable Hello.
type Welcome struct {
	Protocol  uint16 // negotiated
	Software  string
	Member    string // member name
	AdminAddr string // the member's admin HTTP address (host:port), so tools need only the data address
	MaxFrame  uint32 // largest payload the server reads
}

// EncodeHello appends the encoding of h to dst.
func EncodeHello(dst []byte, h *Hello) []byte {
	dst = append(dst, messageVersion)
	dst = binary.BigEndian.AppendUint16(dst, h.Protocol)
	dst = binary.BigEndian.AppendUint16(dst, h.MinProtocol)
	dst = append(dst, byte(h.Purpose))
	dst = appendString(dst, h.Software)
	return appendString(dst, h.Name)
}

// DecodeHello decodes a Hello; it does not judge the versions or the purpose (ServerHandshake does).
func DecodeHello(b []byte) (Hello, error) {
	d := decoder{what: "hello", b: b}
	d.version()
	h := Hello{
		Protocol:    d.u16(),
		MinProtocol: d.u16(),
		Purpose:     Purpose(d.byte()),
		Software:    d.string(),
		Name:        d.string(),
	}
	if err := d.finish(); err != nil {
		return Hello{}, err
	}
	return h, nil
}

// EncodeWelcome appends the encoding of w to dst.
func EncodeWelcome(dst []byte, w *Welcome) []byte {
	dst = append(dst, messageVersion)
	dst = binary.BigEndian.AppendUint16(dst, w.Protocol)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxFrame)
	dst = appendString(dst, w.Software)
	dst = appendString(dst, w.Member)
	return appendString(dst, w.AdminAddr)
}

// DecodeWelcome decodes a Welcome.
func DecodeWelcome(b []byte) (Welcome, error) {
	d := decoder{what: "welcome", b: b}
	d.version()
	w := Welcome{
		Protocol:  d.u16(),
		MaxFrame:  d.u32(),
		Software:  d.string(),
		Member:    d.string(),
		AdminAddr: d.string(),
	}
	if err := d.finish(); err != nil {
		return Welcome{}, err
	}
	return w, nil
}

// EncodeError appends the encoding of e (a KindError payload) to dst.
func EncodeError(dst []byte, e *Error) []byte {
	dst = append(dst, messageVersion)
	return appendErrorBody(dst, e)
}

// DecodeError decodes a KindError payload. Unknown codes are kept: a newer peer may send codes this build does not name.
func DecodeError(b []byte) (*Error, error) {
	d := decoder{what: "error", b: b}
	d.version()
	e := d.errorBody()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return e, nil
}

func appendErrorBody(dst []byte, e *Error) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Code))
	dst = appendString(dst, e.Message)
	return appendString(dst, e.Redirect)
}

func (d *decoder) errorBody() *Error {
	code := Code(d.u16())
	if d.err == nil && code == 0 {
		d.fail("error code 0")
	}
	return &Error{Code: code, Message: d.string(), Redirect: d.string()}
}
