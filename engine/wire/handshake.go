package wire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Negotiate picks the protocol for a client speaking [h.MinProtocol, h.Protocol] with this build: the highest version
// both speak. No overlap is a CodeVersion *Error naming both ranges.
func Negotiate(h Hello) (uint16, error) {
	v, e := negotiate(h)
	if e != nil {
		return 0, e
	}
	return v, nil
}

func negotiate(h Hello) (uint16, *Error) {
	v := min(h.Protocol, ProtocolVersion)
	if h.MinProtocol > h.Protocol || v < max(h.MinProtocol, MinProtocolVersion) {
		return 0, &Error{Code: CodeVersion, Message: fmt.Sprintf(
			"protocol version mismatch: client speaks %d..%d, server speaks %d..%d",
			h.MinProtocol, h.Protocol, MinProtocolVersion, ProtocolVersion)}
	}
	return v, nil
}

// ClientHandshake sends the magic and h, and waits for the Welcome. Zero Protocol and MinProtocol mean this build's range.
// A refusal from the server is returned as an error matching both ErrHandshake and the server's *Error code. ctx bounds
// the handshake; on error the caller must close c.
func ClientHandshake(ctx context.Context, c *Conn, h Hello) (Welcome, error) {
	if h.Protocol == 0 && h.MinProtocol == 0 {
		h.Protocol, h.MinProtocol = ProtocolVersion, MinProtocolVersion
	}
	w, err := clientHandshake(ctx, c, h)
	if err != nil {
		return Welcome{}, fmt.Errorf("%w with %s: %w", ErrHandshake, c.RemoteAddr(), err)
	}
	return w, nil
}

func clientHandshake(ctx context.Context, c *Conn, h Hello) (Welcome, error) {
	release := c.bindContext(ctx)
	w, err := exchangeHello(c, h)
	return w, release(err)
}

func exchangeHello(c *Conn, h Hello) (Welcome, error) {
	if err := c.write([]byte(Magic), Frame{Kind: KindHello, Payload: EncodeHello(nil, &h)}); err != nil {
		return Welcome{}, err
	}
	f, err := c.ReadFrame()
	if err != nil {
		return Welcome{}, err
	}
	switch f.Kind {
	case KindWelcome:
		w, err := DecodeWelcome(f.Payload)
		if err != nil {
			return Welcome{}, err
		}
		if w.Protocol < h.MinProtocol || w.Protocol > h.Protocol {
			return Welcome{}, fmt.Errorf("server chose protocol %d outside %d..%d", w.Protocol, h.MinProtocol, h.Protocol)
		}
		return w, nil
	case KindError:
		e, err := DecodeError(f.Payload)
		if err != nil {
			return Welcome{}, err
		}
		return Welcome{}, e
	default:
		return Welcome{}, fmt.Errorf("%w: expected welcome, got %s frame", ErrMalformed, f.Kind)
	}
}

// ServerHandshake reads the magic and the Hello, negotiates the protocol and asks welcome for the answer, whose Protocol
// it fills in (and MaxFrame, when zero, with c's limit). Any failure is answered with one KindError frame — an *Error
// returned by welcome is sent as is — and returned wrapped in ErrHandshake; the caller must then close c, which sends
// that frame. ctx bounds the handshake.
func ServerHandshake(ctx context.Context, c *Conn, welcome func(Hello) (Welcome, error)) (Hello, error) {
	release := c.bindContext(ctx)
	h, refusal, err := serverHandshake(c, welcome)
	if refusal != nil {
		// The refusal is best effort: the peer may be gone, and the handshake has failed either way.
		_ = c.WriteFrame(Frame{Kind: KindError, Payload: EncodeError(nil, refusal)})
	}
	if err = release(err); err != nil {
		return Hello{}, fmt.Errorf("%w with %s: %w", ErrHandshake, c.RemoteAddr(), err)
	}
	return h, nil
}

// serverHandshake returns the Hello, or the error to send (if any) and the error to return.
func serverHandshake(c *Conn, welcome func(Hello) (Welcome, error)) (Hello, *Error, error) {
	magic, err := c.readMagic()
	if err != nil {
		return Hello{}, nil, fmt.Errorf("read magic: %w", err)
	}
	if string(magic) != Magic {
		e := &Error{Code: CodeBadRequest, Message: fmt.Sprintf("not a mirrorkit data connection: bad magic %q", magic)}
		return Hello{}, e, e
	}
	f, err := c.ReadFrame()
	if err != nil {
		return Hello{}, nil, err
	}
	if f.Kind != KindHello {
		e := &Error{Code: CodeBadRequest, Message: fmt.Sprintf("expected hello, got %s frame", f.Kind)}
		return Hello{}, e, e
	}
	h, err := DecodeHello(f.Payload)
	if err != nil {
		return Hello{}, &Error{Code: CodeBadRequest, Message: err.Error()}, err
	}
	proto, e := negotiate(h)
	if e != nil {
		return Hello{}, e, e
	}
	if !h.Purpose.valid() {
		e := &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown connection purpose %d", h.Purpose)}
		return Hello{}, e, e
	}
	w, err := welcome(h)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Code: CodeInternal, Message: err.Error()}
		}
		return Hello{}, e, err
	}
	w.Protocol = proto
	if w.MaxFrame == 0 {
		w.MaxFrame = uint32(c.maxFrame)
	}
	if err := c.WriteFrame(Frame{Kind: KindWelcome, Payload: EncodeWelcome(nil, &w)}); err != nil {
		return Hello{}, nil, err
	}
	return h, nil, nil
}

// bindContext applies ctx's deadline and cancellation to c's I/O until the returned release is called with the outcome;
// release clears the deadline and reports an I/O failure caused by ctx as ctx's error.
func (c *Conn) bindContext(ctx context.Context) (release func(error) error) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(d) // a failure here surfaces as the next read or write failing
	}
	stop := context.AfterFunc(ctx, func() {
		_ = c.nc.SetDeadline(time.Unix(1, 0)) // unblocks pending I/O; the handshake then fails with ctx's error
	})
	return func(err error) error {
		if !stop() {
			// The callback ran or is running: c's deadline is in the past, so c is unusable.
			return ctx.Err()
		}
		if err != nil {
			if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
				return context.DeadlineExceeded
			}
			return err
		}
		if err := c.nc.SetDeadline(time.Time{}); err != nil {
			return fmt.Errorf("clear deadline: %w", err)
		}
		return nil
	}
}
