package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/server"
)

type runCmd struct {
	Config        string            `help:"TOML configuration file." type:"path"`
	Name          string            `help:"Member name (config: name)."`
	DataDir       string            `help:"Data directory (config: data_dir)." type:"path"`
	Listen        string            `help:"Data address host:port (config: listen)."`
	AdminListen   string            `help:"Admin HTTP address host:port (config: admin_listen)."`
	MaxValueSize  int               `help:"Largest value in bytes (config: max_value_size)."`
	DBCompression string            `name:"db-compression" help:"How databases compress their table files: fast (Snappy, the default), balanced (zstd 1 in the bottom level) or good (zstd 3 there: smaller databases and faster backups, more CPU spent compacting) (config: db_compression)."`
	SegmentSize   int64             `help:"Journal segment size in bytes (config: journal.segment_size)."`
	KeepSegments  int               `help:"Journal segments always kept (config: journal.keep_segments)."`
	MaxAge        time.Duration     `help:"Journal segments younger than this are kept (config: journal.max_age)."`
	PurgeEvery    time.Duration     `name:"purge-interval" help:"How often the journal is purged (config: journal.purge_interval)."`
	MaxFrame      int               `help:"Largest protocol frame in bytes (config: max_frame)."`
	LogLevel      string            `help:"debug, info, warn or error (config: log.level)."`
	LogFormat     string            `help:"json, console or auto (config: log.format)."`
	Peer          map[string]string `help:"Reach member NAME at ADDR (NAME=ADDR, repeatable; config: [peers])."`
	TLSCert       string            `name:"tls-cert" type:"path" help:"This member's certificate (config: tls.cert); with --tls-key and --tls-ca every port speaks mutual TLS."`
	TLSKey        string            `name:"tls-key" type:"path" help:"This member's certificate key (config: tls.key)."`
	TLSCA         string            `name:"tls-ca" type:"path" help:"CA bundle of the mirror's certificates (config: tls.ca)."`
	ShutdownWait  time.Duration     `default:"30s" help:"How long SIGTERM waits for in-flight requests."`
	AgentAddr     string            `help:"Address of the agent on this member's host (config: failover.agent_addr)."`
	AgentToken    string            `help:"Token presented to agents without TLS (config: failover.agent_token)." env:"MIRRORKIT_AGENT_TOKEN"`
	ArbiterToken  string            `help:"Token presented to arbiters without TLS (config: failover.arbiter_token)." env:"MIRRORKIT_ARBITER_TOKEN"`
	ArbiterVia    string            `name:"arbiter-via" help:"Reach the mirror's arbiter at this address instead (config: failover.arbiter)."`
	AgentVia      map[string]string `name:"agent-via" help:"Reach member NAME's agent at ADDR (NAME=ADDR, repeatable; config: [failover.agents])."`
	RollbackLimit int64             `help:"Largest divergent journal tail in bytes this member rolls back by itself (config: failover.rollback_limit)."`
}

// loadConfig reads the TOML file (if any), then applies every flag that was given.
func (r *runCmd) loadConfig() (server.Config, error) {
	var cfg server.Config
	if r.Config != "" {
		md, err := toml.DecodeFile(r.Config, &cfg)
		if errors.Is(err, fs.ErrNotExist) {
			return cfg, usage("config file %s does not exist", r.Config)
		}
		if err != nil {
			return cfg, usage("config file %s: %v", r.Config, err)
		}
		if undecoded := md.Undecoded(); len(undecoded) > 0 {
			return cfg, usage("config file %s: unknown key %q", r.Config, undecoded[0].String())
		}
	}
	for name, addr := range r.Peer {
		if cfg.Peers == nil {
			cfg.Peers = map[string]string{}
		}
		cfg.Peers[name] = addr
	}
	for name, addr := range r.AgentVia {
		if cfg.Failover.Agents == nil {
			cfg.Failover.Agents = map[string]string{}
		}
		cfg.Failover.Agents[name] = addr
	}
	setString(&cfg.Failover.AgentAddr, r.AgentAddr)
	setString(&cfg.Failover.AgentToken, r.AgentToken)
	setString(&cfg.Failover.ArbiterToken, r.ArbiterToken)
	setString(&cfg.Failover.Arbiter, r.ArbiterVia)
	if r.RollbackLimit != 0 {
		cfg.Failover.RollbackLimit = r.RollbackLimit
	}
	setString(&cfg.TLS.Cert, r.TLSCert)
	setString(&cfg.TLS.Key, r.TLSKey)
	setString(&cfg.TLS.CA, r.TLSCA)
	setString(&cfg.Name, r.Name)
	setString(&cfg.DataDir, r.DataDir)
	setString(&cfg.Listen, r.Listen)
	setString(&cfg.AdminListen, r.AdminListen)
	setString(&cfg.DBCompression, r.DBCompression)
	setString(&cfg.Log.Level, r.LogLevel)
	setString(&cfg.Log.Format, r.LogFormat)
	if r.MaxValueSize != 0 {
		cfg.MaxValueSize = r.MaxValueSize
	}
	if r.SegmentSize != 0 {
		cfg.Journal.SegmentSize = r.SegmentSize
	}
	if r.KeepSegments != 0 {
		cfg.Journal.KeepSegments = r.KeepSegments
	}
	if r.MaxAge != 0 {
		cfg.Journal.MaxAge.Duration = r.MaxAge
	}
	if r.PurgeEvery != 0 {
		cfg.Journal.PurgeInterval.Duration = r.PurgeEvery
	}
	if r.MaxFrame != 0 {
		cfg.MaxFrame = r.MaxFrame
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{Err: fmt.Errorf("configuration: %w", err)}
	}
	return cfg, nil
}

func setString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func newLogger(c server.LogConfig) zerolog.Logger {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	var log zerolog.Logger
	if c.Format == "console" || (c.Format == "auto" && isatty.IsTerminal(os.Stderr.Fd())) {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	} else {
		log = zerolog.New(os.Stderr)
	}
	return log.Level(level).With().Timestamp().Logger()
}

func (r *runCmd) Run() error {
	cfg, err := r.loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	srv.Serve()
	sig := <-signals
	log.Info().Str("signal", sig.String()).Msg("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), r.ShutdownWait)
	defer cancel()
	return srv.Shutdown(ctx)
}
