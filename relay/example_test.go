package relay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The example in the documentation loads through the relay's own parser and compiler,
// and its documented password works.
func TestExampleConfigLoads(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "examples", "relay-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	c := dir.Credential("app-example-com")
	if c == nil {
		t.Fatal("the example credential is missing")
	}
	if !c.Hash.Verify("change-me-0123456789abcdef") {
		t.Fatal("the documented password does not match the example's hash")
	}
}
