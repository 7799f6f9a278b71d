package smtpd

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// withDKIM signs with an Ed25519 key, selector "ed1", for each of domains, and returns
// the TXT records that publish the keys.
func withDKIM(t *testing.T, domains ...string) (envOption, map[string]string) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string][]byte{"dkim-key": {
		snapshot.DKIMPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}}
	var ds []snapshot.Domain
	records := map[string]string{}
	for _, d := range domains {
		ds = append(ds, snapshot.Domain{Name: d, DKIM: []snapshot.DKIMKey{
			{Selector: "ed1", Algorithm: snapshot.DKIMEd25519SHA256, SecretName: "dkim-key"}}})
		records["ed1._domainkey."+d] = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	keys := dkim.Compile(ds, secrets, nil)
	if len(keys.Problems()) != 0 {
		t.Fatal(keys.Problems())
	}
	return func(o *Options) { o.DKIM = func() *dkim.Keyring { return keys } }, records
}

// verifyDKIM verifies the message as delivery sends it: the stored prefix, then the
// body. It returns the signing domains of the signatures that verify, and fails on one
// that does not.
func verifyDKIM(t *testing.T, e *testEnv, id string, records map[string]string) []string {
	t.Helper()
	env, body := e.message(id)
	if strings.Contains(body, "DKIM-Signature") {
		t.Errorf("the stored body holds a signature: the body file must stay as received")
	}
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(env.Prepend+body), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if r, ok := records[name]; ok {
				return []string{r}, nil
			}
			return nil, errors.New("no such record")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("a signature fails: %v\n%s%s", v.Err, env.Prepend, body)
		}
		domains = append(domains, v.Domain)
	}
	return domains
}

func TestOutboundMailIsSignedForItsFromDomain(t *testing.T) {
	tests := map[string]struct {
		mode Mode
		send func(e *testEnv) string // returns the queue id
		want []string                // the d= of the signatures
	}{
		"submission with AUTH, by the From: domain's keys": {
			mode: Submission,
			send: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return queueID(e.t.(*testing.T), c.data(msg("alice@example.com", "x@foreign.example", "hi")))
			},
			want: []string{"example.com"},
		},
		"a sending server on port 25": {
			mode: Inbound,
			send: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.expect("MAIL FROM:<app@relay.example>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return queueID(e.t.(*testing.T), c.data(msg("app@relay.example", "x@foreign.example", "hi")))
			},
			want: []string{"relay.example"},
		},
		"never inbound mail, even with a managed domain in From:": {
			mode: Inbound,
			send: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.expect("MAIL FROM:<news@foreign.example>", "250 ")
				c.expect("RCPT TO:<alice@example.com>", "250 ")
				return queueID(e.t.(*testing.T), c.data(msg("alice@example.com", "alice@example.com", "hi")))
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opt, records := withDKIM(t, "example.com", "relay.example")
			e := newEnv(t, tc.mode, opt)
			id := tc.send(e)
			if got := verifyDKIM(t, e, id, records); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("signatures by %v, want %v", got, tc.want)
			}
			signed := testutil.ToFloat64(e.metrics.DKIMSigned.WithLabelValues(snapshot.DKIMEd25519SHA256))
			if signed != float64(len(tc.want)) {
				t.Errorf("postwarden_relay_smtp_dkim_signed_total = %v", signed)
			}
			waitFor(t, "the tracking line", func() bool { return len(e.logs.Records("message")) == 1 })
			wantSelectors := "[]"
			if len(tc.want) > 0 {
				wantSelectors = "[ed1]"
			}
			if got := e.logs.Records("message")[0]["dkim"]; fmtList(got) != wantSelectors {
				t.Errorf("the accepted line's dkim is %v, want %s", got, wantSelectors)
			}
		})
	}
}

func fmtList(v any) string {
	l, ok := v.([]any)
	if !ok {
		return "not a list"
	}
	var s []string
	for _, x := range l {
		s = append(s, x.(string))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// A domain without a usable key has its mail accepted unsigned, not refused.
func TestMailOfADomainWithoutKeysGoesUnsigned(t *testing.T) {
	opt, records := withDKIM(t, "relay.example")
	e := newEnv(t, Submission, opt)
	c := e.submission("alice-relay", alicePassword)
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	id := queueID(t, c.data(msg("alice@example.com", "x@foreign.example", "hi")))
	if env, _ := e.message(id); env.Prepend != "" || len(verifyDKIM(t, e, id, records)) != 0 {
		t.Errorf("a message of a domain without keys was signed: %q", env.Prepend)
	}
}

// A message refused in the middle of its body leaves no signature behind, and the
// connection's next message is signed as usual.
func TestRefusedMessageIsNotSigned(t *testing.T) {
	opt, records := withDKIM(t, "example.com")
	e := newEnv(t, Submission, opt)
	c := e.submission("alice-relay", alicePassword)
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	if reply := c.data(msg("alice@example.com", "x@foreign.example", "hi") + "bare\nLF\r\n"); !strings.HasPrefix(reply, "550 5.6.0") {
		t.Fatalf("reply %q", reply)
	}
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	id := queueID(t, c.data(msg("alice@example.com", "x@foreign.example", "again")))
	if got := verifyDKIM(t, e, id, records); len(got) != 1 || e.spool.Len() != 1 {
		t.Errorf("signatures %v, %d messages queued", got, e.spool.Len())
	}
	if n := testutil.ToFloat64(e.metrics.DKIMSigned.WithLabelValues(snapshot.DKIMEd25519SHA256)); n != 1 {
		t.Errorf("%v messages counted as signed", n)
	}
}
