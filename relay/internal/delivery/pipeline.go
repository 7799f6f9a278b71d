package delivery

import (
	"bufio"
	"cmp"
	"errors"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/outbound"
)

// transactPipelined is transact on a session whose server offers PIPELINING (RFC 2920):
// MAIL, every RCPT and DATA go out in one write and their replies are read in order,
// then the message with its final dot in a second write. A transaction takes two round
// trips instead of three and one per recipient, and a third of the system calls, as
// Postfix's smtp client does it. go-smtp's client sends one command at a time, so this
// writes to the session's connection itself; the session's other commands (RSET, QUIT)
// stay with go-smtp's client, which has nothing buffered in between.
//
// The outcomes are those of transact: a reply to MAIL refuses every recipient, a reply
// to RCPT its recipient, a reply to DATA or after the dot the accepted ones; a session
// that fails before the first reply is reported for a retry on a fresh one.
func (cl *Client) transactPipelined(s *session, req Request, res *Result, opts *smtp.MailOptions, start time.Time) (done, retry bool, err error) {
	cmds, err := pipelinedCommands(s.c, req, opts)
	if err != nil {
		// An address with a line break: never sent, never deliverable.
		for i, a := range req.Recipients {
			res.Recipients[i] = RecipientResult{Address: a, Outcome: Failed, Status: "5.1.3", Reason: err.Error()}
		}
		cl.finish(s, res, false)
		return true, false, nil
	}
	commandTimeout := cmp.Or(cl.opts.CommandTimeout, DefaultCommandTimeout)
	_ = s.raw.SetDeadline(time.Now().Add(commandTimeout))
	defer func() { _ = s.raw.SetDeadline(time.Time{}) }()
	if _, err := s.raw.Write(cmds); err != nil {
		s.close()
		return false, true, outbound.StageError(s.host, "MAIL FROM", err)
	}

	mailErr := s.reply(250)
	if mailErr != nil {
		if code, _, _, ok := outbound.ReplyOf(mailErr); !ok || code == 421 {
			// An I/O error or 421 before anything happened: on a pooled session it
			// only means the server dropped it while idle.
			s.close()
			return false, true, outbound.StageError(s.host, "MAIL FROM", mailErr)
		}
	}
	var accepted []int
	for i, a := range req.Recipients {
		err := s.reply(25)
		if _, _, _, ok := outbound.ReplyOf(err); err != nil && !ok {
			s.close()
			return false, false, outbound.StageError(s.host, "RCPT TO", err)
		}
		switch {
		case mailErr != nil:
			// The server answers RCPT after a refused MAIL with 503; the reason is MAIL's.
		case err != nil:
			res.Recipients[i] = classify(a, err)
		default:
			accepted = append(accepted, i)
		}
	}
	dataErr := s.reply(354)
	if _, _, _, ok := outbound.ReplyOf(dataErr); dataErr != nil && !ok {
		s.close()
		return false, false, outbound.StageError(s.host, "DATA", dataErr)
	}
	if mailErr != nil {
		out := classify("", mailErr)
		for i, a := range req.Recipients {
			out.Address = a
			res.Recipients[i] = out
		}
	}
	if mailErr != nil || len(accepted) == 0 {
		if dataErr == nil {
			// DATA went ahead without a transaction: a broken server. Ending the
			// message would deliver an empty one, so the session goes instead.
			cl.recordTLS(s, res)
			s.close()
			return true, false, nil
		}
		cl.finish(s, res, true)
		return true, false, nil
	}
	setAccepted := acceptedSetter(req, res, accepted)
	if dataErr != nil {
		setAccepted(classify("", dataErr))
		cl.finish(s, res, true)
		return true, false, nil
	}

	if _, err := req.Body.Seek(0, io.SeekStart); err != nil {
		s.close()
		setAccepted(RecipientResult{Outcome: Deferred, Status: "4.3.0", Reason: "reading the queued message failed"})
		cl.recordTLS(s, res)
		return true, false, nil
	}
	_ = s.raw.SetDeadline(time.Now().Add(cmp.Or(cl.opts.DataTimeout, DefaultDataTimeout)))
	if err := writeMessage(s, req.Body); err != nil {
		// Without the final dot nothing was delivered; another host may do better.
		s.close()
		return false, false, outbound.StageError(s.host, "message transfer", err)
	}
	text, err := s.replyText(250)
	cl.concluded(s, res, start, text, err, setAccepted)
	return true, false, nil
}

// pipelinedCommands is MAIL FROM with the parameters go-smtp's client would send, a RCPT
// TO for every recipient and DATA, as one buffer. Writing it all before reading a reply
// cannot deadlock: even the relay's largest recipient limit makes tens of kilobytes of
// commands and fewer of replies, within what the sockets buffer.
func pipelinedCommands(c *smtp.Client, req Request, opts *smtp.MailOptions) ([]byte, error) {
	for _, a := range append([]string{req.Sender}, req.Recipients...) {
		if strings.ContainsAny(a, "\r\n") {
			return nil, errors.New("the address holds a line break")
		}
	}
	var b strings.Builder
	b.Grow(64 + 48*len(req.Recipients))
	b.WriteString("MAIL FROM:<" + req.Sender + ">")
	if ok, _ := c.Extension("8BITMIME"); ok {
		b.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := c.Extension("SIZE"); ok && opts.Size != 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(opts.Size, 10))
	}
	if opts.UTF8 {
		b.WriteString(" SMTPUTF8") // transact has checked the server offers it
	}
	b.WriteString("\r\n")
	for _, a := range req.Recipients {
		b.WriteString("RCPT TO:<" + a + ">\r\n")
	}
	b.WriteString("DATA\r\n")
	return []byte(b.String()), nil
}

// copyBufs are io.CopyBuffer's buffers for writeMessage: neither the dot writer nor
// the body offers io.Copy a way round its own 32 KiB allocation per message.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeMessage sends body dot-stuffed, with the final dot, in as few writes as its
// size allows, through the session's buffered writer.
func writeMessage(s *session, body io.Reader) error {
	if s.w == nil {
		s.w = bufio.NewWriterSize(s.raw, 32<<10)
	}
	dw := textproto.NewWriter(s.w).DotWriter()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if _, err := io.CopyBuffer(dw, body, *bp); err != nil {
		return err
	}
	if err := dw.Close(); err != nil {
		return err
	}
	return s.w.Flush()
}

// reply reads the next reply and returns nil when its code is the one expected (a
// prefix, as textproto.Reader.ReadResponse takes it), else the reply as an
// *smtp.SMTPError, or the I/O error.
func (s *session) reply(expect int) error {
	_, err := s.replyText(expect)
	return err
}

// replyText is reply that also returns the reply's text.
func (s *session) replyText(expect int) (string, error) {
	_, msg, err := s.r.ReadResponse(expect)
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return "", smtpError(pe)
	}
	return msg, err
}

// smtpError turns a reply into the error go-smtp's client returns for it, enhanced
// status code split off, so ReplyOf and classify treat both paths alike.
func smtpError(pe *textproto.Error) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg, EnhancedCode: smtp.NoEnhancedCode}
	first, rest, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return e
	}
	var ec smtp.EnhancedCode
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return e
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return e
		}
		ec[i] = n
	}
	e.EnhancedCode = ec
	// RFC 2034: each line of a multi-line reply repeats the code.
	e.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return e
}
