package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/discovery"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/internal/proxyproto"
	"github.com/postwarden/postwarden/relay/internal/queueadmin"
	"github.com/postwarden/postwarden/relay/internal/sendlimit"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/webhook"
)

// Listener is one SMTP listener.
type Listener struct {
	// Addr is the address to listen on; "" disables the listener.
	Addr string
	// Proxy expects a PROXY protocol header from the peers in Config.TrustedProxies.
	Proxy bool
}

// Relay is a running relay: listeners bound, spool open.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	cfgm     *metrics.Config
	reload   *reloader
	// limitHits are the credentials refused for a sending limit lately, for the Lease;
	// sendLimits counts what each credential sends (the limits, and usage for the Lease).
	limitHits  sendlimit.Hits
	sendLimits *sendlimit.Limiter
	spool      *spool.Spool
	servers    []*smtpServer
	lease      *configsource.LeaseReporter
	source     interface {
		Run(ctx context.Context, sink configsource.Sink) error
	}
	http   *http.Server
	httpLn net.Listener
	// profile serves /debug/pprof/ on --profile-listen, when set.
	profile   *http.Server
	profileLn net.Listener
	admin     *queueadmin.Server // the queue's admin socket; nil when off
	draining  atomic.Bool

	runner         *delivery.Runner
	deliveryClient *delivery.Client
	events         *webhook.Sender // delivery events; set with the runner
	resolver       *mx.Resolver
	outboundDenied []netip.Prefix // see outboundGuard

	journal   *discovery.Journal
	verifier  *discovery.Verifier
	discovery *discoveryRecorder
	shipper   *discovery.Shipper
}

type smtpServer struct {
	mode smtpd.Mode
	srv  *smtpd.Server
	ln   net.Listener
}

// New checks cfg, opens the spool and binds the listeners. Call Run to serve.
func New(cfg Config) (r *Relay, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = 30 * time.Second
	}
	r = &Relay{cfg: cfg, log: cfg.Logger, registry: prometheus.NewRegistry()}
	r.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.cfgm = metrics.NewConfig(r.registry)
	smtpMetrics := metrics.New(r.registry)
	r.reload = &reloader{hostname: cfg.Hostname, log: r.log, metrics: r.cfgm, now: time.Now,
		first: make(chan struct{})}

	var extra []configsource.CertFiles
	if cfg.TLSCertFile != "" {
		extra = append(extra, configsource.CertFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile})
	}
	var eventsCA string // only the delivery events sender needs it
	if cfg.Delivery != nil {
		eventsCA = cfg.Delivery.Events.CAFile
	}
	if cfg.ConfigFile != "" {
		r.source = &configsource.File{Path: cfg.ConfigFile, ExtraCerts: extra, SecretsDir: cfg.SecretsDir,
			EventsCAFile: eventsCA, Logger: r.log}
	} else {
		r.source = &configsource.Kube{Client: cfg.Kube, Namespace: cfg.Namespace, Name: cfg.KubeConfigName,
			ExtraCerts: extra, EventsCAFile: eventsCA, Logger: r.log}
		if cfg.PodName != "" {
			r.lease = configsource.NewLeaseReporter(configsource.LeaseReporter{
				Client: cfg.Kube, Namespace: cfg.Namespace, PodName: cfg.PodName, Duration: cfg.LeaseDuration,
				Status: func() (bool, string) { return r.Ready(), r.reload.Hash() }, Logger: r.log,
				Annotations: r.leaseAnnotations,
			})
			r.reload.applied = r.lease.Poke
		}
	}

	// Undo what was opened if a later step fails. The named result r is nil by then,
	// so the cleanup holds on to the relay itself.
	opened := r
	defer func() {
		if err != nil {
			opened.closeListeners()
			opened.closeDiscovery()
			if opened.spool != nil {
				_ = opened.spool.Close()
			}
		}
	}()
	r.outboundGuard()
	if r.spool, err = spool.Open(cfg.SpoolDir, spool.Options{Logger: r.log.With("component", "spool")}); err != nil {
		return nil, fmt.Errorf("opening spool: %w", err)
	}
	metrics.NewQueue(r.registry, r.spool.Summary)
	if cfg.Delivery != nil {
		if err := r.newDelivery(cfg.Delivery); err != nil {
			return nil, err
		}
	}
	if err := r.newDiscovery(cfg.Discovery, r.resolver); err != nil {
		return nil, err
	}
	if cfg.AdminSocket != "" {
		if err := r.newAdmin(); err != nil {
			return nil, err
		}
	}
	authLimiter := throttle.NewAuthLimiter(throttle.DefaultAuthLimits(), nil)
	r.sendLimits = sendlimit.New(nil, func() int { return r.reload.View().Relays() })
	for _, l := range []struct {
		Listener
		mode smtpd.Mode
	}{{cfg.Submission, smtpd.Submission}, {cfg.Inbound, smtpd.Inbound}} {
		if l.Addr == "" {
			continue
		}
		ln, err := r.listen(l.Listener, l.mode)
		if err != nil {
			return nil, err
		}
		opts := smtpd.Options{
			Mode:        l.mode,
			Hostname:    cfg.Hostname,
			TLSConfig:   tlscert.ServerConfig(r.reload.Certificates),
			Directory:   r.reload.Directory,
			DKIM:        r.reload.DKIM,
			Queue:       r.spool,
			Limits:      cfg.Limits,
			Logger:      r.log,
			Metrics:     smtpMetrics,
			AuthLimiter: authLimiter,
			SendLimits:  r.sendLimits,
			LimitHit: func(c *directory.Credential, l sendlimit.Limit) {
				r.limitHits.Record(c.Username, c.Source, l, time.Now())
			},
		}
		if r.events != nil {
			opts.Events = r.events
		}
		if r.runner != nil {
			opts.Pacer = r.runner
		}
		if l.mode == smtpd.Inbound {
			// SMTP Discovery serves port 25 only: submission recipients are not checked.
			opts.RecipientVerifier, opts.Observer = r.verifier, r.discovery
		}
		srv := smtpd.New(opts)
		r.servers = append(r.servers, &smtpServer{mode: l.mode, srv: srv, ln: ln})
	}
	if cfg.HTTPAddr != "" {
		if r.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listening for http on %s: %w", cfg.HTTPAddr, err)
		}
		r.http = &http.Server{Handler: r.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	if cfg.ProfileAddr != "" {
		if r.profileLn, err = net.Listen("tcp", cfg.ProfileAddr); err != nil {
			return nil, fmt.Errorf("listening for profiles on %s: %w", cfg.ProfileAddr, err)
		}
		r.profile = &http.Server{Handler: profileHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	return r, nil
}

func (r *Relay) listen(l Listener, mode smtpd.Mode) (net.Listener, error) {
	// No TCP keepalive, as Postfix's smtpd: the command, DATA and session timeouts end a
	// connection whose client is gone, and Go's default keepalive costs four setsockopt
	// calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening for %s on %s: %w", mode, l.Addr, err)
	}
	if !l.Proxy {
		return ln, nil
	}
	rejects := r.cfgm.ProxyRejects.WithLabelValues(mode.String())
	return proxyproto.NewListener(ln, proxyproto.Options{
		Trusted:       r.cfg.TrustedProxies,
		HeaderTimeout: r.cfg.ProxyHeaderTimeout,
		OnReject: func(peer net.Addr, err error) {
			rejects.Inc()
			r.log.Warn("dropped connection without a valid PROXY header", "listener", mode.String(), "peer", peer.String(), "error", err)
		},
	}), nil
}

// Addr returns the bound address of the listener for mode, or nil.
func (r *Relay) Addr(mode smtpd.Mode) net.Addr {
	for _, s := range r.servers {
		if s.mode == mode {
			return s.ln.Addr()
		}
	}
	return nil
}

// SubmissionAddr returns the bound submission address, or nil.
func (r *Relay) SubmissionAddr() net.Addr { return r.Addr(smtpd.Submission) }

// InboundAddr returns the bound inbound address, or nil.
func (r *Relay) InboundAddr() net.Addr { return r.Addr(smtpd.Inbound) }

// ProfileAddr returns the bound address of the profile server, or nil.
func (r *Relay) ProfileAddr() net.Addr {
	if r.profileLn == nil {
		return nil
	}
	return r.profileLn.Addr()
}

// HTTPAddr returns the bound address of the metrics and health server, or nil.
func (r *Relay) HTTPAddr() net.Addr {
	if r.httpLn == nil {
		return nil
	}
	return r.httpLn.Addr()
}

// Spool returns the relay's spool.
func (r *Relay) Spool() *spool.Spool { return r.spool }

// Hash returns the hash of the snapshot in force, or "".
func (r *Relay) Hash() string { return r.reload.Hash() }

// Ready reports whether the relay serves mail: a snapshot and a certificate are loaded,
// and it is not shutting down.
func (r *Relay) Ready() bool {
	return !r.draining.Load() && r.reload.Hash() != "" && r.reload.Certificates().Len() > 0
}

// Run serves until ctx ends, then shuts down: it reports not ready, waits DrainDelay,
// stops accepting, lets sessions finish for GracePeriod, and closes the spool. It
// returns early with an error when a listener or the config source fails.
func (r *Relay) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	fatal := make(chan error, len(r.servers)+3)

	wg.Go(func() {
		if err := r.source.Run(bg, r.reload); err != nil {
			fatal <- fmt.Errorf("config source: %w", err)
		}
	})
	if r.lease != nil {
		wg.Go(func() { r.lease.Run(bg) })
	}
	if r.shipper != nil {
		// Stopped after delivery, so its last round publishes the last deliveries.
		wg.Go(func() { r.shipper.Run(bg) })
	}
	stopDelivery := r.startDelivery(bg)
	for _, s := range r.servers {
		r.log.Info("listening", "listener", s.mode.String(), "addr", s.ln.Addr().String())
		go func() {
			if err := s.srv.Serve(s.ln); err != nil {
				fatal <- fmt.Errorf("%s listener: %w", s.mode, err)
			}
		}()
	}
	if admin := r.admin; admin != nil {
		r.log.Info("listening", "listener", "admin", "addr", admin.Path())
		go func() {
			if err := admin.Serve(); err != nil {
				fatal <- fmt.Errorf("admin socket: %w", err)
			}
		}()
	}
	if r.profile != nil {
		r.log.Info("listening", "listener", "profiles", "addr", r.profileLn.Addr().String())
		go func() {
			if err := r.profile.Serve(r.profileLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fatal <- fmt.Errorf("profile server: %w", err)
			}
		}()
	}
	if r.http != nil {
		r.log.Info("listening", "listener", "http", "addr", r.httpLn.Addr().String())
		go func() {
			if err := r.http.Serve(r.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fatal <- fmt.Errorf("http server: %w", err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-fatal:
		r.log.Error("relay failing", "error", runErr)
	}
	r.shutdown(stopBG, &wg, stopDelivery)
	return runErr
}

func (r *Relay) shutdown(stopBG context.CancelFunc, wg *sync.WaitGroup, stopDelivery func()) {
	r.draining.Store(true)
	r.log.Info("shutting down", "drainDelay", r.cfg.DrainDelay, "gracePeriod", r.cfg.GracePeriod)
	if r.cfg.DrainDelay > 0 {
		time.Sleep(r.cfg.DrainDelay) // keep serving while balancers notice /readyz
	}
	grace, cancel := context.WithTimeout(context.Background(), r.cfg.GracePeriod)
	defer cancel()
	var sessions sync.WaitGroup
	for _, s := range r.servers {
		sessions.Go(func() {
			if err := s.srv.Shutdown(grace); err != nil {
				r.log.Warn("sessions cut at the end of the grace period", "listener", s.mode.String(), "error", err)
			}
		})
	}
	sessions.Wait()
	stopDelivery()
	// Queue commands work until the spool closes; then the socket goes, so a command
	// finds no relay rather than a dead one.
	r.closeAdmin()
	stopBG()
	wg.Wait()
	r.closeDiscovery()
	if err := r.spool.Close(); err != nil {
		r.log.Error("closing spool", "error", err)
	}
	if r.profile != nil {
		_ = r.profile.Close()
	}
	if r.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.http.Shutdown(ctx)
	}
	r.log.Info("stopped")
}

// closeListeners releases what New bound, when New fails or Run is never called.
func (r *Relay) closeListeners() {
	for _, s := range r.servers {
		_ = s.ln.Close()
	}
	r.closeAdmin()
	if r.httpLn != nil {
		_ = r.httpLn.Close()
	}
	if r.profileLn != nil {
		_ = r.profileLn.Close()
	}
}
