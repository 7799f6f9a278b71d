package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// dkimpyScript verifies each DKIM-Signature of the message on stdin with dkimpy
// (Debian's python3-dkim), looking the keys up with dnspython at the DNS server
// host:port of argv[1]: a verifier that shares no code with the Go library that signs.
// It prints "<selector> pass|fail" per signature, top first.
const dkimpyScript = `import sys, dkim, dns.message, dns.query, dns.rdatatype
host, port = sys.argv[1].rsplit(":", 1)
def txt(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), host, port=int(port), timeout=timeout)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return b"".join(list(rrset)[0].strings)
    return None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
for i in range(count):
    try:
        ok = d.verify(idx=i, dnsfunc=txt)
    except dkim.DKIMException as e:  # a body hash mismatch is raised, not returned
        print(e, file=sys.stderr)
        ok = False
    print((d.signature_fields or {}).get(b"s", b"?").decode(), "pass" if ok else "fail")
`

var dkimpyPython = sync.OnceValues(func() (string, error) {
	// Debian's own interpreter, which python3-dkim serves, even when another python3
	// comes first on PATH.
	for _, python := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(python, "-c", "import dkim, dns.message, dns.query").Run(); err == nil {
			return python, nil
		}
	}
	return "", errors.New("no python3 with dkimpy and dnspython (hack/test-deps.sh installs python3-dkim and python3-dnspython)")
})

// DkimpyAvailable says why dkimpy cannot run here, or nil.
func DkimpyAvailable() error {
	_, err := dkimpyPython()
	return err
}

// RequireDkimpy skips the test where dkimpy cannot run, and fails it in CI (CI=true),
// where hack/test-deps.sh has installed it.
func RequireDkimpy(t interface {
	TB
	Skip(args ...any)
}) {
	t.Helper()
	if err := DkimpyAvailable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v", err)
		}
		t.Skip(err)
	}
}

// DkimpyVerify verifies each DKIM signature of msg with dkimpy, with the keys from the
// DNS server at dnsAddr, and returns "<selector> pass" or "<selector> fail" for each,
// top first (none for an unsigned message). The error is dkimpy failing to run.
func DkimpyVerify(msg []byte, dnsAddr string) ([]string, error) {
	python, err := dkimpyPython()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, "-c", dkimpyScript, dnsAddr)
	cmd.Stdin = bytes.NewReader(msg)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dkimpy: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if out.Len() == 0 {
		return nil, nil
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n"), nil
}
