// Package wire owns the data-port protocol of a member: it is the one place that listens and dials (so TLS is a single
// switch), it frames messages over a connection, performs the versioned handshake, and encodes and decodes every message
// that crosses the data port (requests, responses, typed errors).
//
// It knows nothing about databases, mirrors or journals: it moves opaque encoded keys and values and leaves their meaning
// to the server and the client.
//
// # Connection
//
// A client opens a connection by writing the four bytes of [Magic], then a [KindHello] frame. The server checks the magic,
// negotiates a protocol version within [MinProtocolVersion, ProtocolVersion] and answers a [KindWelcome] frame, or a
// [KindError] frame before closing. The Hello message keeps its version-1 layout forever, because it is decoded before any
// version is agreed; later additions travel in frames sent after the handshake.
//
// # Frames
//
//	[uint32 BE payload length][uint8 kind][uint64 BE request id][payload]
//
// A response carries the request id of its request, so requests on one connection are pipelined and answered in any order.
//
// # Messages
//
// Every message payload starts with a format version byte (currently 1) so fields can be added later; decoders accept only
// versions they know and reject trailing bytes. Lengths and counts are canonical (minimal) uvarints, fixed-size integers
// are big-endian. Optional fields are announced by flag bits and are present only when non-empty, so every accepted
// message re-encodes to exactly the same bytes. Decoders never allocate more than a small multiple of their input.
//
//	Hello    = 1 | protocol u16 | minProtocol u16 | purpose u8 | software str | name str
//	Welcome  = 1 | protocol u16 | maxFrame u32 | software str | member str | adminAddr str
//	Error    = 1 | code u16 | message str | redirect str
//	Request  = 1 | db str | count uvarint | Op*
//	Op       = kind u8 | flags u8 | key bytes | [value bytes] | [expect bytes] | [from bytes] | [limit uvarint]
//	Response = 1 | pos str | 0 | count uvarint | Result*      (success)
//	         | 1 | pos str | 1 | code u16 | message str | redirect str   (error)
//	Result   = flags u8 | [data u8] | [value bytes] | [key bytes] | [count uvarint | (key bytes | value bytes)*]
//
// where str and bytes are a uvarint length followed by that many bytes.
package wire
