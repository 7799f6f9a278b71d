//go:build dev

package main

import "github.com/postwarden/postwarden/test/dev"

// The local environment links envtest, whose package init needs a writable cache folder,
// and test helpers: none of that may be in the binary the image ships, which runs as
// non-root on a read-only root filesystem. `make run` builds with -tags dev to get it.
func init() {
	commands["dev"] = command{"run the whole system locally on an embedded control plane (make run)", dev.Run}
}
