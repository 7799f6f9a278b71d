package dev

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/postwarden/postwarden/test/testkit"
)

// startSink starts the stand-in destination mail server on addr: testkit's SMTP server,
// which accepts every message (unless told to refuse some recipients) and saves each as
// one .eml file in dir, printing a summary of each and its headers to out.
func startSink(addr, dir string, out io.Writer) (*testkit.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating sink folder: %w", err)
	}
	if out == nil {
		out = io.Discard
	}
	var mu sync.Mutex
	print := func(m testkit.Message) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = io.WriteString(out, summary(m))
	}
	srv, err := testkit.NewServer(addr, testkit.WithDomain("sink.localhost"), testkit.WithSaveDir(dir), testkit.OnMessage(print))
	if err != nil {
		return nil, err
	}
	// The sink stands in for the customers' own servers, which know their mailboxes: it
	// refuses the relay's catch-all probe (a random postwarden-probe-… address), so SMTP
	// Discovery learns from its other answers. It takes mail for every other address.
	srv.RejectRcptIf(func(addr string) bool { return strings.HasPrefix(addr, "postwarden-probe-") },
		testkit.Reply(550, "5.1.1", "no such mailbox"))
	return srv, nil
}

// summary is what the sink prints about a message: who sent it to whom, its size, its
// TLS version, its file and its header lines.
func summary(m testkit.Message) string {
	tlsText := "no TLS"
	if m.TLS != nil {
		tlsText = tls.VersionName(m.TLS.Version)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sink: mail from <%s> to <%s>, %d bytes, %s, saved as %s\n",
		m.From, strings.Join(m.To, ">, <"), len(m.Data), tlsText, m.Path)
	sc := bufio.NewScanner(bytes.NewReader(m.Data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && sc.Text() != "" {
		fmt.Fprintf(&b, "    %s\n", sc.Text())
	}
	return b.String()
}
