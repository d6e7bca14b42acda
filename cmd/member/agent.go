package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

type agentCmd struct {
	Config    string `required:"" type:"path" help:"The agent's TOML configuration: listen, token or [tls], and the [[member]]s it supervises."`
	Listen    string `help:"Agent address host:port (config: listen; default 127.0.0.1:7400)."`
	Token     string `env:"MIRRORKIT_AGENT_TOKEN" help:"Shared token every caller must present (config: token)."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"debug, info, warn or error."`
	LogFormat string `default:"auto" enum:"json,console,auto" help:"json, console or auto."`
}

// Run supervises the members and serves the agent's API until SIGTERM or SIGINT. Shutting down stops the API and the
// supervision only: the members are independent of the agent and keep running.
func (a *agentCmd) Run() error {
	cfg, err := agent.LoadConfig(a.Config)
	if err != nil {
		return usageError{Err: err}
	}
	setString(&cfg.Listen, a.Listen)
	setString(&cfg.Token, a.Token)
	log := newLogger(server.LogConfig{Level: a.LogLevel, Format: a.LogFormat})
	ag, err := agent.New(cfg, agent.Options{Logger: log})
	if err != nil {
		return usageError{Err: err}
	}
	// Signals are caught before the port opens, so one arriving as soon as the agent answers still shuts it down cleanly.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	cfg.Defaults()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return errors.Join(fmt.Errorf("agent: %w", err), ag.Close())
	}
	served := make(chan error, 1)
	go func() { served <- ag.Serve(ln) }()
	select {
	case sig := <-signals:
		log.Info().Str("signal", sig.String()).Msg("agent shutting down; members keep running")
		if err := ag.Close(); err != nil {
			return err
		}
		return <-served
	case err := <-served:
		return errors.Join(err, ag.Close())
	}
}
