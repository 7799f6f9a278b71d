// Package smtpd is the relay's SMTP front door: the go-smtp backend and sessions of the
// submission listener (port 587: STARTTLS, AUTH, then mail from the credential's own
// addresses) and of the inbound listener (port 25: mail for managed domains, relaying
// for their sending servers, "Relay access denied" for everything else). Accepted
// messages go to a Queue (the spool) before the client gets its 250.
package smtpd

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/relay/internal/tracking"
)

// Server is one SMTP listener's server. Its go-smtp server is configured once in New and
// never changed afterwards.
type Server struct {
	opts   Options
	limits Limits
	logger *slog.Logger
	// tracking receives the message-tracking lines, which carry listener, session and
	// client_ip themselves: logger's attributes would repeat them.
	tracking *slog.Logger
	metrics  *metrics.Metrics
	auth     *throttle.AuthLimiter
	conns    *throttle.ConnLimiter
	smtp     *smtp.Server

	mu       sync.Mutex
	live     map[*conn]struct{}
	draining bool
}

// New returns a server for opts. It panics when a required option is missing, which is
// a programming error.
func New(opts Options) *Server {
	if opts.Mode != Submission && opts.Mode != Inbound {
		panic("smtpd: Options.Mode must be Submission or Inbound")
	}
	if opts.Directory == nil || opts.Queue == nil || opts.Hostname == "" {
		panic("smtpd: Options.Hostname, Directory and Queue are required")
	}
	s := &Server{
		opts:    opts,
		limits:  opts.Limits.withDefaults(),
		logger:  opts.Logger,
		metrics: opts.Metrics,
		auth:    opts.AuthLimiter,
		live:    map[*conn]struct{}{},
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.tracking = s.logger
	s.logger = s.logger.With(tracking.KeyListener, opts.Mode.String())
	if s.metrics == nil {
		s.metrics = metrics.New(nil)
	}
	if s.auth == nil {
		s.auth = throttle.NewAuthLimiter(throttle.DefaultAuthLimits(), opts.Now)
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	if s.opts.Sleep == nil {
		s.opts.Sleep = sleepCtx
	}
	s.conns = throttle.NewConnLimiter(throttle.ConnLimits{
		Total:          s.limits.MaxConnections,
		PerIP:          s.limits.MaxConnectionsPerIP,
		PerNetwork:     s.limits.MaxConnectionsPerNetwork,
		PerIPPerMinute: s.limits.MaxConnectionRatePerIP,
	}, opts.Now)

	srv := smtp.NewServer(backend{s})
	srv.Domain = opts.Hostname
	srv.TLSConfig = opts.TLSConfig
	srv.MaxMessageBytes = s.limits.MaxMessageBytes
	srv.MaxRecipients = s.limits.MaxRecipients
	srv.MaxLineLength = s.limits.MaxLineLength
	srv.ReadTimeout = s.limits.CommandTimeout
	srv.WriteTimeout = s.limits.WriteTimeout
	// The session itself refuses AUTH before TLS, with 530 5.7.0 rather than go-smtp's
	// 523, and never advertises AUTH on a plaintext connection.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(errorLogWriter{s.logger}, "", 0)
	srv.Debug = nil // the protocol trace would log AUTH exchanges
	s.smtp = srv
	return s
}

// Serve accepts connections on l until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.smtp.Serve(&listener{Listener: l, srv: s})
	if errors.Is(err, net.ErrClosed) {
		s.mu.Lock()
		draining := s.draining
		s.mu.Unlock()
		if draining {
			return nil
		}
	}
	return err
}

// Shutdown stops accepting, ends idle connections, lets connections inside a mail
// transaction finish until ctx ends, and then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	live := make([]*conn, 0, len(s.live))
	for c := range s.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	for _, c := range live {
		c.drain()
	}
	err := s.smtp.Shutdown(ctx)
	if ctx.Err() != nil {
		// go-smtp's Close does nothing after Shutdown, so close what is left ourselves.
		s.mu.Lock()
		left := make([]*conn, 0, len(s.live))
		for c := range s.live {
			left = append(left, c)
		}
		s.mu.Unlock()
		for _, c := range left {
			_ = c.Close()
		}
		return ctx.Err()
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil // closed by an earlier Shutdown
	}
	return err
}

// ActiveConnections returns the number of open connections.
func (s *Server) ActiveConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.newSession(c)
}

// errorLogWriter sends go-smtp's internal error log (panics, accept errors) to slog.
type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.l.Warn("smtp server", "error", string(p))
	return len(p), nil
}

var _ io.Writer = errorLogWriter{}

// directoryNow returns the current directory, or an empty one before the first load.
func (s *Server) directoryNow() *directory.Directory {
	if d := s.opts.Directory(); d != nil {
		return d
	}
	return directory.Empty()
}
