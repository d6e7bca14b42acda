package s3stage

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

const (
	// DefaultPartSize is the multipart part size when Options.PartSize is zero.
	DefaultPartSize = 8 << 20
	// MinPartSize is the smallest part S3 accepts for any part but the last.
	MinPartSize = 5 << 20
	// DefaultParallel is the number of parts in flight per object when Options.Parallel is zero.
	DefaultParallel = 4
	// defaultEndpoint is AWS S3 itself, always over HTTPS.
	defaultEndpoint = "s3.amazonaws.com"
)

// Options configures the connection to S3 and the upload of large objects. Zero fields take defaults from the environment
// (see each field) and then from the constants above.
type Options struct {
	// Endpoint is host:port or a URL (http:// or https://). Default: $AWS_ENDPOINT_URL, else $MINIO_ENDPOINT, else
	// s3.amazonaws.com over HTTPS.
	Endpoint string
	// AccessKey and SecretKey default to $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN), else
	// $MINIO_ROOT_USER and $MINIO_ROOT_PASSWORD, else $MINIO_ACCESS_KEY and $MINIO_SECRET_KEY. Without keys requests are
	// anonymous.
	AccessKey, SecretKey string
	// Region defaults to $AWS_REGION, else $AWS_DEFAULT_REGION, else it is asked from the bucket.
	Region string
	// Secure selects HTTPS for an endpoint given as host:port. An endpoint URL's scheme decides by itself, and the
	// default AWS endpoint is always HTTPS.
	Secure bool
	// PartSize is the size of each part of a multipart upload, at least MinPartSize. Objects larger than one part are
	// uploaded in parts.
	PartSize int64
	// Parallel is the number of parts of one object uploaded at once. A Put holds at most PartSize × Parallel bytes in
	// memory, whether the object's size is known or not. S3 allows 10,000 parts, so an object of unknown size can be at
	// most PartSize × 10,000 bytes (80 GiB by default); a larger object of known size is sent in parts just large enough.
	Parallel int
	// CreateBucket creates the bucket when it does not exist, instead of failing.
	CreateBucket bool
}

// connection is Options with the environment and defaults applied and the endpoint split.
type connection struct {
	host                 string // host[:port], as minio-go wants it
	secure               bool
	accessKey, secretKey string
	sessionToken         string
	region               string
	partSize             int64
	parallel             int
	createBucket         bool
}

// resolve applies the environment and the defaults and checks the values.
func (o Options) resolve() (connection, error) {
	c := connection{
		region:       firstSet(o.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")),
		partSize:     o.PartSize,
		parallel:     o.Parallel,
		createBucket: o.CreateBucket,
	}
	var err error
	if c.host, c.secure, err = o.endpoint(); err != nil {
		return connection{}, err
	}
	switch {
	case o.AccessKey != "" || o.SecretKey != "":
		c.accessKey, c.secretKey = o.AccessKey, o.SecretKey
	case os.Getenv("AWS_ACCESS_KEY_ID") != "":
		c.accessKey, c.secretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		c.sessionToken = os.Getenv("AWS_SESSION_TOKEN")
	case os.Getenv("MINIO_ROOT_USER") != "":
		c.accessKey, c.secretKey = os.Getenv("MINIO_ROOT_USER"), os.Getenv("MINIO_ROOT_PASSWORD")
	default:
		c.accessKey, c.secretKey = os.Getenv("MINIO_ACCESS_KEY"), os.Getenv("MINIO_SECRET_KEY")
	}
	switch {
	case c.partSize == 0:
		c.partSize = DefaultPartSize
	case c.partSize < MinPartSize:
		return connection{}, fmt.Errorf("s3 part size %d is below the S3 minimum of %d bytes (5 MiB)", c.partSize, MinPartSize)
	}
	switch {
	case c.parallel == 0:
		c.parallel = DefaultParallel
	case c.parallel < 0:
		return connection{}, fmt.Errorf("s3 parallel parts %d: want at least 1", c.parallel)
	}
	return c, nil
}

// endpoint returns the host[:port] to connect to and whether to use HTTPS.
func (o Options) endpoint() (string, bool, error) {
	raw := firstSet(o.Endpoint, os.Getenv("AWS_ENDPOINT_URL"), os.Getenv("MINIO_ENDPOINT"))
	if raw == "" {
		return defaultEndpoint, true, nil
	}
	if !strings.Contains(raw, "://") {
		if strings.ContainsAny(raw, "/?#") {
			return "", false, fmt.Errorf("s3 endpoint %q: want host:port or a URL like https://host:port", raw)
		}
		return raw, o.Secure, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("s3 endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, fmt.Errorf("s3 endpoint %q: scheme %q, want http or https", raw, u.Scheme)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false, fmt.Errorf("s3 endpoint %q: want only a scheme, a host and a port, like https://host:port", raw)
	}
	return u.Host, u.Scheme == "https", nil
}

// EndpointURL returns the endpoint these options connect to, as a URL, for messages and plans.
func (o Options) EndpointURL() (string, error) {
	host, secure, err := o.endpoint()
	if err != nil {
		return "", err
	}
	if secure {
		return "https://" + host, nil
	}
	return "http://" + host, nil
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// ErrBucketNotFound is returned (wrapped) by New for a bucket that does not exist when CreateBucket is off.
var ErrBucketNotFound = errors.New("bucket does not exist")

// ErrUnreachable is returned (wrapped) when the endpoint cannot be connected to.
var ErrUnreachable = errors.New("s3 endpoint unreachable")
