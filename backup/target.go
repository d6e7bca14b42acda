package backup

import (
	"context"
	"errors"
	"io"
	"time"
)

// Target is a staging area for backups: a directory or an S3 bucket prefix (packages backup/dirstage and backup/s3stage,
// chosen by URL in backup/stage). Keys are slash-separated paths relative to the target's root.
type Target interface {
	// Put stores the object atomically: readers see either the whole object or none. size is the exact length of r, or -1
	// when unknown. An existing object with the same key is replaced.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get reads length bytes of the object from offset (length < 0: to the end). A missing object is ErrNotFound.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// List returns every object whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the objects; missing ones are not an error.
	Delete(ctx context.Context, keys ...string) error
}

// Object is one stored object as a listing shows it.
type Object struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// ErrNotFound is returned (wrapped) by Target.Get for a missing object.
var ErrNotFound = errors.New("object not found")
