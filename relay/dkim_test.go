package relay

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// dkimKey is a generated signing key: its snapshot entry, its PEM and its DNS record.
type dkimKey struct {
	entry  snapshot.DKIMKey
	pem    []byte
	record string // TXT value: v=DKIM1; k=...; p=...
}

var (
	dkimKeysOnce sync.Once
	dkimKeyring  map[string]dkimKey // by selector
)

// dkimKeys returns the test keys by selector: rsa-a and ed-a, then rsa-b and ed-b to
// rotate to. RSA keys take a while to generate, so they are made once.
func dkimKeys(t *testing.T) map[string]dkimKey {
	t.Helper()
	dkimKeysOnce.Do(func() {
		dkimKeyring = map[string]dkimKey{}
		for _, sel := range []string{"rsa-a", "ed-a", "rsa-b", "ed-b"} {
			var signer crypto.Signer
			var record string
			if strings.HasPrefix(sel, "rsa") {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					panic(err)
				}
				spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
				if err != nil {
					panic(err)
				}
				signer, record = k, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(spki)
			} else {
				pub, k, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					panic(err)
				}
				signer, record = k, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub)
			}
			der, err := x509.MarshalPKCS8PrivateKey(signer)
			if err != nil {
				panic(err)
			}
			alg := snapshot.DKIMEd25519SHA256
			if strings.HasPrefix(sel, "rsa") {
				alg = snapshot.DKIMRSASHA256
			}
			dkimKeyring[sel] = dkimKey{
				entry:  snapshot.DKIMKey{Selector: sel, Algorithm: alg, SecretName: "dkim-" + sel},
				pem:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
				record: record,
			}
		}
	})
	return dkimKeyring
}

// dkimFixture is a relay whose first domain signs with DKIM keys from its relay
// secrets folder, delivering to sink, with the keys' records on a loopback DNS server.
type dkimFixture struct {
	*fileRelay
	sink *testkit.Server
	dns  *testkit.DNS
	s    *snapshot.Snapshot
}

// newDKIMFixture publishes every test key, writes the secrets of the keys selectors
// names, and starts the relay with those keys for the first domain of s.
func newDKIMFixture(t *testing.T, s *snapshot.Snapshot, sink *testkit.Server, selectors ...string) *dkimFixture {
	t.Helper()
	f := &dkimFixture{sink: sink, dns: testkit.StartDNS(t), s: s}
	keys := dkimKeys(t)
	secrets := t.TempDir()
	for sel, k := range keys {
		f.dns.Add(t, testkit.TXTRecord(sel+"._domainkey."+s.Domains[0].Name, k.record))
		dir := filepath.Join(secrets, k.entry.SecretName)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, snapshot.DKIMPrivateKeyKey), k.pem)
	}
	f.useKeys(t, selectors...)
	f.fileRelay = startFileRelay(t, s, func(c *Config) {
		c.SecretsDir = secrets
		c.Delivery = &DeliveryConfig{Smarthost: sink.Addr, DNSServers: []string{f.dns.Addr}}
		withAdminSocket(c)
	})
	waitFor(t, "readiness", f.Ready)
	return f
}

// useKeys sets the first domain's keys in f.s, in the snapshot's order.
func (f *dkimFixture) useKeys(t *testing.T, selectors ...string) {
	t.Helper()
	f.s.Domains[0].DKIM = nil
	for _, sel := range selectors {
		f.s.Domains[0].DKIM = append(f.s.Domains[0].DKIM, dkimKeys(t)[sel].entry)
	}
	f.s.Normalize()
	if _, err := f.s.Marshal(); err != nil {
		t.Fatal(err)
	}
}

// goVerify verifies msg with go-msgauth, the library the relay signs with, and returns
// "<selector> pass" or "<selector> fail" for each signature, top first.
func (f *dkimFixture) goVerify(t *testing.T, msg []byte) []string {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: f.dns.LookupTXT})
	if err != nil {
		t.Fatalf("go-msgauth: %v", err)
	}
	sigs := signatureTags(msg)
	var out []string
	for i, v := range vs {
		result := "pass"
		if v.Err != nil {
			result = "fail"
		}
		out = append(out, sigs[i]["s"]+" "+result)
	}
	return out
}

// pyVerify verifies msg with dkimpy, a verifier independent of the signing library.
func (f *dkimFixture) pyVerify(t *testing.T, msg []byte) []string {
	t.Helper()
	got, err := testkit.DkimpyVerify(msg, f.dns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// signatureTags parses the tags of each DKIM-Signature field at the top of msg.
func signatureTags(msg []byte) []map[string]string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var out []map[string]string
	var field string
	flush := func() {
		if name, value, ok := strings.Cut(field, ":"); ok && strings.EqualFold(name, "DKIM-Signature") {
			tags := map[string]string{}
			for tag := range strings.SplitSeq(value, ";") {
				k, v, _ := strings.Cut(tag, "=")
				tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
			}
			out = append(out, tags)
		}
	}
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			field += line
			continue
		}
		flush()
		field = line
	}
	flush()
	return out
}

// submitSigned submits one message on 587 (STARTTLS, AUTH) from the first domain.
func (f *dkimFixture) submitSigned(t *testing.T, body string) string {
	t.Helper()
	a, _ := creds(t)
	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// received returns what the sink got for the message whose body has marker.
func (f *dkimFixture) received(t *testing.T, marker string) []byte {
	t.Helper()
	var got []byte
	waitFor(t, "the message "+marker+" at the sink", func() bool {
		for _, m := range f.sink.Messages() {
			if bytes.Contains(m.Data, []byte(marker)) {
				got = m.Data
				return true
			}
		}
		return false
	})
	return got
}

// Mail submitted on 587 with STARTTLS and AUTH for a domain with an RSA and an Ed25519
// key arrives with two signatures, d= the domain, that two independent verifiers
// accept against the records on a real (loopback) DNS server; a body changed after
// signing fails both.
func TestDKIMSignedSubmissionVerifies(t *testing.T) {
	testkit.RequireDkimpy(t)
	a, _ := creds(t)
	f := newDKIMFixture(t, newSnapshot(t, certEntry, a), testkit.Start(t), "rsa-a", "ed-a")
	f.submitSigned(t, "signed twice")
	msg := f.received(t, "signed twice")

	tags := signatureTags(msg)
	if len(tags) != 2 {
		t.Fatalf("%d signatures:\n%s", len(tags), msg)
	}
	for _, tg := range tags {
		if tg["d"] != a.domain || tg["c"] != "relaxed/relaxed" || tg["t"] == "" || tg["x"] != "" ||
			strings.Contains(strings.ToLower(tg["h"]), "received") {
			t.Errorf("signature tags %v: want d=%s, relaxed/relaxed, a t=, no x=, no Received in h=", tg, a.domain)
		}
	}
	// The snapshot orders keys by algorithm: Ed25519 first.
	if tags[0]["a"] != "ed25519-sha256" || tags[1]["a"] != "rsa-sha256" {
		t.Errorf("algorithms %s, %s", tags[0]["a"], tags[1]["a"])
	}
	want := []string{"ed-a pass", "rsa-a pass"}
	if got := f.goVerify(t, msg); !slices.Equal(got, want) {
		t.Errorf("go-msgauth: %v, want %v\n%s", got, want, msg)
	}
	if got := f.pyVerify(t, msg); !slices.Equal(got, want) {
		t.Errorf("dkimpy: %v, want %v\n%s", got, want, msg)
	}

	tampered := bytes.Replace(msg, []byte("signed twice"), []byte("signed thrice"), 1)
	want = []string{"ed-a fail", "rsa-a fail"}
	if got := f.goVerify(t, tampered); !slices.Equal(got, want) {
		t.Errorf("go-msgauth on a changed body: %v, want %v", got, want)
	}
	if got := f.pyVerify(t, tampered); !slices.Equal(got, want) {
		t.Errorf("dkimpy on a changed body: %v, want %v", got, want)
	}

	metrics := scrapeMetrics(t, f.Relay, "postwarden_relay_smtp_dkim_signed_total")
	for _, alg := range []string{"rsa-sha256", "ed25519-sha256"} {
		if name := `postwarden_relay_smtp_dkim_signed_total{algorithm="` + alg + `"}`; metrics[name] != 1 {
			t.Errorf("%s = %v, want 1", name, metrics[name])
		}
	}
}

// Mail received on port 25 for a managed domain is someone else's to sign: it reaches
// the domain's own server without a signature of ours, even with the domain in From:.
func TestDKIMInboundMailIsNotSigned(t *testing.T) {
	a, _ := creds(t)
	customer := testkit.Start(t)
	s := withInboundDelivery(t, newSnapshot(t, certEntry, a), customer)
	f := newDKIMFixture(t, s, testkit.Start(t), "rsa-a", "ed-a")
	err := sendPlain(f.InboundAddr().String(), "news@outside.example", "sender@"+a.domain,
		"From: <sender@"+a.domain+">\r\nSubject: inbound\r\n\r\nfrom outside\r\n")
	if err != nil {
		t.Fatal(err)
	}
	got := customer.WaitMessages(t, 1, 30*time.Second)[0].Data
	if bytes.Contains(bytes.ToLower(got), []byte("dkim-signature")) {
		t.Errorf("inbound mail was signed:\n%s", got)
	}
}

// Rotating from key A to key B (both records published, as the operator keeps the old
// one while mail signed with it may be queued) keeps every message verifiable: one
// accepted under A and delivered after the switch goes out with A's signature, stored
// at acceptance and never made again, and new mail is signed with B.
func TestDKIMRotationKeepsQueuedMailVerifiable(t *testing.T) {
	testkit.RequireDkimpy(t)
	a, _ := creds(t)
	sink := testkit.Start(t)
	f := newDKIMFixture(t, newSnapshot(t, certEntry, a), sink, "rsa-a")

	sink.Inject(testkit.StageData, testkit.Reply(451, "4.3.0", "try again later"), 1)
	queued := f.submitSigned(t, "queued under key A")
	waitFor(t, "the first attempt to be deferred", func() bool {
		m, err := f.Spool().Get(queued)
		return err == nil && m.Attempts == 1 && m.Recipients[0].Status == "Pending" && !f.runner.Admin().InFlight(queued)
	})

	// postwarden queue show has the message as it will go out: signatures first.
	q := queueCLI{t: t, socket: DefaultAdminSocket(filepath.Join(f.dir, "spool"))}
	if d := q.show(queued); !strings.HasPrefix(d.Headers, "DKIM-Signature:") || !strings.Contains(d.Headers, "s=rsa-a;") ||
		!strings.Contains(d.Headers, "\nReceived: from ") {
		t.Errorf("queue show headers:\n%s", d.Headers)
	}

	f.useKeys(t, "rsa-b")
	writeConfig(t, f.config, f.s)
	waitFor(t, "key B in force", func() bool {
		keys := f.reload.View().DKIM().Keys(a.domain)
		return len(keys) == 1 && keys[0].Selector == "rsa-b"
	})
	f.submitSigned(t, "signed with key B")
	if _, err := f.runner.Admin().Retry(queued); err != nil {
		t.Fatal(err)
	}

	for marker, selector := range map[string]string{"queued under key A": "rsa-a", "signed with key B": "rsa-b"} {
		msg := f.received(t, marker)
		want := []string{selector + " pass"}
		if got := f.goVerify(t, msg); !slices.Equal(got, want) {
			t.Errorf("%s: go-msgauth %v, want %v\n%s", marker, got, want, msg)
		}
		if got := f.pyVerify(t, msg); !slices.Equal(got, want) {
			t.Errorf("%s: dkimpy %v, want %v", marker, got, want)
		}
	}
}

// A DKIM key the relay cannot use is logged when it becomes unusable, with the reason
// and never the key, and not again at every update while it stays so.
func TestDKIMUnusableKeyIsLoggedOnce(t *testing.T) {
	a, b := creds(t)
	logs := &syncBuffer{}
	r := &reloader{hostname: relayName, log: slog.New(slog.NewJSONHandler(logs, nil)),
		metrics: metrics.NewConfig(prometheus.NewRegistry()), now: time.Now, first: make(chan struct{})}
	key := dkimKeys(t)["ed-a"]
	apply := func(s *snapshot.Snapshot, secrets map[string]configsource.SecretData) {
		t.Helper()
		if err := r.Apply(configsource.Update{Snapshot: s, Secrets: secrets}); err != nil {
			t.Fatal(err)
		}
	}
	withKey := func(users ...cred) *snapshot.Snapshot {
		s := newSnapshot(t, nil, users...)
		s.Domains[0].DKIM = []snapshot.DKIMKey{key.entry}
		if _, err := s.Marshal(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	unusable := func() int { return strings.Count(logs.String(), "a DKIM key is not usable") }

	broken := map[string]configsource.SecretData{key.entry.SecretName: {snapshot.DKIMPrivateKeyKey: []byte("garbage")}}
	apply(withKey(a), broken)
	apply(withKey(a), map[string]configsource.SecretData{key.entry.SecretName: {snapshot.DKIMPrivateKeyKey: []byte("garbage")}, "other": {}})
	apply(withKey(a, b), broken) // another snapshot, the same problem
	if n := unusable(); n != 1 || !strings.Contains(logs.String(), "selector ed-a") || !strings.Contains(logs.String(), "is not PEM") {
		t.Errorf("%d warnings:\n%s", n, logs)
	}
	apply(withKey(a, b), map[string]configsource.SecretData{key.entry.SecretName: {snapshot.DKIMPrivateKeyKey: key.pem}})
	if keys := r.DKIM().Keys(a.domain); len(keys) != 1 || unusable() != 1 {
		t.Errorf("with the key fixed: keys %v, %d warnings", keys, unusable())
	}
	apply(withKey(a, b), nil) // the secret is gone: a new problem
	if unusable() != 2 || !strings.Contains(logs.String(), "is not loaded") || strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Errorf("after the secret went:\n%s", logs)
	}
}
