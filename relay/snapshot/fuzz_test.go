package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnmarshal feeds arbitrary documents to the relay's config parser: it must never
// panic, and whatever it accepts must encode and parse back to the same snapshot.
func FuzzUnmarshal(f *testing.F) {
	if example, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", "relay-config.json")); err == nil {
		f.Add(example)
	}
	f.Add([]byte(`{"apiVersion":"` + APIVersion + `","domains":[{"name":"example.com","users":[{"address":"a@example.com"}]}]}`))
	f.Add([]byte(`{"apiVersion":"` + APIVersion + `","hash":"00"}`))
	f.Add([]byte(`{"apiVersion":"` + APIVersion + `","tlsPolicies":[{"direction":"Outbound","mode":"RequireTLS","minVersion":"1.2","destinations":["*."]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unmarshal(data)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("an accepted snapshot does not encode: %v", err)
		}
		back, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("an accepted snapshot does not parse back: %v", err)
		}
		if back.Hash != s.Hash {
			t.Fatalf("hash changed across a round trip: %s, then %s", s.Hash, back.Hash)
		}
	})
}
