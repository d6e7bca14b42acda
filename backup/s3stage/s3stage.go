// Package s3stage is the S3 staging target: each backup object is one S3 object under a bucket and an optional key prefix,
// reached with minio-go (AWS S3, MinIO and other S3-compatible stores).
//
// Put streams the reader: an object up to PartSize is one PUT request, a larger or unknown-size object a multipart upload
// with Parallel parts in flight, so a Put holds at most PartSize × Parallel bytes, and S3 shows the object only when the
// upload completes. The parts of an upload that fails are aborted; an upload cut short by a cancelled context or a lost
// connection can leave invisible parts behind, which a bucket lifecycle rule (AbortIncompleteMultipartUpload) expires.
//
// Timeouts are short on purpose (dial 5 s, response headers 30 s, three attempts per request), so an unreachable endpoint
// fails in seconds with ErrUnreachable rather than retrying for minutes. Keys follow dirstage.CheckKey, so a backup staged
// in S3 can also be staged in a directory. The package owns only the objects under its prefix.
package s3stage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/dirstage"
)

const (
	dialTimeout           = 5 * time.Second
	responseHeaderTimeout = 30 * time.Second
	// maxAttempts counts the first try: minio-go's default of ten with backoff takes minutes against a dead endpoint.
	maxAttempts = 3
	// maxParts is S3's limit on the parts of one multipart upload.
	maxParts = 10000
)

// Target stores objects in an S3 bucket under a key prefix. It is safe for concurrent use.
type Target struct {
	client   *minio.Client
	bucket   string
	root     string // the prefix with a trailing slash, or ""
	endpoint string // for messages
	partSize int64
	parallel int
}

var _ backup.Target = (*Target)(nil)

// New connects to the bucket and checks that it exists (creating it when o.CreateBucket is set). prefix may be empty.
func New(ctx context.Context, bucket, prefix string, o Options) (*Target, error) {
	if bucket == "" {
		return nil, errors.New("s3 staging target: empty bucket name")
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := dirstage.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 prefix: %w", err)
		}
	}
	conn, err := o.resolve()
	if err != nil {
		return nil, err
	}
	transport, err := minio.DefaultTransport(conn.secure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	transport.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = responseHeaderTimeout
	client, err := minio.New(conn.host, &minio.Options{
		Creds:      credentials.NewStaticV4(conn.accessKey, conn.secretKey, conn.sessionToken),
		Secure:     conn.secure,
		Region:     conn.region,
		Transport:  transport,
		MaxRetries: maxAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", conn.host, err)
	}
	t := &Target{client: client, bucket: bucket, endpoint: conn.host, partSize: conn.partSize, parallel: conn.parallel}
	if prefix != "" {
		t.root = prefix + "/"
	}
	if err := t.checkBucket(ctx, conn); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Target) checkBucket(ctx context.Context, conn connection) error {
	exists, err := t.client.BucketExists(ctx, t.bucket)
	if err != nil {
		return t.fail("check bucket", "", err)
	}
	if exists {
		return nil
	}
	if !conn.createBucket {
		return fmt.Errorf("s3 bucket %s at %s: %w; create the bucket, or allow the staging target to create it",
			t.bucket, t.endpoint, ErrBucketNotFound)
	}
	err = t.client.MakeBucket(ctx, t.bucket, minio.MakeBucketOptions{Region: conn.region})
	if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou {
		return nil
	}
	if err != nil {
		return t.fail("create bucket", "", err)
	}
	return nil
}

// Put uploads r as the object. See the package comment for memory use.
func (t *Target) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := dirstage.CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return t.fail("put", key, err)
	}
	body := r
	if size >= 0 {
		// minio-go's parallel upload stops at the end of the reader without comparing it with size.
		body = &exactReader{r: r, left: size}
	}
	_, err := t.client.PutObject(ctx, t.bucket, t.root+key, body, size, minio.PutObjectOptions{
		PartSize:   uint64(t.partSizeFor(size)),
		NumThreads: uint(t.parallel),
		// Fill Parallel buffers of PartSize serially and upload them concurrently, for readers that cannot seek.
		ConcurrentStreamParts: true,
		ContentType:           "application/octet-stream",
		// Over plain HTTP minio-go would otherwise sign every 64 KiB of the body with SHA-256. What is stored carries its
		// own checks (CRC-32C and plaintext SHA-256 in the manifest, the manifest its own checksum), and the request is
		// still signed, so the payload hash buys nothing but CPU.
		DisableContentSha256: true,
	})
	if err != nil {
		return t.fail("put", key, err)
	}
	return nil
}

// partSizeFor raises the part size for an object too large for maxParts parts of the configured size.
func (t *Target) partSizeFor(size int64) int64 {
	if size <= t.partSize*maxParts {
		return t.partSize
	}
	const mib = 1 << 20
	perPart := (size + maxParts - 1) / maxParts
	return (perPart + mib - 1) / mib * mib
}

// Get returns the requested section of the object. The request is made before Get returns, so a missing object is
// reported here and not on the first Read; the body is read under ctx.
func (t *Target) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := dirstage.CheckKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3 get %s: negative offset %d", t.where(key), offset)
	}
	if length == 0 {
		if _, err := t.client.StatObject(ctx, t.bucket, t.root+key, minio.StatObjectOptions{}); err != nil {
			return nil, t.fail("get", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err := opts.SetRange(offset, offset+length-1)
		if err != nil {
			return nil, fmt.Errorf("s3 get %s: %w", t.where(key), err)
		}
	case offset > 0:
		err := opts.SetRange(offset, 0)
		if err != nil {
			return nil, fmt.Errorf("s3 get %s: %w", t.where(key), err)
		}
	}
	// Core's GetObject makes the request now; Client's would only on the first Read.
	body, _, _, err := minio.Core{Client: t.client}.GetObject(ctx, t.bucket, t.root+key, opts)
	if minio.ToErrorResponse(err).Code == minio.InvalidRange {
		// The object exists (it would be NoSuchKey otherwise) and the range starts at or past its end.
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if err != nil {
		return nil, t.fail("get", key, err)
	}
	return body, nil
}

// List returns the objects under the target's prefix whose keys start with prefix, in key order.
func (t *Target) List(ctx context.Context, prefix string) ([]backup.Object, error) {
	if err := dirstage.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	var objects []backup.Object
	for info := range t.client.ListObjects(ctx, t.bucket, minio.ListObjectsOptions{Prefix: t.root + prefix, Recursive: true}) {
		if info.Err != nil {
			return nil, t.fail("list", prefix+"*", info.Err)
		}
		key := strings.TrimPrefix(info.Key, t.root)
		if strings.HasSuffix(key, "/") {
			// A folder marker made by a console, not an object.
			continue
		}
		objects = append(objects, backup.Object{Key: key, Size: info.Size, Modified: info.LastModified})
	}
	// S3 lists in key order already; a store that does not must not change what callers see.
	slices.SortFunc(objects, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return objects, nil
}

// Delete removes the objects in batches; every object that could not be removed is named in the error.
func (t *Target) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := dirstage.CheckKey(key); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	objects := make(chan minio.ObjectInfo, len(keys))
	for _, key := range keys {
		objects <- minio.ObjectInfo{Key: t.root + key}
	}
	close(objects)
	var errs []error
	for failed := range t.client.RemoveObjects(ctx, t.bucket, objects, minio.RemoveObjectsOptions{}) {
		errs = append(errs, t.fail("delete", strings.TrimPrefix(failed.ObjectName, t.root), failed.Err))
	}
	return errors.Join(errs...)
}

// where names an object as an s3:// URL.
func (t *Target) where(key string) string {
	return "s3://" + t.bucket + "/" + t.root + key
}

// fail wraps an error from S3 with the operation and the object, classifying missing objects and dead endpoints.
func (t *Target) fail(op, key string, err error) error {
	name := t.where(key)
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey:
		return fmt.Errorf("s3 %s %s: %w", op, name, backup.ErrNotFound)
	case resp.Code == minio.NoSuchBucket:
		return fmt.Errorf("s3 %s %s at %s: %w: %w", op, name, t.endpoint, ErrBucketNotFound, err)
	case resp.Code == minio.AccessDenied || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch":
		return fmt.Errorf("s3 %s %s at %s: %w (check the access key and secret key, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
			op, name, t.endpoint, err)
	case unreachable(err):
		return fmt.Errorf("s3 %s %s: %w at %s: %w; check the endpoint address and that the server is running",
			op, name, ErrUnreachable, t.endpoint, err)
	}
	return fmt.Errorf("s3 %s %s at %s: %w", op, name, t.endpoint, err)
}

// unreachable tells connection failures (refused, timed out, unknown host) from answers of a server.
func unreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return (errors.As(err, &opErr) && opErr.Op == "dial") || errors.As(err, &dnsErr)
}

// exactReader passes size bytes through and fails when the reader ends early or holds more.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, e.checkEnd()
	}
	n, err := e.r.Read(p[:min(int64(len(p)), e.left)])
	e.left -= int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		return n, fmt.Errorf("reader ended %d bytes before its announced size", e.left)
	case err != nil && err != io.EOF:
		return n, err
	case e.left == 0:
		// Check now: an HTTP request body is not read past its Content-Length, so no later call would.
		return n, e.checkEnd()
	}
	return n, nil
}

// checkEnd reads one more byte to tell a reader of exactly the announced size from a longer one.
func (e *exactReader) checkEnd() error {
	var b [1]byte
	for range 100 {
		n, err := e.r.Read(b[:])
		if n > 0 {
			return errors.New("reader holds more than its announced size")
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}
