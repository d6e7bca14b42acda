package wire

import (
	"encoding/binary"
	"math"
	"strconv"
)

// OpKind is an operation inside a Request.
type OpKind uint8

// Operations. Keys are encoded global keys (see package globals).
const (
	OpGet OpKind = 1 // Key → Result.Exists, Result.Value
	OpSet OpKind = 2 // Key, Value
	// OpKill removes Key and its whole subtree (NodeOnly: just the node's own value).
	OpKill OpKind = 3
	// OpOrder: Key is a reference whose last subscript is the starting point; Result.Key is the encoded key of the next
	// (Reverse: previous) sibling at that level, empty if none. A starting subscript "" means before the first (Reverse:
	// after the last), as in $ORDER.
	OpOrder OpKind = 4
	// OpQuery: Key is a subtree root (a global or a node); From resumes strictly after that key (empty: from the start);
	// Limit 0 means the server default (1000), at most 10000. Result.Pairs in key order, Result.More when truncated.
	OpQuery OpKind = 5
	OpIncr  OpKind = 6 // Key, Value = delta as decimal text → Result.Value = the new value
	// OpCAS sets Key to Value when its current state matches Expect/ExpectExists → Result.OK; Result.Exists and
	// Result.Value give the value after the operation.
	OpCAS  OpKind = 7
	OpData OpKind = 8 // Key → Result.Data: 0 none, 1 value without children, 10 children without value, 11 both ($DATA)
)

var opNames = [...]string{OpGet: "get", OpSet: "set", OpKill: "kill", OpOrder: "order", OpQuery: "query",
	OpIncr: "incr", OpCAS: "cas", OpData: "data"}

func (k OpKind) String() string {
	if k.valid() {
		return opNames[k]
	}
	return "op " + strconv.Itoa(int(k))
}

func (k OpKind) valid() bool { return k >= OpGet && k <= OpData }

// Writes reports whether the operation may change the database.
func (k OpKind) Writes() bool {
	switch k {
	case OpSet, OpKill, OpIncr, OpCAS:
		return true
	}
	return false
}

// Op is one operation. Fields an operation does not use are left empty.
type Op struct {
	Kind         OpKind
	Key          []byte // encoded global key
	Value        []byte
	Expect       []byte
	ExpectExists bool
	NodeOnly     bool
	Reverse      bool
	From         []byte
	Limit        uint32
}

// KV is one key/value pair of a query result.
type KV struct {
	Key   []byte
	Value []byte
}

// Result is the outcome of one Op.
type Result struct {
	Exists bool
	Value  []byte
	Key    []byte
	OK     bool
	Data   uint8
	Pairs  []KV
	More   bool
}

// Request is one transaction on one database: its ops run atomically, in order.
type Request struct {
	DB  string
	Ops []Op
}

// Response answers a Request.
type Response struct {
	Results []Result // one per op, in order
	Pos     string   // journal position of the commit, "" for read-only requests
	Err     *Error   // nil on success; on error nothing was applied and Results is not sent
}

// Op flag bits.
const (
	opExpectExists = 1 << iota
	opNodeOnly
	opReverse
	opHasValue
	opHasExpect
	opHasFrom
	opHasLimit
	opFlagsKnown = 1<<iota - 1
)

// Result flag bits.
const (
	resExists = 1 << iota
	resOK
	resMore
	resHasData
	resHasValue
	resHasKey
	resHasPairs
	resFlagsKnown = 1<<iota - 1
)

// Response status bytes.
const (
	respOK    = 0
	respError = 1
)

// MaxOps bounds the ops of a Request and the results of a Response. Decoded structures are far larger than their
// smallest encodings (an empty result is one byte), so this cap, not only the input size, bounds a decoder's memory.
const MaxOps = 1 << 16

// Smallest encodings, used to bound counts by the input size.
const (
	minOpSize     = 3 // kind, flags, empty key
	minResultSize = 1 // flags
	minKVSize     = 2 // two empty lengths
)

// EncodeRequest appends the encoding of r to dst.
func EncodeRequest(dst []byte, r *Request) []byte {
	dst = append(dst, messageVersion)
	dst = appendString(dst, r.DB)
	dst = binary.AppendUvarint(dst, uint64(len(r.Ops)))
	for i := range r.Ops {
		dst = appendOp(dst, &r.Ops[i])
	}
	return dst
}

func appendOp(dst []byte, op *Op) []byte {
	var flags byte
	setIf := func(cond bool, bit byte) {
		if cond {
			flags |= bit
		}
	}
	setIf(op.ExpectExists, opExpectExists)
	setIf(op.NodeOnly, opNodeOnly)
	setIf(op.Reverse, opReverse)
	setIf(len(op.Value) > 0, opHasValue)
	setIf(len(op.Expect) > 0, opHasExpect)
	setIf(len(op.From) > 0, opHasFrom)
	setIf(op.Limit > 0, opHasLimit)
	dst = append(dst, byte(op.Kind), flags)
	dst = appendBytes(dst, op.Key)
	if flags&opHasValue != 0 {
		dst = appendBytes(dst, op.Value)
	}
	if flags&opHasExpect != 0 {
		dst = appendBytes(dst, op.Expect)
	}
	if flags&opHasFrom != 0 {
		dst = appendBytes(dst, op.From)
	}
	if flags&opHasLimit != 0 {
		dst = binary.AppendUvarint(dst, uint64(op.Limit))
	}
	return dst
}

// DecodeRequest decodes a Request. Byte slices in the result alias b; empty ones are nil.
func DecodeRequest(b []byte) (Request, error) {
	d := decoder{what: "request", b: b}
	d.version()
	r := Request{DB: d.string()}
	if n := d.count(minOpSize, "ops"); n > 0 {
		r.Ops = make([]Op, n)
		for i := range r.Ops {
			d.op(&r.Ops[i])
		}
	}
	if err := d.finish(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// count reads the number of ops or results, at most MaxOps.
func (d *decoder) count(minSize int, what string) int {
	n := d.length(minSize)
	if n > MaxOps {
		d.fail("%d %s, limit %d", n, what, MaxOps)
		return 0
	}
	return n
}

func (d *decoder) op(op *Op) {
	op.Kind = OpKind(d.byte())
	if d.err == nil && !op.Kind.valid() {
		d.fail("unknown op kind %d", op.Kind)
	}
	flags := d.byte()
	if d.err == nil && flags&^opFlagsKnown != 0 {
		d.fail("unknown op flags %#x", flags)
	}
	op.ExpectExists = flags&opExpectExists != 0
	op.NodeOnly = flags&opNodeOnly != 0
	op.Reverse = flags&opReverse != 0
	op.Key = d.bytes()
	op.Value = d.optBytes(flags&opHasValue != 0, "value")
	op.Expect = d.optBytes(flags&opHasExpect != 0, "expect")
	op.From = d.optBytes(flags&opHasFrom != 0, "from")
	if flags&opHasLimit != 0 {
		limit := d.uvarint()
		if d.err == nil && (limit == 0 || limit > math.MaxUint32) {
			d.fail("limit %d out of range", limit)
		}
		op.Limit = uint32(limit)
	}
}

// EncodeResponse appends the encoding of r to dst. With r.Err set only the error is sent.
func EncodeResponse(dst []byte, r *Response) []byte {
	dst = append(dst, messageVersion)
	dst = appendString(dst, r.Pos)
	if r.Err != nil {
		dst = append(dst, respError)
		return appendErrorBody(dst, r.Err)
	}
	dst = append(dst, respOK)
	dst = binary.AppendUvarint(dst, uint64(len(r.Results)))
	for i := range r.Results {
		dst = appendResult(dst, &r.Results[i])
	}
	return dst
}

func appendResult(dst []byte, r *Result) []byte {
	var flags byte
	setIf := func(cond bool, bit byte) {
		if cond {
			flags |= bit
		}
	}
	setIf(r.Exists, resExists)
	setIf(r.OK, resOK)
	setIf(r.More, resMore)
	setIf(r.Data != 0, resHasData)
	setIf(len(r.Value) > 0, resHasValue)
	setIf(len(r.Key) > 0, resHasKey)
	setIf(len(r.Pairs) > 0, resHasPairs)
	dst = append(dst, flags)
	if flags&resHasData != 0 {
		dst = append(dst, r.Data)
	}
	if flags&resHasValue != 0 {
		dst = appendBytes(dst, r.Value)
	}
	if flags&resHasKey != 0 {
		dst = appendBytes(dst, r.Key)
	}
	if flags&resHasPairs != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(r.Pairs)))
		for _, kv := range r.Pairs {
			dst = appendBytes(dst, kv.Key)
			dst = appendBytes(dst, kv.Value)
		}
	}
	return dst
}

// DecodeResponse decodes a Response. Byte slices in the result alias b; empty ones are nil.
func DecodeResponse(b []byte) (Response, error) {
	d := decoder{what: "response", b: b}
	d.version()
	r := Response{Pos: d.string()}
	switch status := d.byte(); {
	case d.err != nil:
	case status == respError:
		r.Err = d.errorBody()
	case status == respOK:
		if n := d.count(minResultSize, "results"); n > 0 {
			r.Results = make([]Result, n)
			for i := range r.Results {
				d.result(&r.Results[i])
			}
		}
	default:
		d.fail("unknown status %d", status)
	}
	if err := d.finish(); err != nil {
		return Response{}, err
	}
	return r, nil
}

func (d *decoder) result(r *Result) {
	flags := d.byte()
	if d.err == nil && flags&^resFlagsKnown != 0 {
		d.fail("unknown result flags %#x", flags)
	}
	r.Exists = flags&resExists != 0
	r.OK = flags&resOK != 0
	r.More = flags&resMore != 0
	if flags&resHasData != 0 {
		r.Data = d.byte()
		if d.err == nil && r.Data != 1 && r.Data != 10 && r.Data != 11 {
			d.fail("data value %d", r.Data)
		}
	}
	r.Value = d.optBytes(flags&resHasValue != 0, "value")
	r.Key = d.optBytes(flags&resHasKey != 0, "key")
	if flags&resHasPairs != 0 {
		n := d.length(minKVSize)
		if d.err == nil && n == 0 {
			d.fail("pairs flagged present but empty")
		}
		if n > 0 {
			r.Pairs = make([]KV, n)
			for i := range r.Pairs {
				r.Pairs[i] = KV{Key: d.bytes(), Value: d.bytes()}
			}
		}
	}
}
