package smtpd

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/sendlimit"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/relay/internal/webhook"
)

// Mode selects the policy of a listener.
type Mode int

const (
	// Submission is the authenticated outbound relay (port 587): STARTTLS, then AUTH, then
	// mail from the credential's own addresses only.
	Submission Mode = iota + 1
	// Inbound is the gateway for managed domains (port 25): no AUTH; mail to managed
	// recipients, and relaying for the domains' registered sending servers.
	Inbound
)

func (m Mode) String() string {
	switch m {
	case Submission:
		return "submission"
	case Inbound:
		return "inbound"
	}
	return "unknown"
}

// Queue stores accepted messages durably; the spool implements it. DATA takes the id
// from NewID before it writes its Received: header, so that the header, the 250 reply
// and the tracking log all name the message by the id it is queued under. AcceptSealed
// returns nil only once the message is durable under id: the 250 promises it. seal, when
// not nil, is called after body's last byte and may set the envelope's Prepend (the DKIM
// signatures), which must then be as durable as the body. When body or seal returns an
// error, AcceptSealed must return it wrapped (errors.Is and errors.As work) and keep
// nothing. announce, when not nil, must be called once the message is durable, on the
// caller's goroutine and before delivery can see the message: the server writes the
// message's "accepted" tracking line there, so it always precedes the delivery lines.
type Queue interface {
	NewID() string
	AcceptSealed(ctx context.Context, id string, env spool.Envelope, body io.Reader, seal func(*spool.Envelope) error, announce func()) error
}

// Pacer is flow control between acceptance and delivery (the delivery runner implements
// it): Pace returns at once while delivery to domain keeps up, and otherwise waits a
// bounded time, as Postfix's in_flow_delay does, before the server accepts a recipient
// of domain. It returns how long it waited.
type Pacer interface {
	Pace(domain string) time.Duration
}

// Verdict is a RecipientVerifier's answer.
type Verdict int

const (
	// VerdictUnknown: the address does not exist; the recipient is refused with 550 5.1.1.
	VerdictUnknown Verdict = iota
	// VerdictAccept: the address exists; the message is accepted for it.
	VerdictAccept
	// VerdictDefer: the answer is not known yet; the recipient gets 450 4.1.1.
	VerdictDefer
)

// RecipientVerifier decides about an address of a managed domain that the directory does
// not list (SMTP Discovery asks the customer's server). It receives only addresses that
// passed ParseMailbox, in lower case. It is consulted only when set; without one, every
// unlisted address is unknown. An error defers the recipient (450 4.4.3).
type RecipientVerifier interface {
	VerifyRecipient(ctx context.Context, domain *directory.Domain, address string) (Verdict, error)
}

// Observer hears of accepted mail that SMTP Discovery learns from. It is called on the
// session's goroutine before the client gets its 250, so it must be quick.
type Observer interface {
	// OutboundSender is called when a registered sending server (by IP, without AUTH)
	// had a message accepted from sender, the lower-case address of one of its domains;
	// entry is what the session's directory says about sender (KindUnknown when it does
	// not list it). A sending server may send as any address of its domains.
	OutboundSender(entry directory.Entry, sender string)
}

// Limits bound what one client may do. A zero field takes its default from
// DefaultLimits; every limit exists, none is unlimited.
type Limits struct {
	// MaxMessageBytes is advertised in SIZE and enforced while reading (552 5.3.4).
	MaxMessageBytes int64
	// MaxRecipients per message; the next RCPT gets 452 4.5.3.
	MaxRecipients int
	// MaxLineLength of commands and message lines, in bytes including CRLF. A longer
	// command gets 500 5.4.0, a longer message line 554 5.6.0; both end the connection.
	MaxLineLength int
	// MaxHeaderBytes is the size of the message header section (552 5.3.4 beyond it).
	MaxHeaderBytes int
	// CommandTimeout is how long the server waits for each command line.
	CommandTimeout time.Duration
	// DataTimeout is how long DATA may take from 354 to the final dot.
	DataTimeout time.Duration
	// WriteTimeout bounds each reply write.
	WriteTimeout time.Duration
	// MaxConnections is the limit of concurrent connections on one Server.
	MaxConnections int
	// MaxConnectionsPerIP is the limit of concurrent connections from one IPv4 address or
	// IPv6 /64.
	MaxConnectionsPerIP int
	// MaxConnectionsPerNetwork is the limit of concurrent connections from one IPv4 /24
	// or IPv6 /48.
	MaxConnectionsPerNetwork int
	// MaxConnectionRatePerIP is the limit of new connections a minute from one IPv4
	// address or IPv6 /64.
	MaxConnectionRatePerIP int
	// SoftErrorLimit is the number of rejected commands on a connection after which each
	// further rejection is delayed by ErrorDelay.
	SoftErrorLimit int
	ErrorDelay     time.Duration
	// HardErrorLimit is the number of rejected commands after which the connection is
	// closed with 421 4.7.0.
	HardErrorLimit int
	// JunkCommandLimit is how many commands a connection may send outside a mail
	// transaction (NOOP, RSET, VRFY, HELP, EHLO... ) since its last accepted message; the
	// next one ends it with 421.
	JunkCommandLimit int
	// MaxSessionLifetime ends a connection with 421 between commands once it is this old,
	// so no session outlives every other bound by sending commands forever.
	MaxSessionLifetime time.Duration
}

// DefaultLimits returns the defaults, mostly Postfix's (postconf(5)):
//   - MaxMessageBytes 25 MiB: Postfix's 10 MB is too small for today's attachments, and
//     25 MiB is what the large providers accept;
//   - MaxRecipients 1000 (smtpd_recipient_limit);
//   - MaxLineLength 2048 (line_length_limit), above RFC 5322's 998+2;
//   - MaxHeaderBytes 102400 (header_size_limit);
//   - CommandTimeout 5 min (smtpd_timeout), DataTimeout 10 min (maddy's read_timeout),
//     WriteTimeout 1 min;
//   - MaxConnections 1000; MaxConnectionsPerIP 30 (mox): lower than Postfix's 50, since a
//     legitimate server rarely needs more and a submission client far fewer;
//   - MaxConnectionsPerNetwork 100 (an IPv4 /24 or IPv6 /48): a tenth of MaxConnections,
//     so that a few dozen addresses of one network cannot hold every slot;
//   - MaxConnectionRatePerIP 300 a minute (mox's per-IP connection rate; Postfix's
//     smtpd_client_connection_rate_limit is off by default): far above what a server
//     that reuses sessions needs, it stops a client cycling connections to get round
//     the per-connection error and AUTH limits;
//   - SoftErrorLimit 10, ErrorDelay 1 s, HardErrorLimit 20 (smtpd_soft/hard_error_limit);
//   - JunkCommandLimit 100 (smtpd_junk_command_limit);
//   - MaxSessionLifetime 1 h: Postfix has no such bound, but its smtpd processes are
//     recycled (max_use); an hour is far more than a client that sends in bursts needs,
//     and it reconnects after the 421 as after any other.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:          25 << 20,
		MaxRecipients:            1000,
		MaxLineLength:            2048,
		MaxHeaderBytes:           102400,
		CommandTimeout:           5 * time.Minute,
		DataTimeout:              10 * time.Minute,
		WriteTimeout:             time.Minute,
		MaxConnections:           1000,
		MaxConnectionsPerIP:      30,
		MaxConnectionRatePerIP:   300,
		MaxConnectionsPerNetwork: 100,
		SoftErrorLimit:           10,
		ErrorDelay:               time.Second,
		HardErrorLimit:           20,
		JunkCommandLimit:         100,
		MaxSessionLifetime:       time.Hour,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	set(&l.MaxRecipients, d.MaxRecipients)
	set(&l.MaxLineLength, d.MaxLineLength)
	set(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	set(&l.MaxConnections, d.MaxConnections)
	set(&l.MaxConnectionsPerIP, d.MaxConnectionsPerIP)
	set(&l.MaxConnectionRatePerIP, d.MaxConnectionRatePerIP)
	set(&l.MaxConnectionsPerNetwork, d.MaxConnectionsPerNetwork)
	set(&l.SoftErrorLimit, d.SoftErrorLimit)
	set(&l.HardErrorLimit, d.HardErrorLimit)
	set(&l.JunkCommandLimit, d.JunkCommandLimit)
	setD(&l.MaxSessionLifetime, d.MaxSessionLifetime)
	setD(&l.CommandTimeout, d.CommandTimeout)
	setD(&l.DataTimeout, d.DataTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
	setD(&l.ErrorDelay, d.ErrorDelay)
	return l
}

// Options configure a Server. Mode, Hostname, Directory and Queue are required.
type Options struct {
	Mode Mode
	// Hostname is the relay's name in the greeting and in Received: headers.
	Hostname string
	// TLSConfig enables STARTTLS; it is used as given (GetCertificate picks the current
	// certificate). Nil disables STARTTLS, which on Submission means nobody can AUTH.
	TLSConfig *tls.Config
	// Directory returns the current directory; each session pins the one current when it
	// starts.
	Directory func() *directory.Directory
	Queue     Queue
	// RecipientVerifier, optional, is asked about unlisted addresses of managed domains.
	RecipientVerifier RecipientVerifier
	// Observer, optional, hears of accepted mail from sending servers.
	Observer Observer
	// Events, optional, takes a "refused" delivery event for each recipient of a managed
	// domain that the server refuses (events.go).
	Events webhook.Sink
	// DKIM, optional, returns the DKIM keys in force; each transaction pins them with
	// the directory, and outbound mail is signed with the keys of its From: domain
	// (dkim.go). Nil: nothing is signed.
	DKIM func() *dkim.Keyring
	// SendLimits, optional, enforces the credentials' sending limits (limits.go); nil:
	// none.
	SendLimits *sendlimit.Limiter
	// LimitHit, optional, hears of each transaction refused by a sending limit (a
	// credential over its limits may be a leaked one).
	LimitHit func(cred *directory.Credential, limit sendlimit.Limit)
	// Pacer, optional, slows transactions down while delivery does not keep up with
	// acceptance (rcpt.go); nil: never.
	Pacer  Pacer
	Limits Limits
	// Logger receives the message-tracking lines (relay/internal/tracking) and the
	// session's other lines (nil: slog.Default()).
	Logger *slog.Logger
	// Metrics (nil: unregistered metrics).
	Metrics *metrics.Metrics
	// AuthLimiter throttles failed AUTH per IP and network (nil: a private limiter with
	// throttle.DefaultAuthLimits). Share one between the listeners of a relay.
	AuthLimiter *throttle.AuthLimiter
	// Now is the clock for Received: headers, logs and rate limits (nil: time.Now).
	Now func() time.Time
	// Sleep waits d or until ctx ends; it applies AUTH and error delays (nil: a timer).
	// Tests replace it to observe delays without waiting.
	Sleep func(ctx context.Context, d time.Duration)
	// ClientIP overrides how the client address of a connection is found (nil: from
	// RemoteAddr, which a PROXY protocol listener already rewrites).
	ClientIP func(remote string) netip.Addr
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
