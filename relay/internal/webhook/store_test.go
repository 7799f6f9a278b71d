package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// fill appends events of url until the store refuses one, and returns how many it took.
func fill(t *testing.T, s *store, url string) int {
	t.Helper()
	body := json.RawMessage(`"` + strings.Repeat("x", 100) + `"`)
	for n := 0; ; n++ {
		_, err := s.append(record{URL: url, Domain: "example.com", Type: "deferred", Time: time.Unix(0, 0), Body: body})
		if errors.Is(err, errDiskFull) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// An endpoint that never answers fills at most half the store; another endpoint still
// has room for its events, and the store as a whole stays within its bound, also
// after a restart.
func TestOneDeadEndpointCannotTakeTheWholeStore(t *testing.T) {
	dir := t.TempDir()
	const max = 64 << 10
	s, err := openStore(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	dead := fill(t, s, "https://dead.example/hook")
	_, deadBytes := s.size()
	if deadBytes > max/2 || deadBytes < max/2-300 {
		t.Errorf("the dead endpoint holds %d bytes, want about half of %d", deadBytes, max)
	}
	if n := fill(t, s, "https://alive.example/hook"); n == 0 {
		t.Fatal("the other endpoint got no room")
	}
	if _, total := s.size(); total > max {
		t.Errorf("the store holds %d bytes, more than %d", total, max)
	}
	reopened, err := openStore(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	if n := fill(t, reopened, "https://dead.example/hook"); n != 0 {
		t.Errorf("after a restart the dead endpoint took %d more events (it had %d)", n, dead)
	}
}
