package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/internal/sendlimit"
	"github.com/postwarden/postwarden/relay/internal/tracking"
)

// Envelope directions, as stored in the spool.
const (
	directionOutbound = "outbound"
	directionInbound  = "inbound"
)

// session is one go-smtp session: from EHLO to logout, or to STARTTLS, after which
// go-smtp starts a new one on the same connection (c keeps what must carry over).
type session struct {
	srv    *Server
	c      *conn
	dir    *directory.Directory // pinned at each MAIL FROM: a reload never changes a transaction
	keys   *dkim.Keyring        // the DKIM keys, pinned with dir
	tls    *tls.ConnectionState
	helo   string
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	cred *directory.Credential // after a successful AUTH

	// txnMu guards txn: with BDAT, go-smtp runs Data on its own goroutine, and an RSET or
	// a disconnect calls Reset meanwhile.
	txnMu sync.Mutex
	txn   *transaction
	// inData is set while Data runs.
	inData atomic.Bool
}

// transaction is one MAIL..DATA exchange.
type transaction struct {
	sender    string // as stored: local part as sent, domain lower-cased; "" is null
	senderKey string
	direction string
	// fromDomains are the domains a sending server (IP relay) may use in From:;
	// sendingServer is the one the sender is of, when the client relays as its server.
	fromDomains   []string
	sendingServer string
	rcpts         []string
	rcptKeys      map[string]bool
	rejected      int
	paced         bool // the transaction has waited for delivery (Pacer) once
	// Set by DATA: the From: domain of outbound mail once checkFrom allowed it (the
	// d= of its signatures); for the tracking line, the Message-ID, the bytes read, the
	// queue id once the message is queued and the selectors it was signed with.
	fromDomain string
	messageID  string
	size       int64
	queueID    string
	dkim       []string
	// sendLimit holds what the transaction reserved of its credential's sending limits.
	sendLimit *sendlimit.Txn
}

func (s *Server) newSession(sc *smtp.Conn) (smtp.Session, error) {
	c, err := connOf(sc.Conn())
	if err != nil {
		return nil, s.fail(nil, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		srv:    s,
		c:      c,
		dir:    s.directoryNow(),
		keys:   s.keyringNow(),
		helo:   sc.Hostname(),
		ctx:    ctx,
		cancel: cancel,
	}
	if st, ok := sc.TLSConnectionState(); ok {
		ss.tls = &st
	}
	ss.log = s.logger.With(tracking.KeySession, c.id, tracking.KeyClientIP, c.ip.String())
	return ss, nil
}

// fail maps err to its reply (see mapError), counts it, and applies the connection's
// error limits: past SoftErrorLimit every rejection waits ErrorDelay, and at
// HardErrorLimit the connection is closed after the reply.
func (s *Server) fail(ss *session, err error) error {
	reply, reason := mapError(err)
	s.metrics.Replies.WithLabelValues(strconv.Itoa(reply.Code), enhancedString(reply.EnhancedCode)).Inc()
	if reply.Code < 400 || ss == nil {
		return reply
	}
	s.metrics.MessagesRejected.WithLabelValues(reason).Inc()
	if reason == "internal" || reason == "storage" {
		ss.log.Error("temporary failure", "reason", reason, "error", err)
	} else {
		ss.log.Debug("rejected", "code", reply.Code, "reason", reason)
	}
	n := int(ss.c.errors.Add(1))
	if n >= s.limits.HardErrorLimit {
		ss.log.Warn("closing connection after too many errors", "errors", n)
		ss.c.closeOnSend.Store(true)
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"}
	}
	if n > s.limits.SoftErrorLimit {
		s.opts.Sleep(ss.ctx, s.limits.ErrorDelay)
	}
	return reply
}

// tlsVersion is "TLS1.3" and the like, as delivery names the versions of its sessions,
// or "none".
func (ss *session) tlsVersion() string {
	if ss.tls == nil {
		return tracking.NoTLS
	}
	return strings.ReplaceAll(tls.VersionName(ss.tls.Version), " ", "")
}

func (ss *session) tlsCipher() string {
	if ss.tls == nil {
		return tracking.NoTLS
	}
	return tls.CipherSuiteName(ss.tls.CipherSuite)
}

func (ss *session) authUser() string {
	if ss.cred == nil {
		return ""
	}
	return ss.cred.Username
}

// Reset ends the transaction; one that got no DATA is logged as abandoned.
func (ss *session) Reset() {
	if ss.inData.Load() {
		// go-smtp resets in the middle of BDAT (RSET, EHLO, an oversized chunk) while
		// Data still runs on its own goroutine, and its next BDAT would then race with
		// that goroutine over the chunk result: a later message could get this one's
		// reply. Ending the connection is the only safe way out.
		ss.log.Info("closing connection reset during BDAT")
		_ = ss.c.Close()
	}
	if txn := ss.takeTxn(); txn != nil {
		txn.sendLimit.Cancel()
		ss.track(txn, tracking.Abandoned, "")
	}
	ss.c.busy.Store(false)
}

// takeTxn ends the current transaction and returns it (nil if none).
func (ss *session) takeTxn() *transaction {
	ss.txnMu.Lock()
	defer ss.txnMu.Unlock()
	txn := ss.txn
	ss.txn = nil
	return txn
}

// Logout ends the session and its context.
func (ss *session) Logout() error {
	ss.Reset()
	ss.cancel()
	return nil
}

// Mail starts a transaction after checking who may send as from.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.c.busy.Store(true)
	if err := ss.repin(); err != nil {
		ss.c.busy.Store(false)
		ss.c.closeOnSend.Store(true)
		return ss.srv.fail(ss, err)
	}
	txn, err := ss.mail(from)
	if err == nil {
		err = ss.admitMessage(txn)
	}
	if err != nil {
		ss.c.busy.Store(false)
		return ss.srv.fail(ss, err)
	}
	txn.rcptKeys = map[string]bool{}
	ss.txnMu.Lock()
	ss.txn = txn
	ss.txnMu.Unlock()
	return nil
}

// repin decides each transaction against the config in force now: a deleted or rotated
// credential, a removed sending server or narrowed allowed senders take effect at the
// next MAIL FROM of a live session, not when it ends (a client can keep a session alive
// for as long as it sends commands). Within a transaction the view stays pinned, so a
// reload never changes one halfway; only a revocation also stops it at DATA.
func (ss *session) repin() error {
	ss.dir, ss.keys = ss.srv.directoryNow(), ss.srv.keyringNow()
	if ss.cred == nil {
		return nil
	}
	if err := ss.checkRevoked(ss.dir); err != nil {
		return err
	}
	ss.cred = ss.dir.Credential(ss.cred.Username)
	return nil
}

// errRevoked ends a session whose login is no longer valid.
var errRevoked = reject(421, smtp.EnhancedCode{4, 7, 0}, "credential_revoked",
	"Credentials are no longer valid, closing connection")

// checkRevoked fails when the session's credential is gone from dir or has another
// password there; the caller closes the connection after the reply.
func (ss *session) checkRevoked(dir *directory.Directory) error {
	if ss.cred == nil {
		return nil
	}
	if cur := dir.Credential(ss.cred.Username); cur != nil && cur.Hash.Equal(ss.cred.Hash) {
		return nil
	}
	ss.log.Info("closing the session of a revoked credential", "user", ss.cred.Username)
	return errRevoked
}

func (ss *session) mail(from string) (*transaction, error) {
	if ss.srv.opts.Mode == Submission {
		return ss.mailSubmission(from)
	}
	return ss.mailInbound(from)
}

func (ss *session) mailSubmission(from string) (*transaction, error) {
	if ss.cred == nil {
		return nil, reject(530, smtp.EnhancedCode{5, 7, 0}, "auth_required", "Authentication required")
	}
	if from == "" {
		return nil, reject(553, smtp.EnhancedCode{5, 7, 1}, "null_sender",
			"The null sender is not allowed on submission")
	}
	m, err := directory.ParseMailbox(from)
	if err != nil {
		return nil, reject(553, smtp.EnhancedCode{5, 1, 7}, "bad_sender_syntax", "Bad sender address syntax")
	}
	if !ss.dir.MaySend(ss.cred, m.Key()) {
		return nil, reject(553, smtp.EnhancedCode{5, 7, 1}, "sender_not_allowed",
			fmt.Sprintf("Sender address <%s> is not allowed for user %s", m, ss.cred.Username))
	}
	return &transaction{sender: m.String(), senderKey: m.Key(), direction: directionOutbound}, nil
}

func (ss *session) mailInbound(from string) (*transaction, error) {
	if from == "" {
		return &transaction{direction: directionInbound}, nil
	}
	m, err := directory.ParseMailbox(from)
	if err != nil {
		return nil, reject(553, smtp.EnhancedCode{5, 1, 7}, "bad_sender_syntax", "Bad sender address syntax")
	}
	txn := &transaction{sender: m.String(), senderKey: m.Key(), direction: directionInbound}
	// A registered sending server relays for the senders of its domains, unless the
	// domain requires AUTH.
	if ss.c.ip.IsValid() {
		for _, name := range ss.dir.SendingServerDomains(ss.c.ip) {
			if d := ss.dir.Domain(name); d != nil && !d.RequireSMTPAuth {
				txn.fromDomains = append(txn.fromDomains, name)
			}
		}
	}
	if slices.Contains(txn.fromDomains, m.Domain) {
		txn.direction = directionOutbound
		txn.sendingServer = m.Domain
	}
	return txn, nil
}

// track writes the message-tracking line of a transaction's end. It goes to the
// server's logger without the session's attributes, since the line carries them itself.
func (ss *session) track(txn *transaction, event tracking.Event, reason string) {
	t := tracking.Transaction{
		Event:              event,
		Listener:           ss.srv.opts.Mode.String(),
		Session:            ss.c.id,
		ClientIP:           ss.c.ip.String(),
		QueueID:            txn.queueID,
		MessageID:          txn.messageID,
		SASLUser:           ss.authUser(),
		SendingServer:      txn.sendingServer,
		Sender:             txn.sender,
		Recipients:         txn.rcpts,
		RejectedRecipients: txn.rejected,
		Direction:          txn.direction,
		Size:               txn.size,
		TLSVersion:         ss.tlsVersion(),
		TLSCipher:          ss.tlsCipher(),
		Reason:             reason,
		DKIM:               txn.dkim,
	}
	t.Log(context.Background(), ss.srv.tracking)
}
