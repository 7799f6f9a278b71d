package discovery

import (
	"context"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
)

// StateCache decodes the policies' states for the config render from the informer
// cache, and decodes again only when a policy's ConfigMaps change. A set caught halfway
// through a write keeps the last complete state. The zero value is ready to use.
type StateCache struct {
	mu       sync.Mutex
	policies map[string]cachedState
}

type cachedState struct {
	versions string
	state    dstate.State
}

// States returns the state of every policy given (as namespace/name) from r, which
// holds the state ConfigMaps of home, the operator's namespace.
func (sc *StateCache) States(ctx context.Context, r client.Reader, home string, policies []string) (map[string]dstate.State, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.policies == nil {
		sc.policies = map[string]cachedState{}
	}
	out := make(map[string]dstate.State, len(policies))
	keep := map[string]bool{}
	for _, name := range policies {
		keep[name] = true
		ns, n, _ := strings.Cut(name, "/")
		cms, err := stateConfigMaps(ctx, r, home, ns, n)
		if err != nil {
			return nil, err
		}
		probe := &storedState{}
		for i := range cms {
			probe.parts = append(probe.parts, &cms[i])
		}
		slices.SortFunc(probe.parts, func(a, b *corev1.ConfigMap) int { return strings.Compare(a.Name, b.Name) })
		versions := probe.versions()
		if c, ok := sc.policies[name]; ok && c.versions == versions {
			out[name] = c.state
			continue
		}
		st, err := readState(cms, name)
		if err != nil {
			if c, ok := sc.policies[name]; ok {
				out[name] = c.state // mid-write or damaged: keep the last complete state
			}
			continue
		}
		sc.policies[name] = cachedState{versions: versions, state: st.state}
		out[name] = st.state
	}
	for name := range sc.policies {
		if !keep[name] {
			delete(sc.policies, name)
		}
	}
	return out, nil
}
