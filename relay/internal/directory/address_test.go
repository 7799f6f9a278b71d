package directory

import (
	"errors"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestParseMailbox(t *testing.T) {
	ok := map[string]struct{ in, str, key string }{
		"the domain is lower-cased and the local part keeps its case": {"John.Doe@Example.COM", "John.Doe@example.com", "john.doe@example.com"},
		"atext specials are part of a dot-atom":                       {"a+tag=x/y@example.com", "a+tag=x/y@example.com", "a+tag=x/y@example.com"},
		"an A-label domain is accepted":                               {"u@xn--bcher-kva.example", "u@xn--bcher-kva.example", "u@xn--bcher-kva.example"},
	}
	for name, tc := range ok {
		t.Run(name, func(t *testing.T) {
			m, err := ParseMailbox(tc.in)
			if err != nil {
				t.Fatalf("ParseMailbox(%q): %v", tc.in, err)
			}
			if m.String() != tc.str || m.Key() != tc.key {
				t.Errorf("ParseMailbox(%q) = %q key %q, want %q key %q", tc.in, m.String(), m.Key(), tc.str, tc.key)
			}
		})
	}

	bad := map[string]struct {
		in   string
		want error
	}{
		"the percent hack is refused":                           {"user%other.example@example.com", ErrRoutedAddress},
		"a bang path is refused":                                {"other.example!user@example.com", ErrRoutedAddress},
		"a second @ (an unquoted quoted local part) is refused": {"user@other.example@example.com", ErrRoutedAddress},
		"a source route left in place is refused":               {"@a.example:user@example.com", ErrAddressSyntax},
		"a colon in the local part is refused":                  {"a:user@example.com", ErrRoutedAddress},
		"a quoted local part is refused":                        {`"user"@example.com`, ErrAddressSyntax},
		"a space from an unquoted local part is refused":        {"john doe@example.com", ErrAddressSyntax},
		"a backslash is refused":                                {`a\b@example.com`, ErrAddressSyntax},
		"a trailing dot on the domain is refused":               {"user@example.com.", ErrAddressDomain},
		"an address literal is refused":                         {"user@[192.0.2.1]", ErrAddressDomain},
		"a single-label domain is refused":                      {"user@localhost", ErrAddressDomain},
		"a UTF-8 domain is refused":                             {"user@bücher.example", ErrAddressDomain},
		"a UTF-8 local part is refused":                         {"jöhn@example.com", ErrAddressSyntax},
		"a leading dot is refused":                              {".user@example.com", ErrAddressSyntax},
		"consecutive dots are refused":                          {"a..b@example.com", ErrAddressSyntax},
		"an empty local part is refused":                        {"@example.com", ErrAddressSyntax},
		"an empty domain is refused":                            {"user@", ErrAddressSyntax},
		"no @ at all is refused":                                {"user", ErrAddressSyntax},
		"a NUL byte is refused":                                 {"us\x00er@example.com", ErrAddressSyntax},
		"a CR is refused":                                       {"user\r@example.com", ErrAddressSyntax},
		"an over-long local part is refused":                    {strings.Repeat("a", 65) + "@example.com", ErrAddressSyntax},
		"an over-long address is refused":                       {"a@" + strings.Repeat("b", 250) + ".com", ErrAddressSyntax},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			m, err := ParseMailbox(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseMailbox(%q) = %v, %v; want error %v", tc.in, m, err, tc.want)
			}
		})
	}
}

// FuzzParseMailbox checks that whatever ParseMailbox accepts is a plain, lower-case
// addressable mailbox with no routing characters, and that parsing is idempotent.
func FuzzParseMailbox(f *testing.F) {
	for _, s := range []string{
		"user@example.com", "User@Example.COM", "user%other@example.com", "@a:user@b.example",
		"user@other@example.com", `"q"@example.com`, "user@example.com.", "a!b@example.com",
		"user@[1.2.3.4]", "", "@", "a@b", "a@b.c", "a.b-c+d@x-y.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMailbox(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(m.Local, "%!:@\"\\ \t\r\n\x00") {
			t.Fatalf("accepted a routing or special character in %q", s)
		}
		if !snapshot.IsAddress(m.Key()) && !strings.ContainsAny(m.Local, "'`") {
			t.Fatalf("key %q of accepted %q is not an address", m.Key(), s)
		}
		again, err := ParseMailbox(m.String())
		if err != nil || again != m {
			t.Fatalf("reparse of %q = %v, %v; want %v", m.String(), again, err, m)
		}
	})
}

// The API's address grammar (snapshot.IsAddress, which the CRD rules and the operator
// follow) admits nothing the relay's parser refuses: a gap between the two once let one
// MailDomain make the whole snapshot unloadable.
func TestAPIAddressesParse(t *testing.T) {
	for c := 0; c < 128; c++ {
		addr := "a" + string(rune(c)) + "b@example.com"
		if !snapshot.IsAddress(addr) {
			continue
		}
		if _, err := ParseMailbox(addr); err != nil {
			t.Errorf("%q: the API admits it, the relay refuses it: %v", addr, err)
		}
	}
}
