package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mirrorkit/mirrorkit/engine/arbiter"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

type arbiterCmd struct {
	Listen    string `default:"127.0.0.1:7300" help:"Arbiter address host:port."`
	DataDir   string `required:"" type:"path" help:"Directory of the arbiter's persisted decisions."`
	TLSCert   string `name:"tls-cert" type:"path" help:"The arbiter's certificate; with --tls-key and --tls-ca the port speaks mutual TLS."`
	TLSKey    string `name:"tls-key" type:"path" help:"The arbiter's certificate key."`
	TLSCA     string `name:"tls-ca" type:"path" help:"CA bundle of the mirrors' certificates."`
	Token     string `env:"MIRRORKIT_ARBITER_TOKEN" help:"Shared token every member must present (without TLS)."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"debug, info, warn or error."`
	LogFormat string `default:"auto" enum:"json,console,auto" help:"json, console or auto."`
}

// Run serves until SIGTERM or SIGINT: stop accepting, end the connections, release the state directory.
func (a *arbiterCmd) Run() error {
	files := wire.TLSFiles{Cert: a.TLSCert, Key: a.TLSKey, CA: a.TLSCA}
	var tlsConf *tls.Config
	if files != (wire.TLSFiles{}) {
		if !files.Enabled() {
			return usage("--tls-cert, --tls-key and --tls-ca go together")
		}
		var err error
		if tlsConf, err = files.ServerConfig(); err != nil {
			return usageError{Err: err}
		}
	}
	log := newLogger(server.LogConfig{Level: a.LogLevel, Format: a.LogFormat})
	// Signals are caught before the port opens, so one arriving as soon as the arbiter answers still shuts it down cleanly.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	srv, err := arbiter.NewServer(arbiter.Options{Dir: a.DataDir, Logger: log, TLS: tlsConf, Token: a.Token})
	if err != nil {
		return err
	}
	ln, err := wire.Listen(a.Listen, nil)
	if err != nil {
		return errors.Join(err, srv.Close())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case sig := <-signals:
		log.Info().Str("signal", sig.String()).Msg("shutting down")
		if err := srv.Close(); err != nil {
			return err
		}
		return <-served
	case err := <-served:
		return errors.Join(fmt.Errorf("arbiter on %s: %w", a.Listen, err), srv.Close())
	}
}
