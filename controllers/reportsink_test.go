package controllers_test

import (
	"errors"

	"github.com/postwarden/postwarden/test/testkit"
)

// reportSink stands in for the relay's submission port in the discovery report tests:
// testkit's SMTP server with STARTTLS, a certificate for relayHostname from its own CA,
// and AUTH PLAIN checked against the credential hash in the config the operator wrote,
// so a mail arrives only when the operator's credential made it into the relay config.
type reportSink struct {
	*testkit.Server
	caPEM []byte

	// refuse, while on, makes every MAIL fail with a temporary error.
	refuse refuseSwitch
}

// sunkMessage is what the report tests read of a message.
type sunkMessage struct {
	user, from string
	to         []string
	data       string
}

func startReportSink() (*reportSink, error) {
	ca, err := testkit.GenerateCA(testkit.CommonName("report sink CA"))
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(testkit.Names(relayHostname))
	if err != nil {
		return nil, err
	}
	srv, err := testkit.NewServer("127.0.0.1:0", testkit.WithDomain(relayHostname), testkit.WithCertificate(cert),
		testkit.WithAuth(checkRelayCredential))
	if err != nil {
		return nil, err
	}
	return &reportSink{Server: srv, caPEM: []byte(ca.PEM()), refuse: refuseSwitch{srv}}, nil
}

// checkRelayCredential accepts the users of the relay config the operator wrote.
func checkRelayCredential(username, password string) error {
	snap, err := currentSnapshot()
	if err != nil {
		return err
	}
	for _, c := range snap.Credentials {
		if c.Username == username && verifyHash(c.PasswordHash, password) {
			return nil
		}
	}
	return errors.New("invalid credentials")
}

func (s *reportSink) messages() []sunkMessage {
	var out []sunkMessage
	for _, m := range s.Messages() {
		out = append(out, sunkMessage{user: m.User, from: m.From, to: m.To, data: string(m.Data)})
	}
	return out
}

// refuseSwitch turns the sink's refusal of MAIL on and off.
type refuseSwitch struct{ s *testkit.Server }

func (r refuseSwitch) Store(on bool) {
	if on {
		r.s.Inject(testkit.StageMail, testkit.Reply(451, "4.3.0", "Try again later"), -1)
		return
	}
	r.s.Inject(testkit.StageMail, nil, 0)
}
