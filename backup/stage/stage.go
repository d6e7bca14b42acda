// Package stage chooses the staging target for a URL: s3://bucket/prefix is an S3 bucket (backup/s3stage), file:///path
// or a plain path a directory (backup/dirstage). It only parses and dispatches; the targets own their storage.
package stage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/dirstage"
	"github.com/mirrorkit/mirrorkit/backup/s3stage"
)

// ErrBadURL is returned (wrapped) for a staging URL of no accepted form.
var ErrBadURL = errors.New("invalid staging URL")

const acceptedForms = "want s3://bucket/prefix, file:///absolute/path or a directory path"

// location is a parsed staging URL: a directory, or an S3 bucket and prefix.
type location struct {
	dir    string
	bucket string
	prefix string
}

// Open returns the target for rawURL; o configures an S3 target and is ignored for a directory.
func Open(ctx context.Context, rawURL string, o s3stage.Options) (backup.Target, error) {
	loc, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	if loc.dir != "" {
		return dirstage.New(loc.dir)
	}
	return s3stage.New(ctx, loc.bucket, loc.prefix, o)
}

// Describe says in words where rawURL stages backups, for plans; an S3 endpoint is the one the environment selects.
func Describe(rawURL string) string {
	loc, err := parse(rawURL)
	if err != nil {
		return err.Error()
	}
	if loc.dir != "" {
		return "directory " + loc.dir
	}
	endpoint, err := s3stage.Options{}.EndpointURL()
	if err != nil {
		endpoint = err.Error()
	}
	prefix := "with no prefix"
	if loc.prefix != "" {
		prefix = "prefix " + loc.prefix
	}
	return fmt.Sprintf("S3 bucket %s %s at endpoint %s", loc.bucket, prefix, endpoint)
}

func parse(rawURL string) (location, error) {
	bad := func(why string) (location, error) {
		return location{}, fmt.Errorf("%w %q: %s; %s", ErrBadURL, rawURL, why, acceptedForms)
	}
	if rawURL == "" {
		return bad("empty")
	}
	if !strings.Contains(rawURL, "://") {
		if looksLikeScheme(rawURL) {
			// A mistyped URL ("s3:bucket") must not silently stage backups in a local directory.
			return bad("looks like a URL without \"//\"; write a directory whose name has a colon as ./" + rawURL)
		}
		dir, err := filepath.Abs(rawURL)
		if err != nil {
			return bad(err.Error())
		}
		return location{dir: dir}, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return bad(err.Error())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("user, query and fragment are not allowed")
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return bad("no bucket")
		}
		prefix := strings.Trim(u.Path, "/")
		if prefix != "" {
			if err := dirstage.CheckKey(prefix); err != nil {
				return bad(err.Error())
			}
		}
		return location{bucket: u.Host, prefix: prefix}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return bad("a file URL names no host: file:///absolute/path")
		}
		if !filepath.IsAbs(u.Path) {
			return bad("not an absolute path")
		}
		return location{dir: filepath.Clean(u.Path)}, nil
	}
	return bad(fmt.Sprintf("unknown scheme %q", u.Scheme))
}

// looksLikeScheme reports whether s starts like a URL scheme: a letter, then letters, digits, "+", "-" or ".", then ":".
func looksLikeScheme(s string) bool {
	for i, c := range s {
		switch {
		case c == ':':
			return i > 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return false
}
