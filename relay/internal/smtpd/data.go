package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/tracking"
)

var (
	errBareLineEnding = reject(550, smtp.EnhancedCode{5, 6, 0}, "bare_line_ending",
		"Message contains a bare CR or LF; every line must end with CRLF")
	errHeaderTooLarge = reject(552, smtp.EnhancedCode{5, 3, 4}, "header_too_large",
		"Message header section exceeds the maximum size")
	errBadHeader = reject(550, smtp.EnhancedCode{5, 6, 0}, "bad_header", "Malformed message header")
)

// dataReaders buffer the messages Data reads: one per message in flight, not one
// allocated for each message.
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// Data reads the message, checks its From: header where the sender is restricted, and
// streams it, behind our Received: header, into the queue, signing outbound mail with
// DKIM on the way (dkim.go). Any refusal happens before the queue sees a byte or makes
// the queue's Accept fail, so nothing is kept.
func (ss *session) Data(r io.Reader) error {
	ss.inData.Store(true)
	defer ss.inData.Store(false)
	txn := ss.takeTxn() // the transaction ends here; Reset must not log it as abandoned
	defer ss.c.busy.Store(false)
	if txn == nil {
		// Only BDAT gets here: go-smtp started Data on its goroutine, and the transaction
		// was reset (BDAT 0, then RSET) before Data ran. As in Reset, end the connection.
		_ = ss.c.Close()
		return ss.srv.fail(ss, reject(503, smtp.EnhancedCode{5, 5, 1}, "bad_sequence", "MAIL and RCPT first"))
	}
	// What the transaction reserved of its sending limits is given back unless the
	// message is accepted (Commit below).
	defer txn.sendLimit.Cancel()
	if err := ss.checkRevoked(ss.srv.directoryNow()); err != nil {
		ss.c.closeOnSend.Store(true)
		ss.track(txn, tracking.Rejected, "credential_revoked")
		return ss.srv.fail(ss, err)
	}
	// DATA, or BDAT with all its chunks, as a whole gets DataTimeout, rather than
	// go-smtp's command timeout measured from each command.
	deadline := time.Now().Add(ss.srv.limits.DataTimeout)
	ss.c.dataDeadline.Store(deadline.UnixNano())
	defer ss.c.dataDeadline.Store(0)
	_ = ss.c.Conn.SetReadDeadline(deadline)

	counted := &countingReader{r: r}
	br := dataReaders.Get().(*bufio.Reader)
	br.Reset(&lineEndingGuard{r: counted})
	defer func() { br.Reset(nil); dataReaders.Put(br) }()
	err := ss.queue(txn, br, counted)
	txn.size = counted.n
	ss.srv.metrics.BytesReceived.Add(float64(counted.n))
	if err != nil {
		if errors.Is(err, smtp.ErrDataReset) {
			// go-smtp reset the BDAT transaction under us (RSET, EHLO, an oversized
			// chunk). When Data ends before Reset sees it running, Reset cannot tell, so
			// end the connection here too, for the reason Reset gives.
			_ = ss.c.Close()
		}
		reply := ss.srv.fail(ss, err)
		_, reason := mapError(err)
		ss.track(txn, tracking.Rejected, reason)
		ss.refusedData(txn, reply)
		return reply
	}
	txn.sendLimit.Commit()
	if ss.cred != nil {
		ss.srv.metrics.CredentialMessages.WithLabelValues(ss.cred.Source.String(), "sent").Inc()
	}
	ss.c.idle.Store(0) // an accepted message ends a run of junk commands
	ss.srv.metrics.MessagesAccepted.WithLabelValues(txn.direction).Inc()
	if o := ss.srv.opts.Observer; o != nil && txn.direction == directionOutbound && ss.cred == nil && txn.senderKey != "" {
		o.OutboundSender(ss.dir.Lookup(txn.senderKey), txn.senderKey)
	}
	return ss.srv.fail(ss, &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + txn.queueID})
}

// queue reads the header, checks it, and streams the message into the queue under an
// id taken first, so that our Received: header names the id it is queued under; the
// id is set in txn only once the queue has the message, when the "accepted" tracking
// line is written: before delivery can see the message, whose lines come after it.
func (ss *session) queue(txn *transaction, br *bufio.Reader, counted *countingReader) error {
	header, err := readHeader(br, ss.srv.limits.MaxHeaderBytes)
	if err != nil {
		return err
	}
	txn.messageID = messageIDOf(header)
	if txn.direction == directionOutbound {
		if err := ss.checkFrom(txn, header); err != nil {
			return err
		}
	}
	env := spool.Envelope{
		Sender:     txn.sender,
		Recipients: slices.Clone(txn.rcpts),
		AuthUser:   ss.authUser(),
		ClientIP:   ss.c.ip.String(),
		Direction:  txn.direction,
		ReceivedAt: ss.srv.opts.Now(),
		MessageID:  txn.messageID,
	}
	id := ss.srv.opts.Queue.NewID()
	received := strings.NewReader(ss.received(txn, id, env.ReceivedAt))
	signer, keys, err := ss.startSigning(txn, header)
	if err != nil {
		return err
	}
	var rest io.Reader = br
	var seal func(*spool.Envelope) error
	if signer != nil {
		// The signer sees the rest of the message as the spool stores it, in the same
		// pass; it has the header already, and never sees our Received: field.
		defer signer.Abort()
		rest, seal = io.TeeReader(br, signer), sealWith(signer)
	}
	body := io.MultiReader(received, bytes.NewReader(header), rest)
	announce := func() {
		txn.queueID, txn.size = id, counted.n
		ss.signed(txn, keys)
		ss.track(txn, tracking.Accepted, "")
	}
	return ss.srv.opts.Queue.AcceptSealed(ss.ctx, id, env, body, seal, announce)
}

// checkFrom enforces that the From: header names exactly one address the sender may use:
// the credential's addresses on submission, the sending server's domains on port 25.
func (ss *session) checkFrom(txn *transaction, header []byte) error {
	if !bytes.HasSuffix(header, []byte("\r\n\r\n")) && !bytes.Equal(header, []byte("\r\n")) {
		header = append(slices.Clip(header), "\r\n"...)
	}
	if !fieldNamesValid(header) {
		return errBadHeader
	}
	msg, err := mail.ReadMessage(bytes.NewReader(header))
	if err != nil {
		return errBadHeader
	}
	froms := msg.Header["From"]
	if len(froms) != 1 {
		return reject(550, smtp.EnhancedCode{5, 7, 1}, "from_header",
			"Message must have exactly one From: header")
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) != 1 {
		return reject(550, smtp.EnhancedCode{5, 7, 1}, "from_header",
			"The From: header must hold exactly one valid address")
	}
	m, err := directory.ParseMailbox(addrs[0].Address)
	if err != nil {
		return reject(553, smtp.EnhancedCode{5, 7, 1}, "from_not_allowed",
			"The From: address is not an address this sender may use")
	}
	if ss.cred != nil {
		if !ss.dir.MaySend(ss.cred, m.Key()) {
			return reject(553, smtp.EnhancedCode{5, 7, 1}, "from_not_allowed",
				fmt.Sprintf("From: address <%s> is not allowed for user %s", m, ss.cred.Username))
		}
		txn.fromDomain = m.Domain
		return nil
	}
	if !slices.Contains(txn.fromDomains, m.Domain) {
		return reject(553, smtp.EnhancedCode{5, 7, 1}, "from_not_allowed",
			fmt.Sprintf("From: address <%s> is not in a domain this server may send for", m))
	}
	txn.fromDomain = m.Domain
	return nil
}

// received is our Received: trace header (RFC 5321 4.4) in Postfix's shape: the
// protocol keyword of RFC 3848, the TLS version and cipher and the authenticated user
// (as message tracking shows it) in comments, the queue id the message is stored under,
// and the recipient when there is only one.
func (ss *session) received(txn *transaction, id string, at time.Time) string {
	var b strings.Builder
	helo := ss.helo
	if helo == "" {
		helo = "unknown"
	}
	ip := ss.c.ip.String()
	if ss.c.ip.Is6() {
		ip = "IPv6:" + ip
	}
	proto := "ESMTP"
	if ss.tls != nil {
		proto += "S"
	}
	if ss.cred != nil {
		proto += "A"
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])", headerSafe(helo), ip)
	if ss.tls != nil {
		fmt.Fprintf(&b, "\r\n\t(version=%s cipher=%s)", headerSafe(ss.tlsVersion()), headerSafe(ss.tlsCipher()))
	}
	if user := ss.authUser(); user != "" {
		fmt.Fprintf(&b, "\r\n\t(authenticated user %s)", headerSafe(user))
	}
	fmt.Fprintf(&b, "\r\n\tby %s (Postwarden) with %s id %s", headerSafe(ss.srv.opts.Hostname), proto, id)
	date := at.UTC().Format(time.RFC1123Z)
	if len(txn.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>; %s\r\n", txn.rcpts[0], date)
	} else {
		fmt.Fprintf(&b, ";\r\n\t%s\r\n", date)
	}
	return b.String()
}

// headerSafe keeps client-supplied text from breaking out of a header comment.
func headerSafe(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' || r == '\\' || r == ';' {
			return '?'
		}
		return r
	}, s)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// lineEndingGuard fails on a CR not followed by LF or an LF not preceded by CR. go-smtp
// itself ends DATA only at CRLF.CRLF, but a bare line ending passed on to another server
// can end the message there (SMTP smuggling), so such messages are refused outright.
type lineEndingGuard struct {
	r   io.Reader
	cr  bool
	err error
}

func (g *lineEndingGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		if g.cr {
			g.cr = false
			if c != '\n' {
				g.err = errBareLineEnding
				return i, g.err
			}
			continue
		}
		switch c {
		case '\r':
			g.cr = true
		case '\n':
			g.err = errBareLineEnding
			return i, g.err
		}
	}
	if err == io.EOF && g.cr {
		g.err = errBareLineEnding
		return n, g.err
	}
	return n, err
}
