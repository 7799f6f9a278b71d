package state

import "testing"

func TestStateNamesFitAndDoNotCollide(t *testing.T) {
	long := make([]byte, 253)
	for i := range long {
		long[i] = 'a'
	}
	for _, c := range []struct{ ns, name string }{{"a-b", "c"}, {"a", "b-c"}, {"mail", string(long)}} {
		name, label := StateName(c.ns, c.name, 12), StateLabel(c.ns, c.name)
		if len(name) > 253 || len(label) > 63 {
			t.Errorf("%s/%s: name %d and label %d characters", c.ns, c.name, len(name), len(label))
		}
	}
	if StateName("a-b", "c", 0) == StateName("a", "b-c", 0) {
		t.Error("two policies share a state name")
	}
}
