package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/backup/stage"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
)

// mirrorFlags name the mirror by any of its members.
type mirrorFlags struct {
	Mirror     []string      `env:"MIRRORKIT_MEMBER" help:"Data address host:port of a member of the mirror (repeat or comma-separate to give several)."`
	MirrorName string        `help:"The mirror's name, when the member belongs to several."`
	Timeout    time.Duration `default:"30s" help:"How long to wait for a member's answer."`
	TLSCert    string        `name:"tls-cert" env:"MIRRORKIT_TLS_CERT" type:"path" help:"Client certificate, for members that require TLS."`
	TLSKey     string        `name:"tls-key" env:"MIRRORKIT_TLS_KEY" type:"path" help:"Client certificate key."`
	TLSCA      string        `name:"tls-ca" env:"MIRRORKIT_TLS_CA" type:"path" help:"CA bundle that signs the members' certificates."`
}

func (f *mirrorFlags) tlsConfig() (*tls.Config, error) {
	files := wire.TLSFiles{Cert: f.TLSCert, Key: f.TLSKey, CA: f.TLSCA}
	if f.TLSCert == "" && f.TLSKey == "" && f.TLSCA == "" {
		return nil, nil
	}
	if err := files.Validate(); err != nil {
		return nil, usageError{Err: fmt.Errorf("tls: %w", err)}
	}
	return files.ClientConfig()
}

func (f *mirrorFlags) connect(ctx context.Context) (*mirrorctl.Fleet, error) {
	if len(f.Mirror) == 0 {
		return nil, usage("name a member of the mirror with --mirror host:port")
	}
	tlsConf, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	return mirrorctl.Connect(ctx, f.Mirror, f.MirrorName, mirrorctl.Options{TLS: tlsConf, Timeout: f.Timeout, Name: "migrate"})
}

// stageFlags choose the staging target.
type stageFlags struct {
	Stage         string   `help:"Where backups are staged: a directory, or s3://bucket/prefix."`
	S3Endpoint    string   `name:"s3-endpoint" help:"S3 endpoint host:port or URL (default: $AWS_ENDPOINT_URL, $MINIO_ENDPOINT, else AWS)."`
	S3AccessKey   string   `name:"s3-access-key" help:"S3 access key (default: $AWS_ACCESS_KEY_ID, $MINIO_ROOT_USER, $MINIO_ACCESS_KEY)."`
	S3SecretKey   string   `name:"s3-secret-key" help:"S3 secret key (default: $AWS_SECRET_ACCESS_KEY, $MINIO_ROOT_PASSWORD, $MINIO_SECRET_KEY)."`
	S3Region      string   `name:"s3-region" help:"S3 region (default: $AWS_REGION)."`
	S3Insecure    bool     `name:"s3-insecure" help:"Plain HTTP to an endpoint given as host:port."`
	S3Create      bool     `name:"s3-create-bucket" help:"Create the bucket when it does not exist."`
	PartSize      byteSize `default:"8MiB" help:"S3 multipart part size (memory per object upload: part size × parallel parts)."`
	PartsInFlight int      `default:"4" help:"S3 parts of one object uploaded at once."`
}

func (s *stageFlags) open(ctx context.Context) (backup.Target, error) {
	if s.Stage == "" {
		return nil, usage("name the stage with --stage DIR or --stage s3://bucket/prefix")
	}
	return stage.Open(ctx, s.Stage, s3stage.Options{Endpoint: s.S3Endpoint, AccessKey: s.S3AccessKey, SecretKey: s.S3SecretKey,
		Region: s.S3Region, Secure: !s.S3Insecure, PartSize: int64(s.PartSize), Parallel: s.PartsInFlight, CreateBucket: s.S3Create})
}

// keyFlags name the key file of encrypted backups.
type keyFlags struct {
	KeyFile string `type:"path" help:"Key file (migrate keygen): encrypts a new backup; needed to restore or verify an encrypted one."`
}

func (k *keyFlags) load() ([]byte, error) {
	if k.KeyFile == "" {
		return nil, nil
	}
	return backup.LoadKeyFile(k.KeyFile)
}

// output chooses how progress and results are printed.
type output struct {
	JSON bool `name:"json" help:"Print JSON: results as objects, progress as one JSON event per line."`
}

// events prints progress: JSON lines with --json, a progress bar on a terminal, text lines otherwise.
func (o *output) events() plans.Events {
	switch {
	case o.JSON:
		return plans.JSONEvents(os.Stdout)
	case isatty.IsTerminal(os.Stderr.Fd()):
		return plans.ProgressBar(os.Stderr)
	}
	return plans.TextEvents(os.Stderr)
}

// progress turns byte counts into progress events of a single operation.
func progress(ev plans.Events, kind string) func(done, total int64) {
	return func(done, total int64) {
		ev.Event(plans.Event{Time: time.Now(), Kind: kind, Phase: plans.PhaseProgress, Bytes: done, Total: total})
	}
}

// printDone prints the result of a command run with --json as the last JSON line, after the progress events.
func printDone(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", data)
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// interruptible is a context cancelled by SIGINT or SIGTERM, so an interrupted command stops cleanly (and resumes when
// run again).
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// byteSize is a size flag: a number of bytes with an optional unit (KiB, MiB, GiB; K, M, G and KB, MB, GB mean the same).
type byteSize int64

func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("size %q: want a positive number with an optional unit, e.g. 4MiB", s)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	if mult == 0 {
		return fmt.Errorf("size %q: unknown unit %q (use KiB, MiB or GiB)", s, unit)
	}
	*b = byteSize(n * mult)
	return nil
}
