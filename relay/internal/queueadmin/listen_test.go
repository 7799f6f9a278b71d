package queueadmin

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

func openSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

// serve runs a Server on path until the test ends.
func serve(t *testing.T, path string, sp *spool.Spool) *Server {
	t.Helper()
	s, err := Listen(path, sp, delivery.NewAdmin(sp), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func TestTheSocketIsPrivateAndGoesAwayAtClose(t *testing.T) {
	sp := openSpool(t)
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Listen(path, sp, delivery.NewAdmin(sp), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Type() != fs.ModeSocket || info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", info.Mode())
	}
	if names, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".a*")); len(names) != 0 {
		t.Errorf("the binding folder is left behind: %v", names)
	}
	if _, err := NewClient(path, 10*time.Second).List(context.Background(), Filter{}); err != nil {
		t.Fatalf("List through the socket: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Close: %v, want the socket gone", err)
	}
	_, err = NewClient(path, 10*time.Second).List(context.Background(), Filter{})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnreachable {
		t.Fatalf("List without a relay = %v, want code %s", err, CodeUnreachable)
	}
}

// A relay killed with SIGKILL leaves its socket behind; the next one replaces it. A
// socket something still answers on, or a file that is no socket, is left alone.
func TestListenReplacesOnlyAStaleSocket(t *testing.T) {
	sp := openSpool(t)
	dir := t.TempDir()

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close() // as a killed process leaves it: the file, nobody listening
	serve(t, stale, sp)
	if _, err := NewClient(stale, 10*time.Second).List(context.Background(), Filter{}); err != nil {
		t.Fatalf("List on the replaced socket: %v", err)
	}

	if _, err := Listen(stale, sp, delivery.NewAdmin(sp), slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a socket in use = %v, want an error saying so", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, sp, delivery.NewAdmin(sp), slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file = %v, want an error saying it is not a socket", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me" {
		t.Error("the regular file was replaced")
	}
}

func TestFilterMatches(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	m := Message{State: StateDeferred, Sender: "Alice@Example.com", Credential: "alice-relay", ReceivedAt: now.Add(-2 * time.Hour),
		Recipients: []Recipient{{Address: "bob@dest.example"}, {Address: "carol@other.example"}}}
	for name, c := range map[string]struct {
		f    Filter
		want bool
	}{
		"no filter selects everything":           {Filter{}, true},
		"the sender's address in any case":       {Filter{Sender: "alice@example.COM"}, true},
		"the sender's domain":                    {Filter{Sender: "@example.com"}, true},
		"another sender":                         {Filter{Sender: "bob@example.com"}, false},
		"the null sender only matches <>":        {Filter{Sender: "<>"}, false},
		"any recipient's address":                {Filter{Recipient: "carol@other.example"}, true},
		"any recipient's domain":                 {Filter{Recipient: "@dest.example"}, true},
		"a recipient it does not have":           {Filter{Recipient: "@nowhere.example"}, false},
		"the credential exactly":                 {Filter{Credential: "alice-relay"}, true},
		"another credential":                     {Filter{Credential: "alice"}, false},
		"its state":                              {Filter{State: StateDeferred}, true},
		"another state":                          {Filter{State: StateHeld}, false},
		"older than an hour":                     {Filter{OlderThan: time.Hour}, true},
		"not older than three hours":             {Filter{OlderThan: 3 * time.Hour}, false},
		"newer than three hours":                 {Filter{NewerThan: 3 * time.Hour}, true},
		"not newer than an hour":                 {Filter{NewerThan: time.Hour}, false},
		"all filters must hold, not one of them": {Filter{Sender: "@example.com", State: StateHeld}, false},
	} {
		if got := c.f.matches(m, now); got != c.want {
			t.Errorf("%s: matches = %v, want %v", name, got, c.want)
		}
		parsed, err := parseFilter(c.f.Values())
		if err != nil || parsed != c.f {
			t.Errorf("%s: the filter does not survive the query string: %+v, %v", name, parsed, err)
		}
	}
}
