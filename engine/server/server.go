package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/restore"
)

// Server is one running member.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	jrn     *journal.Journal
	store   *store.Store
	mirrors *mirror.Manager
	shadows *shadow.Manager
	// clientTLS is this member's client side of mutual TLS (nil without TLS); selfDN its certificate's subject DN.
	clientTLS *tls.Config
	selfDN    string
	started   time.Time

	dataLn    net.Listener
	adminLn   net.Listener
	adminHTTP *http.Server

	incomingMu sync.Mutex
	incoming   map[string]*restore.DirSink // restores being received, by database

	mu       sync.Mutex
	conns    map[*wire.Conn]*served
	draining bool
	inflight sync.WaitGroup // requests being executed
	loops    sync.WaitGroup // accept loops, connection readers, purge loop
	stop     chan struct{}
}

// New opens the member's journal and databases (replaying the journal) and binds its ports. Serving starts with Serve.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("member", cfg.Name).Logger()
	log.Debug().Interface("config", cfg).Msg("configuration")
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(), conns: map[*wire.Conn]*served{}, stop: make(chan struct{}), started: time.Now()}
	// Ports are bound first: the mirrors need the addresses other members reach this one at.
	var serverTLS *tls.Config
	if cfg.TLS.Enabled() {
		var err error
		if serverTLS, err = cfg.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if s.clientTLS, err = cfg.TLS.ClientConfig(); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if s.selfDN, err = wire.CertDN(cfg.TLS.Cert); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	var err error
	if s.dataLn, err = wire.Listen(cfg.Listen, serverTLS); err != nil {
		return nil, fmt.Errorf("data port: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		s.dataLn.Close()
		return nil, fmt.Errorf("admin port %s: %w", cfg.AdminListen, err)
	}
	if serverTLS != nil {
		s.adminLn = tls.NewListener(s.adminLn, serverTLS)
	}
	if err := s.openStorage(); err != nil {
		s.dataLn.Close()
		s.adminLn.Close()
		return nil, err
	}
	s.adminHTTP = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// openStorage opens the local journal, the mirror journals, then the databases, and brings the mirrors up.
func (s *Server) openStorage() error {
	jrn, err := journal.Open(filepath.Join(s.cfg.DataDir, "journal"), journal.Options{
		SegmentSize: s.cfg.Journal.SegmentSize,
		Logger:      s.log.With().Str("component", "journal").Logger(),
		OnSync:      s.metrics.onSync,
	})
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	s.jrn = jrn
	mgr, err := mirror.Load(mirror.Options{DataDir: s.cfg.DataDir, Self: s.cfg.Name, Addr: s.DataAddr(), AdminAddr: s.AdminAddr(),
		Peers: s.cfg.Peers, SegmentSize: s.cfg.Journal.SegmentSize, Logger: s.log,
		PurgePolicy:   journal.PurgePolicy{KeepSegments: s.cfg.Journal.KeepSegments, MaxAge: s.cfg.Journal.MaxAge.Duration},
		PurgeInterval: s.cfg.Journal.PurgeInterval.Duration, TLS: s.clientTLS, SelfDN: s.selfDN, LocalJournal: jrn,
		AgentAddr: s.cfg.Failover.AgentAddr, AgentToken: s.cfg.Failover.AgentToken, ArbiterToken: s.cfg.Failover.ArbiterToken,
		ArbiterAddr: s.cfg.Failover.Arbiter, Agents: s.cfg.Failover.Agents, RollbackLimit: s.cfg.Failover.RollbackLimit})
	if err != nil {
		jrn.Close()
		return err
	}
	s.mirrors = mgr
	s.metrics.registry.MustRegister(mgr.Metrics())
	comp, _ := store.ParseCompression(s.cfg.DBCompression) // checked by Config.Validate
	st, err := store.Open(store.Options{Dir: s.cfg.DataDir, Journal: jrn, Mirrors: mgr.Attachments(), Logger: s.log, MaxValueSize: s.cfg.MaxValueSize,
		Compression: comp})
	if err != nil {
		mgr.CloseJournals()
		jrn.Close()
		return err
	}
	s.store = st
	shadows, err := shadow.Load(shadow.Options{DataDir: s.cfg.DataDir, Self: s.cfg.Name, Store: st, Local: jrn, TLS: s.clientTLS, Logger: s.log})
	if err != nil {
		st.Close()
		mgr.CloseJournals()
		jrn.Close()
		return err
	}
	s.shadows = shadows
	s.metrics.registry.MustRegister(shadows.Metrics())
	mgr.Start(st)
	shadows.Start()
	return nil
}

// DataAddr is the bound data address.
func (s *Server) DataAddr() string { return s.dataLn.Addr().String() }

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Store is the member's databases (for tests and in-process tools).
func (s *Server) Store() *store.Store { return s.store }

// Serve starts the accept loops and the journal purge loop, and returns at once.
func (s *Server) Serve() {
	s.loops.Add(3)
	go func() {
		defer s.loops.Done()
		s.acceptData()
	}()
	go func() {
		defer s.loops.Done()
		if err := s.adminHTTP.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("admin port stopped")
		}
	}()
	go func() {
		defer s.loops.Done()
		s.purgeLoop()
	}()
	s.log.Info().Str("listen", s.DataAddr()).Str("admin", s.AdminAddr()).Str("db_compression", string(s.store.Compression())).Msg("member serving")
}

func (s *Server) purgeLoop() {
	t := time.NewTicker(s.cfg.Journal.PurgeInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := s.purge(); err != nil {
			s.log.Error().Err(err).Msg("journal purge")
		}
	}
}

func (s *Server) purge() error {
	// Only this member writes its local journal: its local databases have applied all of it.
	if err := s.store.AdvanceIdle("", s.jrn.AppendedEnd()); err != nil {
		return err
	}
	floor, err := s.store.PurgeFloor("", s.jrn.AppendedEnd())
	if err != nil {
		return err
	}
	removed, err := s.jrn.Purge(journal.PurgePolicy{KeepSegments: s.cfg.Journal.KeepSegments, MaxAge: s.cfg.Journal.MaxAge.Duration}, floor)
	if len(removed) > 0 {
		s.log.Info().Strs("segments", removed).Str("floor", floor.String()).Msg("journal segments purged")
	}
	return err
}

// Shutdown stops the member in order: stop accepting connections and requests, let in-flight requests finish (their commits
// become durable), close connections, stop the admin port, flush and close the databases, then close the journal.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	s.mu.Unlock()
	close(s.stop)
	s.dataLn.Close()
	// A primary with an Active backup hands over first (unless no-failover is set), so clients only pause.
	s.mirrors.Stop(ctx, true)
	s.shadows.Close()

	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	var errs []error
	answered := true
	select {
	case <-done:
	case <-ctx.Done():
		answered = false
		errs = append(errs, fmt.Errorf("in-flight requests still running at shutdown: %w", ctx.Err()))
	}
	// Once every executed request is answered, clients are told that nothing they have no answer to was executed, so they
	// send it to the new primary. With requests still running that would not be true: connections just close, as streams do.
	s.mu.Lock()
	conns := maps.Clone(s.conns)
	s.mu.Unlock()
	for c, sv := range conns {
		if sv.clients && answered {
			go s.goAway(c, sv)
		} else {
			c.Close()
		}
	}
	if err := s.adminHTTP.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("admin port: %w", err))
	}
	s.loops.Wait()
	if err := s.closeStorage(); err != nil {
		errs = append(errs, err)
	}
	s.log.Info().Msg("member stopped")
	return errors.Join(errs...)
}

func (s *Server) closeStorage() error {
	var errs []error
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.mirrors != nil {
		errs = append(errs, s.mirrors.CloseJournals())
	}
	if s.jrn != nil {
		errs = append(errs, s.jrn.Close())
	}
	return errors.Join(errs...)
}
