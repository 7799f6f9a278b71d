package dkim

import (
	"crypto"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHeaderKeysOversignEveryField(t *testing.T) {
	// Each listed name appears once more than the header holds it; the rest of the list
	// is the signed fields once each, absent ones included.
	tests := map[string]struct {
		header string
		extra  []string // the names listed more than once, each as often as it must be
	}{
		"a minimal header lists each signed field once, present or not": {
			header: "From: a@example.com\r\n\r\n",
			extra:  []string{"From", "From"},
		},
		"a field present once is listed twice": {
			header: "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n",
			extra:  []string{"From", "From", "To", "To", "Subject", "Subject"},
		},
		"a field present twice is listed three times": {
			header: "From: a@example.com\r\nReceived: x\r\nReceived: y\r\nTo: b@example.net\r\nTo: c@example.net\r\n\r\n",
			extra:  []string{"From", "From", "To", "To", "To"},
		},
		"names are matched without regard to case, and listed in their usual spelling": {
			header: "from: a@example.com\r\nMESSAGE-ID: <1@example.com>\r\ncontent-type: text/plain\r\n\r\n",
			extra:  []string{"From", "From", "Message-ID", "Message-ID", "Content-Type", "Content-Type"},
		},
		"a folded continuation is part of its field, not another one": {
			header: "From: a@example.com\r\nSubject: one\r\n Subject: two\r\n\r\n",
			extra:  []string{"From", "From", "Subject", "Subject"},
		},
		"the body is not read for fields": {
			header: "From: a@example.com\r\n\r\nSubject: in the body\r\n",
			extra:  []string{"From", "From"},
		},
		"a header section without its empty line is read to its end": {
			header: "From: a@example.com\r\nList-Unsubscribe: <https://example.com/u>\r\n",
			extra:  []string{"From", "From", "List-Unsubscribe", "List-Unsubscribe"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := headerKeys([]byte(tc.header))
			counts := map[string]int{}
			for _, k := range got {
				counts[k]++
			}
			want := map[string]int{}
			for _, f := range signedFields {
				want[f] = max(1, countOf(tc.extra, f))
			}
			for f, n := range want {
				if counts[f] != n {
					t.Errorf("%s listed %d times, want %d (h=%s)", f, counts[f], n, strings.Join(got, ":"))
				}
			}
			if len(counts) != len(signedFields) {
				t.Errorf("h= lists %d names, want the %d signed fields: %v", len(counts), len(signedFields), got)
			}
		})
	}
}

func TestHeaderKeysOrder(t *testing.T) {
	got := strings.Join(headerKeys([]byte("Subject: s\r\nFrom: a@example.com\r\n\r\n")), ":")
	want := "From:From:Sender:Reply-To:To:Cc:Subject:Subject:Date:Message-ID:In-Reply-To:References:" +
		"MIME-Version:Content-Type:Content-Transfer-Encoding:Content-Disposition:List-Unsubscribe:List-Unsubscribe-Post"
	if got != want {
		t.Errorf("h=%s\nwant %s", got, want)
	}
}

// A header that repeats a field without end keeps the signature's h= line within
// RFC 5322's limit: every name is still listed, From: still oversigned.
func TestHeaderKeysStayBounded(t *testing.T) {
	header := "From: a@example.com\r\n" + strings.Repeat("To: b@example.net\r\n", 500) + "\r\n"
	got := headerKeys([]byte(header))
	if n := len(strings.Join(got, ":")); n > maxHeaderKeysLen {
		t.Errorf("h= is %d characters long", n)
	}
	if countOf(got, "From") != 2 || countOf(got, "To") < 10 || len(slices.Compact(slices.Clone(got))) != len(signedFields) {
		t.Errorf("h=%s", strings.Join(got, ":"))
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// The set of signed fields is a promise to receivers: changing it is deliberate.
func TestSignedFields(t *testing.T) {
	want := []string{"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
		"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
		"List-Unsubscribe", "List-Unsubscribe-Post"}
	if !slices.Equal(signedFields, want) {
		t.Errorf("signedFields = %v", signedFields)
	}
	if slices.Contains(headerKeys([]byte("Received: from x\r\nFrom: a@example.com\r\n\r\n")), "Received") {
		t.Error("Received: is signed")
	}
}

const (
	testHeader = "From: Sender <sender@example.com>\r\nTo: rcpt@example.net\r\nSubject: a test\r\n" +
		"Date: Tue, 05 Nov 2024 10:15:02 +0000\r\nMessage-ID: <1@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	testBody = "Hello,\r\n\r\nthis  line has   spaces and trailing blanks   \r\nbye\r\n\r\n\r\n"
)

func TestSignaturesVerify(t *testing.T) {
	rsaA, edA, _, _ := keys(t)
	recs := records{"rsa1._domainkey.example.com": rsaA.record, "ed1._domainkey.example.com": edA.record}
	rsaKey := Key{Selector: "rsa1", Algorithm: rsaA.algorithm(), Signer: rsaA.signer}
	edKey := Key{Selector: "ed1", Algorithm: edA.algorithm(), Signer: edA.signer}
	tests := map[string][]Key{
		"one RSA signature":                         {rsaKey},
		"one Ed25519 signature (RFC 8463)":          {edKey},
		"an Ed25519 and an RSA signature, in order": {edKey, rsaKey},
	}
	for name, keys := range tests {
		t.Run(name, func(t *testing.T) {
			for _, chunk := range []int{1, 7, 4096} {
				msg := sign(t, "example.com", keys, testHeader, testBody, chunk)
				vs := verify(t, msg, recs)
				if len(vs) != len(keys) {
					t.Fatalf("%d signatures, want %d:\n%s", len(vs), len(keys), msg)
				}
				for i, v := range vs {
					if v.Err != nil {
						t.Fatalf("signature %d (written in chunks of %d) does not verify: %v\n%s", i, chunk, v.Err, msg)
					}
					if v.Domain != "example.com" || v.Time.IsZero() || !v.Expiration.IsZero() {
						t.Errorf("signature %d: d=%s, t=%v, x=%v; want d=example.com, a t= and no x=", i, v.Domain, v.Time, v.Expiration)
					}
				}
				for i, k := range keys {
					sig := signatureFields(msg)[i]
					if !strings.Contains(sig, "s="+k.Selector+";") || !strings.Contains(sig, "a="+k.Algorithm+";") ||
						!strings.Contains(sig, "c=relaxed/relaxed;") {
						t.Errorf("signature %d is not relaxed/relaxed by %s with %s:\n%s", i, k.Selector, k.Algorithm, sig)
					}
				}
			}
		})
	}
}

// signatureFields returns the DKIM-Signature fields at the top of msg, unfolded.
func signatureFields(msg string) []string {
	var out []string
	for _, line := range strings.SplitAfter(msg, "\r\n") {
		switch {
		case strings.HasPrefix(line, "DKIM-Signature:"):
			out = append(out, line)
		case len(out) > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			out[len(out)-1] += line
		default:
			if len(out) > 0 {
				for i := range out {
					out[i] = strings.Join(strings.Fields(out[i]), "")
				}
				return out
			}
		}
	}
	return out
}

func TestChangesAfterSigningFail(t *testing.T) {
	rsaA, edA, _, _ := keys(t)
	recs := records{"rsa1._domainkey.example.com": rsaA.record, "ed1._domainkey.example.com": edA.record}
	keys := []Key{{Selector: "ed1", Algorithm: edA.algorithm(), Signer: edA.signer},
		{Selector: "rsa1", Algorithm: rsaA.algorithm(), Signer: rsaA.signer}}
	signed := sign(t, "example.com", keys, testHeader, testBody, 4096)
	sigs, rest, _ := strings.Cut(signed, "From:")
	rest = "From:" + rest
	tests := map[string]string{
		"a changed body":                         sigs + strings.Replace(rest, "Hello", "Hallo", 1),
		"a line added to the body":               sigs + rest + "P.S.\r\n",
		"a changed subject":                      sigs + strings.Replace(rest, "a test", "a tost", 1),
		"a second Subject: above the first":      sigs + "Subject: urgent\r\n" + rest,
		"a second From: below the first":         sigs + strings.Replace(rest, "To:", "From: boss@example.com\r\nTo:", 1),
		"a Reply-To: added where there was none": sigs + "Reply-To: thief@example.org\r\n" + rest,
		"a List-Unsubscribe: added":              sigs + "List-Unsubscribe: <https://evil.example/u>\r\n" + rest,
	}
	for name, msg := range tests {
		t.Run(name, func(t *testing.T) {
			for i, v := range verify(t, msg, recs) {
				if v.Err == nil {
					t.Errorf("signature %d still verifies", i)
				}
			}
		})
	}
	// What the relay and later hops may do keeps the signature: a trace field on top,
	// and whitespace changes that relaxed canonicalization forgives.
	for name, msg := range map[string]string{
		"a Received: field on top":     "Received: from relay.example.org by mx.example.net\r\n" + signed,
		"refolded and respaced fields": sigs + strings.Replace(rest, "Subject: a test", "Subject:   a\r\n test", 1),
	} {
		t.Run(name, func(t *testing.T) {
			for i, v := range verify(t, msg, recs) {
				if v.Err != nil {
					t.Errorf("signature %d fails: %v", i, v.Err)
				}
			}
		})
	}
}

// A message without body may lack the empty line after its header, or (after BDAT) its
// last CRLF; the signature covers it as delivery sends it, with the section ended.
func TestHeaderOnlyMessages(t *testing.T) {
	_, edA, _, _ := keys(t)
	recs := records{"ed1._domainkey.example.com": edA.record}
	keys := []Key{{Selector: "ed1", Algorithm: edA.algorithm(), Signer: edA.signer}}
	for name, header := range map[string]string{
		"without the empty line": "From: a@example.com\r\nSubject: x\r\n",
		"without the last CRLF":  "From: a@example.com\r\nSubject: x",
	} {
		t.Run(name, func(t *testing.T) {
			ms, err := NewMessageSigner("example.com", keys, []byte(header))
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := ms.Finish()
			if err != nil {
				t.Fatal(err)
			}
			delivered := strings.TrimSuffix(header, "\r\n") + "\r\n\r\n"
			if v := verify(t, sigs+delivered, recs); len(v) != 1 || v[0].Err != nil {
				t.Fatalf("verification %+v", v[0])
			}
		})
	}
}

// countingKey counts the private-key operations it is asked for.
type countingKey struct {
	crypto.Signer
	n *atomic.Int32
}

func (c countingKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

func TestAbortSignsNothing(t *testing.T) {
	rsaA, _, _, _ := keys(t)
	var n atomic.Int32
	keys := []Key{{Selector: "rsa1", Algorithm: rsaA.algorithm(), Signer: countingKey{rsaA.signer, &n}}}
	ms, err := NewMessageSigner("example.com", keys, []byte(testHeader))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Write([]byte("half a body\r\n")); err != nil {
		t.Fatal(err)
	}
	ms.Abort()
	ms.Abort() // twice is harmless
	if _, err := ms.Finish(); err == nil {
		t.Error("Finish after Abort returned signatures")
	}
	if n.Load() != 0 {
		t.Errorf("an aborted message cost %d private-key operations", n.Load())
	}
}
